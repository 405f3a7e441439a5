"""报表: the center's reports (/reports) for the center's roles and the auditor, over the reports
service: a period form (Beijing dates, both included; the service's own checks, shown beside the
field with the rule), a table of each report's figures, two charts (incidents per month, deliveries
on time and late) drawn by the vendored ECharts from the figures of the tables beside them, and the
CSV and XLSX downloads (/reports/download/{report}.{csv|xlsx}; the committee's one-page PDF summary
at /reports/download/committee.pdf).

The figures come from the same use cases as GET /api/v1/reports/* (vmportal.reports.service, the
quota report of vmportal.request.service.report), laid out by the same table definitions; a
download calls the API's own function for that report, so the file is the one the API gives. The
API needs a bearer token, which a browser holding a page session does not send: hence the page's
own download route. Unit users are refused naming the rule (their own unit's figures are in the
API).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from policies.roles import Actor, Role
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.reports import period_api, quota_api
from vmportal.reports import service as reports
from vmportal.reports.service import Period
from vmportal.reports.tables import Format, Table
from vmportal.web import common, templating
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "center")

#: Who reads the center's reports: the center's staff and the auditor (kit.scope.CENTER_READ).
READERS = frozenset({Role.CENTER_ADMIN.value, Role.CENTER_OPERATOR.value, Role.AUDITOR.value})
#: A list below a report shows at most this many rows; the downloads hold every row.
LIST_ROWS = 200
MAX_THRESHOLD = 1000

#: The reports in the order the page shows them: (key of the service's committee, URL name).
REPORTS: tuple[tuple[str, str], ...] = (
    ("provisioning", "provisioning"),
    ("incidents_monthly", "incidents-monthly"),
    ("quarantine", "quarantine"),
    ("repeat_offenders", "repeat-offenders"),
    ("overdue_findings", "overdue-findings"),
    ("compliance", "compliance"),
)
_BUILDERS = {
    "provisioning": period_api.provisioning_tables,
    "incidents_monthly": period_api.incidents_monthly_tables,
    "quarantine": period_api.quarantine_tables,
    "repeat_offenders": period_api.repeat_offenders_tables,
    "overdue_findings": period_api.overdue_findings_tables,
    "compliance": period_api.compliance_tables,
}
DOWNLOADS = ("committee", "quota", *(name for _, name in REPORTS))


def _titles() -> dict[str, str]:
    return {
        "provisioning": _("Provisioning on time"),
        "incidents_monthly": _("Incidents per month"),
        "quarantine": _("Time in quarantine"),
        "repeat_offenders": _("Repeat offenders"),
        "overdue_findings": _("Overdue findings"),
        "compliance": _("Compliance per unit"),
        "quota": _("Quota use per unit"),
    }


def _explanations() -> dict[str, str]:
    return {
        "provisioning": _(
            "Requests delivered in the period, and how many within the agreed week (seven days from "
            "the later of the submission and the VM agreement's filing); the requests past due now."
        ),
        "incidents_monthly": _(
            "Incidents opened in the period, per Beijing month, by category, origin and alert system."
        ),
        "quarantine": _(
            "Incidents whose containment the hypervisor confirmed in the period: the time from "
            "containment to release, and those still contained."
        ),
        "repeat_offenders": _("Units and VMs with more than %(n)d incidents opened in the period."),
        "overdue_findings": _(
            "Findings past their deadline now whose deadline falls in the period, and those fixed late."
        ),
        "compliance": _(
            "Per unit: paperwork, the period's incidents and late deliveries, and what is outstanding "
            "now. Compliant: paperwork complete, no overdue finding and no open forbidden service."
        ),
        "quota": _("Quota, used, requested and free per unit, now (not by period)."),
    }


# ---- the period form ------------------------------------------------------------------------------


def _typed_day(name: str, text: str) -> tuple[date | None, str | None]:
    if not text:
        return None, None
    try:
        return date.fromisoformat(text), None
    except ValueError:
        return None, _("%(message)s (rule %(rule)s)") % {
            "message": _("Enter a date as YYYY-MM-DD, for example 2026-12-01"),
            "rule": "date_parsing",
        }


def _field_error(exc: errors.PortalError) -> tuple[str, str]:
    """(field, message with its rule) of the service's InvalidField, in the user's language."""
    fields = exc.extra.get("fields") or [{}]
    first = fields[0]
    message = common.say(str(first.get("message", exc.message)), exc.message_zh.split("：", 1)[-1])
    rule = str(first.get("rule", ""))
    return str(first.get("field", "")), _("%(message)s (rule %(rule)s)") % {"message": message, "rule": rule}


def _period(since: str, until: str, threshold: str) -> tuple[Period | None, int, dict[str, str]]:
    """The period and threshold asked for, checked by the reports service; errors by field."""
    problems: dict[str, str] = {}
    since_day, since_error = _typed_day("since", since.strip())
    until_day, until_error = _typed_day("until", until.strip())
    if since_error:
        problems["since"] = since_error
    if until_error:
        problems["until"] = until_error
    limit = 1
    text = threshold.strip()
    if text:
        if not text.isdigit() or not 1 <= int(text) <= MAX_THRESHOLD:
            problems["threshold"] = _("%(message)s (rule %(rule)s)") % {
                "message": _("Enter a whole number from 1 to %(max)d") % {"max": MAX_THRESHOLD},
                "rule": "range",
            }
        else:
            limit = int(text)
    if problems:
        return None, limit, problems
    try:
        return reports.period(since_day, until_day), limit, {}
    except errors.InvalidField as exc:
        field, message = _field_error(exc)
        return None, limit, {field: message}


# ---- the tables as shown ----------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if isinstance(value, (list, tuple)):
        return "、".join(str(v) for v in value) if common.zh() else ", ".join(str(v) for v in value)
    return str(value)


def _numeric(table: Table, key: str) -> bool:
    values = [r.get(key) for r in table.rows if r.get(key) is not None]
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _shown(table: Table, *, limit: int | None = None) -> dict[str, Any]:
    """A report table as the template draws it: headers in the user's language, cells as text."""
    zh = common.zh()
    columns = [
        {"key": c.key, "label": c.header_zh if zh else c.header_en, "numeric": _numeric(table, c.key)}
        for c in table.columns
    ]
    rows = table.rows if limit is None else table.rows[:limit]
    return {
        "columns": columns,
        "rows": [[_cell(r.get(c.key)) for c in table.columns] for r in rows],
        "total": len(table.rows),
        "cut": limit is not None and len(table.rows) > limit,
    }


def _list_titles() -> dict[str, str]:
    return {
        "late": _("Requests delivered late"),
        "overdue_now": _("Requests open past their due time now"),
        "by_unit": _("Incidents per month and unit"),
        "incidents": _("The contained incidents"),
        "vms": _("VMs with repeated incidents"),
        "findings": _("The overdue findings"),
    }


def _charts(built: dict[str, tuple[Table, dict[str, Table]]]) -> dict[str, dict[str, Any]]:
    """The two charts' data (ECharts options are built in report-charts.js from these)."""
    monthly = built["incidents_monthly"][0]
    provisioning = built["provisioning"][0]
    delivered = [r for r in provisioning.rows if (r.get("delivered") or 0) > 0]
    return {
        "incidents_monthly": {
            "labels": [str(r["month"]) for r in monthly.rows],
            "series": [{"name": _("Incidents"), "values": [int(r["total"]) for r in monthly.rows]}],
            "stack": False,
            "empty": not any(int(r["total"]) for r in monthly.rows),
        },
        "provisioning": {
            "labels": [str(r["unit_name"]) for r in delivered],
            "series": [
                {"name": _("Delivered within the week"), "values": [int(r["on_time"]) for r in delivered]},
                {"name": _("Delivered late"), "values": [int(r["late"]) for r in delivered]},
            ],
            "stack": True,
            "empty": not delivered,
        },
    }


def _chart_labels() -> dict[str, str]:
    return {
        "incidents_monthly": _("Chart: incidents opened per month; the figures are in the table below."),
        "provisioning": _(
            "Chart: requests delivered within the week and late, per unit; the figures are in the "
            "table below."
        ),
    }


def _quota_table(session: Session, actor: Actor) -> Table:
    answer = quota_api.quota_report(session, actor, Format.JSON, None)
    assert isinstance(answer, quota_api.QuotaReportOut)
    return quota_api.quota_table(answer)


def _sections(session: Session, actor: Actor, p: Period, threshold: int) -> list[dict[str, Any]]:
    result = reports.committee(session, actor, p, threshold)
    built = {key: _BUILDERS[key](result.reports[key]) for key, _name in REPORTS}
    titles, explanations, list_titles = _titles(), _explanations(), _list_titles()
    charts, chart_labels = _charts(built), _chart_labels()
    sections: list[dict[str, Any]] = []
    for key, name in REPORTS:
        main, lists = built[key]
        sections.append(
            {
                "key": key,
                "name": name,
                "title": titles[key],
                "explanation": explanations[key] % {"n": threshold}
                if key == "repeat_offenders"
                else explanations[key],
                "main": _shown(main),
                "lists": [
                    {"title": list_titles.get(k, t.title), **_shown(t, limit=LIST_ROWS)}
                    for k, t in lists.items()
                ],
                "chart": charts.get(key),
                "chart_label": chart_labels.get(key, ""),
            }
        )
    sections.append(
        {
            "key": "quota",
            "name": "quota",
            "title": titles["quota"],
            "explanation": explanations["quota"],
            "main": _shown(_quota_table(session, actor)),
            "lists": [],
            "chart": None,
            "chart_label": "",
        }
    )
    return sections


# ---- the routes ---------------------------------------------------------------------------------------


def _not_a_reader(request: Request, token: str, user: User) -> Response:
    message = _("Rule %(rule)s: %(reason)s") % {
        "rule": "reports.read",
        "reason": _("only the center's staff and the auditor read the center's reports"),
    }
    return common.refused(_templates, request, token, user, "/reports", message)


@router.get("/reports", response_class=HTMLResponse)
def report_page(
    request: Request, session: SessionDep, since: str = "", until: str = "", threshold: str = ""
) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role not in READERS:
        return _not_a_reader(request, token, user)
    # Bounded like the API's query parameters, so a pasted URL cannot ask for more.
    since, until, threshold = since[:32], until[:32], threshold[:8]
    p, limit, problems = _period(since, until, threshold)
    context: dict[str, Any] = {
        **common.base(token, user, _("Reports"), "/reports"),
        "values": {"since": since.strip(), "until": until.strip(), "threshold": threshold.strip()},
        "errors": problems,
        "period": p,
        "threshold": limit,
        "sections": [],
        "downloads": [],
    }
    if p is not None:
        query = {"since": p.since.isoformat(), "until": p.until.isoformat(), "threshold": str(limit)}
        context["query"] = query
        context["sections"] = _sections(session, identity.actor_of(user), p, limit)
    status = 422 if problems else 200
    return _templates.TemplateResponse(request, "reports.html", context, status_code=status)


@router.get("/reports/download/{report}.{extension}")
def download(
    request: Request,
    session: SessionDep,
    report: str,
    extension: str,
    since: str = "",
    until: str = "",
    threshold: str = "",
) -> Response:
    """One report as CSV or XLSX (the committee's also as its one-page PDF): the API's own function
    for it, so the file is the API's."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role not in READERS:
        return _not_a_reader(request, token, user)
    formats = {"csv": Format.CSV, "xlsx": Format.XLSX}
    # The committee's report alone also comes as its one-page PDF summary.
    pdf = report == "committee" and extension == "pdf"
    if report not in DOWNLOADS or (extension not in formats and not pdf):
        message = _("There is no report “%(name)s”") % {"name": f"{report[:40]}.{extension[:8]}"}
        return common.not_found(_templates, request, token, user, "/reports", message)
    actor = identity.actor_of(user)
    if report == "quota":
        answer: Any = quota_api.quota_report(session, actor, formats[extension], None)
        return answer
    p, limit, _problems = _period(since[:32], until[:32], threshold[:8])
    if p is None:  # a changed link: the page, with the error beside its field
        return report_page(request, session, since, until, threshold)
    if report == "committee":
        fmt = period_api.CommitteeFormat(extension)
        answer = period_api.committee_report(session, actor, p, limit, None, fmt)
        return answer
    out = period_api.Answer(None, formats[extension])
    answer = {
        "provisioning": lambda: period_api.provisioning_report(session, actor, out, p),
        "incidents-monthly": lambda: period_api.incidents_monthly_report(session, actor, out, p),
        "quarantine": lambda: period_api.quarantine_report(session, actor, out, p),
        "repeat-offenders": lambda: period_api.repeat_offenders_report(session, actor, out, p, limit),
        "overdue-findings": lambda: period_api.overdue_findings_report(session, actor, out, p),
        "compliance": lambda: period_api.compliance_report(session, actor, out, p),
    }[report]()
    return answer
