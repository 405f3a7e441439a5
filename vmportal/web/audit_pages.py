"""The auditor's audit log page (/audit-log): the log newest first, filtered and paged, with the
hash chain's verification status above it.

Read by the auditor and center_admin, the same roles as GET /api/v1/audit; anyone else is told
which rule refuses them. The page calls the audit service only: filters become an AuditFilter,
dates typed by the user are Beijing dates (the zone every page shows), the day after ``until``
is the exclusive bound the service expects.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from policies.roles import Role
from vmportal.audit import service as audit
from vmportal.kit.http import SessionDep
from vmportal.kit.paging import PageRequest
from vmportal.web import common, templating
from vmportal.web.formats import SHANGHAI
from vmportal.web.i18n import gettext as _
from vmportal.web.session import csrf_for
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login
from vmportal.web.session import user_view as _user_view

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "center")

PAGE_SIZE = 50
#: Who reads the log: the same gate as the audit API (vmportal.reports.audit_api).
READERS = frozenset({Role.AUDITOR.value, Role.CENTER_ADMIN.value})
RESULTS = ("ok", "denied", "failed", "pending")


def _day(text: str) -> tuple[datetime | None, str | None]:
    """A typed Beijing date as the aware instant of its midnight, or the error shown beside it."""
    if not text:
        return None, None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None, _("Enter a date as YYYY-MM-DD, for example 2026-12-01")
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI), None


@router.get("/audit-log", response_class=HTMLResponse)
def audit_log(
    request: Request,
    session: SessionDep,
    action: str = "",
    actor: str = "",
    result: str = "",
    since: str = "",
    until: str = "",
    page: int = 1,
) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    base: dict[str, Any] = {
        "page_title": _("Audit log"),
        "user": _user_view(user),
        "csrf_token": csrf_for(token),
        "nav": common.nav_items(user.role, "/audit-log"),
    }
    if user.role not in READERS:
        refusal = _("Rule audit.read: only the auditor and the center administrator read the audit log")
        return _templates.TemplateResponse(
            request, "refused.html", {**base, "message": refusal}, status_code=403
        )
    # Bounded like the API's query parameters, so a pasted URL cannot ask for more.
    action, actor = action.strip()[:64], actor.strip()[:100]
    result = result if result in RESULTS else ""
    errors: dict[str, str] = {}
    since_at, since_error = _day(since.strip())
    until_at, until_error = _day(until.strip())
    if since_error:
        errors["since"] = since_error
    if until_error:
        errors["until"] = until_error
    if since_at and until_at and until_at < since_at:
        errors["until"] = _("The end date is before the start date")
    page = max(page, 1)
    rows: list[Any] = []
    total = 0
    if not errors:
        where = audit.AuditFilter(
            action=action or None,
            actor=actor or None,
            result=result or None,
            since=since_at,
            until=until_at + timedelta(days=1) if until_at else None,
        )
        rows, total = audit.list_entries(
            session, where, PageRequest(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        )
    chain = audit.verify(session)
    context = {
        **base,
        "rows": rows,
        "total": total,
        "page": page,
        "pages": max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        "filters": {"action": action, "actor": actor, "result": result, "since": since, "until": until},
        "results": RESULTS,
        "errors": errors,
        "chain": chain,
        "reports_url": "/reports",
    }
    status = 422 if errors else 200
    return _templates.TemplateResponse(request, "audit_log.html", context, status_code=status)
