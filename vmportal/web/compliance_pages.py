"""隐患与通报: security findings with their deadlines (/findings, /findings/{id}), the authority
notices (/notices, /notices/{id}) and forbidden-service violations (/violations, /violations/{id}).

A unit's security administrator gets an e-mail for each finding (plan 二(二)3: 整改期限) with a link
to its page here (vmportal.kit.pages): the page says what was found, by when it must be fixed, and
takes the unit's report that it is fixed; the center retests it (passed: closed; failed: open again
with a new deadline) or closes it with a reason. Every action goes through the compliance service
(the finding's lifecycle: compare-and-set, audit row, mail); an action the user may not take is
not offered, and the page says why. Unit users see their own unit's records only: another unit's
answers the 404 page, as the API does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from policies.compromise import CATEGORY_NAMES_ZH, SEVERITY_NAMES_ZH, Category, Severity
from policies.forbidden_services import KIND_NAMES, ServiceKind
from policies.roles import Actor, Role
from vmportal.compliance.lifecycle import FINDING, FindingAction
from vmportal.compliance.models import NoticeState
from vmportal.compliance.schemas import FindingFilters, NoticeFilters, ViolationFilters
from vmportal.compliance.service import findings, notices, violations
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.incidents.models import Finding, FindingState, ViolationState
from vmportal.kit import errors, pages
from vmportal.kit.http import SessionDep
from vmportal.kit.paging import PageRequest
from vmportal.web import common, templating
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "compliance")

PAGE_SIZE = 50
FINDING_SORTS = ("id", "deadline_at", "severity")
#: A note or reason typed into these forms (the service keeps 2,000 characters).
MAX_NOTE = 2000


# ---- names in the user's language -----------------------------------------------------------------


def finding_state(state: str) -> str:
    names = {
        FindingState.OPEN: _("To be fixed"),
        FindingState.NOTIFIED: _("Unit notified"),
        FindingState.FIXED: _("Fixed by the unit, waiting for the retest"),
        FindingState.RETESTED: _("Retested"),
        FindingState.CLOSED: _("Closed"),
    }
    return common.label(names, FindingState, state)


def category_name(value: str) -> str:
    try:
        category = Category(value)
    except ValueError:
        return value
    return CATEGORY_NAMES_ZH[category] if common.zh() else category.value.replace("_", " ")


def severity_name(value: str) -> str:
    try:
        severity = Severity(value)
    except ValueError:
        return value
    return SEVERITY_NAMES_ZH[severity] if common.zh() else severity.value


def service_name(value: str) -> str:
    try:
        zh_name, en_name = KIND_NAMES[ServiceKind(value)]
    except ValueError:
        return value
    return zh_name if common.zh() else en_name


def notice_state(state: str) -> str:
    names = {
        NoticeState.UNMATCHED: _("No VM matched: to be assigned"),
        NoticeState.OPEN: _("Waiting for the center's confirmation"),
        NoticeState.CONFIRMED: _("Containment ordered"),
    }
    return common.label(names, NoticeState, state)


def violation_state(state: str) -> str:
    names = {
        ViolationState.OPEN: _("Open"),
        ViolationState.EXEMPTED: _("Exempted by the center"),
        ViolationState.RESOLVED: _("Resolved: no longer seen"),
        ViolationState.SHUT_DOWN: _("VM shut down over it"),
    }
    return common.label(names, ViolationState, state)


def _severity_tone(value: str) -> str:
    return {"critical": "danger", "high": "danger", "medium": "warning"}.get(value, "info")


def _deadline(f: Finding, now: datetime) -> dict[str, str]:
    """The deadline as shown: a badge with its words and a tone (colour is never the only cue)."""
    if f.deadline_at is None:
        return {"text": _("No deadline"), "tone": "muted", "status": "none"}
    if f.state in (FindingState.FIXED, FindingState.RETESTED, FindingState.CLOSED):
        return {
            "text": _("Reported fixed") if f.state != FindingState.CLOSED else _("Closed"),
            "tone": "success",
            "status": "done",
        }
    if findings.is_overdue(f, now):
        return {"text": _("Overdue"), "tone": "danger", "status": "overdue"}
    return {"text": _("Due"), "tone": "warning", "status": "open"}


def _finding_row(f: Finding, now: datetime) -> dict[str, Any]:
    return {
        "f": f,
        "state": finding_state(f.state),
        "category": category_name(f.category),
        "severity": severity_name(f.severity),
        "severity_tone": _severity_tone(f.severity),
        "deadline": _deadline(f, now),
    }


# ---- the finding's actions, offered or explained --------------------------------------------------

_FIX_FROM = {FindingState.OPEN.value, FindingState.NOTIFIED.value}


def _why_not_fix(f: Finding, actor: Actor) -> str:
    """Why ``actor`` cannot report ``f`` fixed now ('' when they can)."""
    if "fix" in findings.actions(f, actor):
        return ""
    if not FINDING.may(actor.role, FindingAction.FIX):
        return common.say(
            "Only the unit's security administrator (or the center) reports a finding fixed.",
            "由本单位网络安全管理员（或信息中心）报告整改完成。",
        )
    if f.state not in _FIX_FROM:
        return _("The finding is “%(state)s”: there is nothing to report now.") % {
            "state": finding_state(f.state)
        }
    return _("This action is not available now.")


def _detail_context(
    session: Session,
    token: str,
    user: User,
    finding_id: int,
    errors_: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    message: tuple[str, str] | None = None,
) -> dict[str, Any]:
    actor = identity.actor_of(user)
    f = findings.find(session, actor, finding_id)  # 404 for another unit's
    now = datetime.now(UTC)
    available = findings.actions(f, actor)
    return {
        **common.base(token, user, _("Finding %(id)d") % {"id": f.id or 0}, "/findings"),
        "row": _finding_row(f, now),
        "can_fix": "fix" in available,
        "why_not_fix": _why_not_fix(f, actor),
        "can_retest": "retest" in available,
        "can_close": "close" in available,
        "center": actor.role in (Role.CENTER_ADMIN, Role.CENTER_OPERATOR),
        "vm_url": pages.vm(f.vm_id) if f.vm_id is not None else "",
        "incident_url": pages.incident(f.incident_id) if f.incident_id is not None else "",
        "notice_url": pages.notice(f.notice_id) if f.notice_id is not None else "",
        "errors": errors_ or {},
        "values": values or {},
        "message": message,
    }


def _not_found(request: Request, token: str, user: User, what: str, active: str, ident: int) -> Response:
    texts = {
        "finding": _("There is no finding %(id)d, or it is not yours to see"),
        "notice": _("There is no notice %(id)d, or it is not yours to see"),
        "violation": _("There is no violation %(id)d, or it is not yours to see"),
    }
    return common.not_found(_templates, request, token, user, active, texts[what] % {"id": ident})


# ---- findings -------------------------------------------------------------------------------------


@router.get("/findings", response_class=HTMLResponse)
def finding_list(
    request: Request,
    session: SessionDep,
    state: str = "",
    overdue: str = "",
    sort: str = "deadline_at",
    order: str = "asc",
    page: int = 1,
) -> Response:
    """The findings the user may see (a unit's own; the center every unit's), filterable by state
    and "overdue only", sortable by deadline, severity or number, paged."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    actor = identity.actor_of(user)
    # A pasted URL with an unknown value shows the default, not an error page.
    sort = sort if sort in FINDING_SORTS else "deadline_at"
    order = order if order in ("asc", "desc") else "asc"
    chosen = FindingState(state) if state in set(FindingState) else None
    page = min(max(page, 1), 10_000)
    filters = FindingFilters(state=chosen, overdue=True if overdue == "1" else None)
    request_page = PageRequest(PAGE_SIZE, (page - 1) * PAGE_SIZE, sort if order == "asc" else f"-{sort}")
    found = findings.list_findings(session, actor, filters, request_page)
    now = datetime.now(UTC)
    context: dict[str, Any] = {
        **common.base(token, user, _("Security findings"), "/findings"),
        "rows": [_finding_row(f, now) for f in found.items],
        "states": [("", _("All states"))] + [(s.value, finding_state(s.value)) for s in FindingState],
        "state": chosen.value if chosen else "",
        "overdue": overdue == "1",
        "sort": sort,
        "order": order,
        "page": page,
        "pages": max((found.total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        "total": found.total,
    }
    return _templates.TemplateResponse(request, "findings.html", context)


@router.get("/findings/{finding_id:int}", response_class=HTMLResponse)
def finding_detail(request: Request, session: SessionDep, finding_id: int) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    try:
        context = _detail_context(session, token, user, finding_id)
    except errors.NotFound:
        return _not_found(request, token, user, "finding", "/findings", finding_id)
    return _templates.TemplateResponse(request, "finding_detail.html", context)


@router.post("/findings/{finding_id:int}/{action}")
async def finding_action(request: Request, session: SessionDep, finding_id: int, action: str) -> Response:
    """fix (the unit: how it was fixed), retest (the center: passed or not, a note), close (the
    center: why). Bad input is shown beside its field with the values kept; nothing is written."""
    posted = await common.signed_form(_templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
    actor = identity.actor_of(user)
    who = identity.who(user)
    values = {k: str(form.get(k, "")).strip() for k in ("note", "passed", "reason")}
    problems: dict[str, str] = {}
    if action == "fix" and not values["note"]:
        problems["note"] = _("Say how the finding was fixed (the center retests it on this basis).")
    if action == "retest" and values["passed"] not in ("yes", "no"):
        problems["passed"] = _("Choose whether the retest passed.")
    if action == "close" and not values["reason"]:
        problems["reason"] = _("Give the reason for closing without a retest.")
    for name in ("note", "reason"):
        if len(values[name]) > MAX_NOTE:
            problems[name] = _("At most %(n)d characters.") % {"n": MAX_NOTE}
    if action not in ("fix", "retest", "close"):
        return _not_found(request, token, user, "finding", "/findings", finding_id)
    status = 200
    message: tuple[str, str] | None = None
    if not problems:
        try:
            if action == "fix":
                findings.fix(session, actor, who, finding_id, values["note"])
                message = (
                    "success",
                    _("Reported fixed. The center retests it and closes it when it passes."),
                )
            elif action == "retest":
                f = findings.retest(
                    session, actor, who, finding_id, passed=values["passed"] == "yes", note=values["note"]
                )
                message = (
                    ("success", _("Retest passed: the finding is closed."))
                    if f.state == FindingState.CLOSED
                    else (
                        "warning",
                        _("Retest failed: the finding is open again with a new deadline; the unit is told."),
                    )
                )
            else:
                findings.close(session, actor, who, finding_id, values["reason"])
                message = ("success", _("The finding is closed."))
        except errors.NotFound:
            session.rollback()
            return _not_found(request, token, user, "finding", "/findings", finding_id)
        except errors.PortalError as exc:  # refused (role, or the state changed meanwhile): nothing written
            session.rollback()
            status, message = exc.status, ("error", common.error_message(exc))
    else:
        status = 422
    if status == 200:
        return RedirectResponse(pages.finding(finding_id), status_code=303)
    context = _detail_context(session, token, user, finding_id, problems, values, message)
    context["action"] = action
    return _templates.TemplateResponse(request, "finding_detail.html", context, status_code=status)


# ---- notices --------------------------------------------------------------------------------------


@router.get("/notices", response_class=HTMLResponse)
def notice_list(request: Request, session: SessionDep, state: str = "", page: int = 1) -> Response:
    """The authority notices (通报) the user may see, newest first."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    actor = identity.actor_of(user)
    chosen = NoticeState(state) if state in set(NoticeState) else None
    page = min(max(page, 1), 10_000)
    found = notices.list_notices(
        session, actor, NoticeFilters(state=chosen), PageRequest(PAGE_SIZE, (page - 1) * PAGE_SIZE)
    )
    context: dict[str, Any] = {
        **common.base(token, user, _("Authority notices"), "/notices"),
        "rows": [
            {"view": v, "state": notice_state(v.notice.state), "category": category_name(v.notice.category)}
            for v in found.items
        ],
        "states": [("", _("All states"))] + [(s.value, notice_state(s.value)) for s in NoticeState],
        "state": chosen.value if chosen else "",
        "page": page,
        "pages": max((found.total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        "total": found.total,
    }
    return _templates.TemplateResponse(request, "notices.html", context)


@router.get("/notices/{notice_id:int}", response_class=HTMLResponse)
def notice_detail(request: Request, session: SessionDep, notice_id: int) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    actor = identity.actor_of(user)
    try:
        view = notices.get_notice(session, actor, notice_id)
    except errors.NotFound:
        return _not_found(request, token, user, "notice", "/notices", notice_id)
    now = datetime.now(UTC)
    n = view.notice
    context: dict[str, Any] = {
        **common.base(token, user, _("Notice %(number)s") % {"number": n.notice_number}, "/notices"),
        "n": n,
        "unit_code": view.unit_code or "",
        "state": notice_state(n.state),
        "category": category_name(n.category),
        "severity": severity_name(n.severity),
        "findings": [_finding_row(f, now) for f in view.findings],
        "incident_url": pages.incident(view.incident.id) if view.incident is not None else "",
        "vm_url": pages.vm(n.vm_id) if n.vm_id is not None else "",
    }
    return _templates.TemplateResponse(request, "notice_detail.html", context)


# ---- forbidden-service violations -----------------------------------------------------------------


@router.get("/violations", response_class=HTMLResponse)
def violation_list(request: Request, session: SessionDep, state: str = "", page: int = 1) -> Response:
    """Forbidden services (mail, DNS, proxy, forum: agreement §6) seen open on the user's VMs."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    actor = identity.actor_of(user)
    chosen = ViolationState(state) if state in set(ViolationState) else None
    page = min(max(page, 1), 10_000)
    found = violations.list_violations(
        session, actor, ViolationFilters(state=chosen), PageRequest(PAGE_SIZE, (page - 1) * PAGE_SIZE)
    )
    context: dict[str, Any] = {
        **common.base(token, user, _("Forbidden services"), "/violations"),
        "rows": [
            {"v": v, "state": violation_state(v.state), "service": service_name(v.service)}
            for v in found.items
        ],
        "states": [("", _("All states"))] + [(s.value, violation_state(s.value)) for s in ViolationState],
        "state": chosen.value if chosen else "",
        "page": page,
        "pages": max((found.total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        "total": found.total,
    }
    return _templates.TemplateResponse(request, "violations.html", context)


@router.get("/violations/{violation_id:int}", response_class=HTMLResponse)
def violation_detail(request: Request, session: SessionDep, violation_id: int) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    actor = identity.actor_of(user)
    try:
        v = violations.get_violation(session, actor, violation_id)
    except errors.NotFound:
        return _not_found(request, token, user, "violation", "/violations", violation_id)
    context: dict[str, Any] = {
        **common.base(token, user, _("Forbidden service %(id)d") % {"id": v.id or 0}, "/violations"),
        "v": v,
        "state": violation_state(v.state),
        "service": service_name(v.service),
        "reasons": v.reasons_zh if common.zh() else v.reasons_en,
        "vm_url": pages.vm(v.vm_id),
    }
    return _templates.TemplateResponse(request, "violation_detail.html", context)
