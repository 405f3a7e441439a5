"""The quota report (``GET /reports/quota``): per unit, quota vs used vs requested, JSON, CSV or XLSX.

Unit users see their own unit only; center staff and auditors see every unit. The CSV is UTF-8 with
a byte-order mark, so Excel (which otherwise assumes the local ANSI code page) shows Chinese unit
names correctly.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from policies.quota import DIMENSIONS, Resources
from policies.roles import UNIT_ROLES
from vmportal.identity.deps import CurrentActor
from vmportal.kit.db import utcnow
from vmportal.kit.http import SessionDep
from vmportal.reports import tables
from vmportal.reports.tables import Format as ReportFormat
from vmportal.request.service import report as request_report
from vmportal.request.service.report import UnitReport

router = APIRouter(tags=["reports"])


class Dimension(BaseModel):
    quota: int
    used: int
    requested: int
    free: int


class UnitQuotaOut(BaseModel):
    unit_id: int
    unit_code: str
    unit_name_zh: str
    unit_name_en: str
    vms: Dimension
    vcpus: Dimension
    memory_gib: Dimension
    disk_gib: Dimension
    over_quota: list[str]


class QuotaReportOut(BaseModel):
    generated_at: datetime
    units: list[UnitQuotaOut]


def _dimension(report: UnitReport, name: str) -> Dimension:
    row = report.usage

    def get(r: Resources) -> int:
        return int(getattr(r, name))

    return Dimension(
        quota=get(row.quota), used=get(row.used), requested=get(row.requested), free=get(row.free)
    )


def _row_out(row: UnitReport) -> UnitQuotaOut:
    assert row.unit.id is not None
    return UnitQuotaOut(
        unit_id=row.unit.id,
        unit_code=row.unit.code,
        unit_name_zh=row.unit.name_zh,
        unit_name_en=row.unit.name_en,
        over_quota=list(row.usage.over),
        **{d: _dimension(row, d) for d in DIMENSIONS},
    )


def _csv(report: QuotaReportOut) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    parts = ("quota", "used", "requested", "free")
    writer.writerow(
        [
            "unit_code",
            "unit_name_zh",
            "unit_name_en",
            *(f"{d}_{p}" for d in DIMENSIONS for p in parts),
            "over_quota",
        ]
    )
    for u in report.units:
        writer.writerow(
            [
                tables.csv_cell(u.unit_code),
                tables.csv_cell(u.unit_name_zh),
                tables.csv_cell(u.unit_name_en),
                *(getattr(getattr(u, d), p) for d in DIMENSIONS for p in parts),
                " ".join(u.over_quota),
            ]
        )
    return "\ufeff" + buffer.getvalue()


DIMENSION_ZH = {"vms": "虚拟机", "vcpus": "vCPU", "memory_gib": "内存(GiB)", "disk_gib": "磁盘(GiB)"}
PART_ZH = {"quota": "配额", "used": "已用", "requested": "申请中", "free": "剩余"}


def quota_table(report: QuotaReportOut) -> tables.Table:
    """The report as the shared :class:`~vmportal.reports.tables.Table`, for the XLSX with its chart.

    The CSV keeps its English column keys (scripts read it since issue 2); the spreadsheet a
    committee opens has Chinese headers and a chart of vCPUs quota against used and requested.
    """
    columns = [
        tables.Column("unit_code", "单位代码", "Unit code"),
        tables.Column("unit_name_zh", "单位名称", "Unit"),
    ]
    for d in DIMENSIONS:
        for p, zh in PART_ZH.items():
            columns.append(tables.Column(f"{d}_{p}", f"{DIMENSION_ZH[d]}{zh}", f"{d} {p}"))
    columns.append(tables.Column("over_quota", "超出配额", "Over quota"))
    rows = [
        {
            "unit_code": u.unit_code,
            "unit_name_zh": u.unit_name_zh,
            **{f"{d}_{p}": getattr(getattr(u, d), p) for d in DIMENSIONS for p in PART_ZH},
            "over_quota": [DIMENSION_ZH[d] for d in u.over_quota],
        }
        for u in report.units
    ]
    chart = tables.Chart(
        title="各单位 vCPU 配额与使用",
        label_key="unit_name_zh",
        value_keys=("vcpus_quota", "vcpus_used", "vcpus_requested"),
        y_title="vCPU",
    )
    return tables.Table(title="配额使用情况", columns=tuple(columns), rows=rows, chart=chart)


@router.get(
    "/reports/quota",
    response_model=QuotaReportOut,
    summary="Per unit: quota, used, requested (pending) and free, for VMs, vCPUs, memory and disk",
    responses={200: {"content": {"text/csv": {}, tables.XLSX_TYPE: {}}}},
)
def quota_report(
    session: SessionDep,
    actor: CurrentActor,
    format: ReportFormat = Query(ReportFormat.JSON),
    unit_id: int | None = Query(None, gt=0),
) -> QuotaReportOut | Response:
    if actor.role in UNIT_ROLES:
        # Another unit's id gives an empty report, as if that unit did not exist.
        unit_id = -1 if unit_id is not None and unit_id != actor.unit_id else actor.unit_id
    rows = [] if unit_id == -1 else request_report.quota_report(session, unit_id=unit_id)
    now = utcnow()
    report = QuotaReportOut(generated_at=now, units=[_row_out(r) for r in rows])
    if format is ReportFormat.JSON:
        return report
    if format is ReportFormat.XLSX:
        return tables.download(quota_table(report), format, f"quota-report-{now:%Y%m%d-%H%M}")
    filename = f"quota-report-{now:%Y%m%d-%H%M}.csv"
    return Response(
        content=_csv(report).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
