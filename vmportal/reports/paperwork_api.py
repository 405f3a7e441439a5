"""``GET /reports/paperwork``: paperwork compliance per unit as JSON, CSV (UTF-8 with BOM) or XLSX."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Response

from vmportal.identity.deps import CurrentActor
from vmportal.kit.http import SessionDep
from vmportal.kit.scope import ensure_visible
from vmportal.reports import tables
from vmportal.reports.paperwork_report import paperwork_table
from vmportal.reports.summary import committee_summary
from vmportal.reports.tables import Format

router = APIRouter(tags=["reports"])


@router.get(
    "/reports/paperwork",
    summary="Paperwork compliance per unit (registry, letter, agreement, systems): JSON, CSV or XLSX",
    responses={200: {"content": {"text/csv": {}, tables.XLSX_TYPE: {}}}},
)
def paperwork_report(
    session: SessionDep, actor: CurrentActor, format: Format = Format.JSON, unit_id: int | None = None
) -> Any:
    # Unit users read their own unit only; center staff and auditors every unit, or the one asked for.
    if unit_id is not None:
        ensure_visible(actor, unit_id, "unit", unit_id)
    table = paperwork_table(session, actor, unit_id=unit_id)
    if format == Format.JSON:
        return tables.to_json(table, rows_key="units")
    return tables.download(table, format, f"paperwork-{date.today():%Y%m%d}")


@router.get(
    "/reports/summary.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
    summary="The one-page PDF summary for the committee (the units the caller may see)",
)
def summary_pdf(session: SessionDep, actor: CurrentActor) -> Response:
    rendered = committee_summary(session, actor)
    return Response(
        rendered.pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="summary-{rendered.document_id}.pdf"',
            "X-Document-Id": rendered.document_id,
        },
    )
