"""安全事件: the unit's incidents (/incidents) and one incident's page (/incidents/{id}) with its
timeline, its rectification reports and, for the unit's security administrator, the rectification
report form with attachments; for the center the same list is the incident board (every unit),
and the incident's page offers verifying or rejecting a report and dismissing a false positive.

Every action is the incidents domain's own use case (incidents.service, incidents.rectification),
so the rules, the audit rows and the containment's undoing are the API's; the page offers only the
actions the incident's lifecycle lets the user's role take in its state (INCIDENT.available), and a
refusal is shown with its reason. Another unit's incident answers the 404 page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from policies.compromise import Category, Containment
from policies.roles import Actor, Role
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.incidents import rectification
from vmportal.incidents import service as incidents
from vmportal.incidents.lifecycle import INCIDENT, Action
from vmportal.incidents.models import (
    ContainmentState,
    Incident,
    IncidentState,
    RectificationState,
    RestoreState,
)
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.web import common, templating
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "unit")

PAGE_SIZE = 50
#: A reason or comment typed into the center's forms (the services keep 2,000 characters).
MAX_REASON = 2000
#: The board's filter: the incidents still open (default), every one, one state, or those whose
#: containment the hypervisor refused (the center retries them).
FAILED = "containment_failed"
FILTERS = ("active", "all", FAILED, *(s.value for s in IncidentState))


def state_label(state: str) -> str:
    names = {
        IncidentState.OPEN: _("Awaiting the center's decision"),
        IncidentState.CONTAINING: _("Being contained"),
        IncidentState.CONTAINED: _("Contained (VM suspended)"),
        IncidentState.RECTIFICATION_SUBMITTED: _("Rectification waiting for verification"),
        IncidentState.RESTORING: _("Being restored"),
        IncidentState.CLOSED: _("Closed"),
        IncidentState.DISMISSED: _("Dismissed as a false positive"),
    }
    return common.label(names, IncidentState, state)


def state_tone(state: str) -> str:
    return {
        IncidentState.OPEN.value: "warning",
        IncidentState.CONTAINING.value: "warning",
        IncidentState.CONTAINED.value: "danger",
        IncidentState.RECTIFICATION_SUBMITTED.value: "info",
        IncidentState.RESTORING.value: "info",
    }.get(state, "neutral")


def category_label(category: str) -> str:
    names = {
        Category.VIRUS: _("Virus"),
        Category.TROJAN: _("Trojan"),
        Category.WEBSHELL: _("Web shell"),
        Category.BACKDOOR: _("Backdoor"),
        Category.ATTACK: _("Attacking others"),
        Category.DARK_LINK: _("Hidden links"),
        Category.WEAK_PASSWORD: _("Weak password"),
        Category.VULNERABILITY: _("Vulnerability"),
        Category.FORBIDDEN_SERVICE: _("Forbidden service"),
        Category.OTHER: _("Other"),
    }
    return common.label(names, Category, category)


def rect_state_label(state: str) -> str:
    names = {
        RectificationState.SUBMITTED: _("Waiting for the center"),
        RectificationState.ACCEPTED: _("Verified"),
        RectificationState.REJECTED: _("Rejected"),
        RectificationState.WITHDRAWN: _("Withdrawn"),
    }
    return common.label(names, RectificationState, state)


def containment_label(state: str) -> str:
    names = {
        ContainmentState.NONE: _("Nothing done to the VM"),
        ContainmentState.PENDING: _("Waiting for the hypervisor"),
        ContainmentState.CONFIRMED: _("In force (confirmed by the hypervisor)"),
        ContainmentState.FAILED: _("Failed; the center may retry"),
        ContainmentState.RELEASED: _("Released (confirmed by the hypervisor)"),
    }
    return common.label(names, ContainmentState, state)


def restore_label(state: str) -> str:
    names = {
        RestoreState.NONE: _("Not started"),
        RestoreState.PENDING: _("Waiting for the hypervisor"),
        RestoreState.CONFIRMED: _("The VM is restored"),
        RestoreState.HELD: _("Still held by another open incident"),
        RestoreState.FAILED: _("Failed; the center may retry"),
    }
    return common.label(names, RestoreState, state)


def action_label(action: str) -> str:
    names = {
        Containment.ISOLATE_NETWORK: _("Disconnect the VM's network"),
        Containment.POWER_OFF: _("Power the VM off"),
        Containment.BLOCK_WEB: _("Block its web service"),
        Containment.NOTIFY_ONLY: _("Notify only"),
    }
    return common.label(names, Containment, action)


def _labels() -> dict[str, Any]:
    return {
        "state": state_label,
        "tone": state_tone,
        "category": category_label,
        "rect": rect_state_label,
        "containment": containment_label,
        "restore": restore_label,
        "action": action_label,
    }


def _rule(rule: str, reason: str) -> str:
    return _("Rule %(rule)s: %(reason)s") % {"rule": rule, "reason": reason}


def _beside(message: str, rule: str) -> str:
    return _("%(message)s (rule %(rule)s)") % {"message": message, "rule": rule}


def _role_refusal(role: Role, action: Action) -> str:
    """Why ``role`` may never take ``action`` ('' when it may): the rule and its reason."""
    if INCIDENT.may(role, action):
        return ""
    if action is Action.SUBMIT_RECTIFICATION:
        reason = _("only the unit's security administrator submits its rectification report")
    else:
        reason = _("only the center's operators and administrators verify reports and dismiss incidents")
    return _rule(f"incident.{action.value}", reason)


def _why_not_submit(incident: Incident, user: User) -> str:
    """Why ``user`` cannot submit a report on ``incident`` now ('' when they can)."""
    role = Role(user.role)
    if role not in (Role.UNIT_ADMIN, Role.UNIT_LEAD):
        return ""  # the center and the auditor: not theirs, and nothing to explain
    if refused := _role_refusal(role, Action.SUBMIT_RECTIFICATION):
        return refused
    if incident.state == IncidentState.CONTAINED.value:
        return ""
    return _rule(
        "incident.submit_rectification",
        _("a report is submitted while the VM is contained; the incident is “%(state)s” now")
        % {"state": state_label(incident.state)},
    )


@router.get("/incidents", response_class=HTMLResponse)
def incident_list(request: Request, session: SessionDep, show: str = "active", page: int = 1) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    show = show if show in FILTERS else "active"
    page = max(page, 1)
    state = IncidentState(show) if show not in ("active", "all", FAILED) else None
    rows, total = incidents.list_incidents(
        session,
        identity.actor_of(user),
        incidents.IncidentFilters(
            state=state,
            active=True if show == "active" else None,
            containment_state=ContainmentState.FAILED if show == FAILED else None,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        ),
    )
    board = user.unit_id is None
    context = {
        **common.base(token, user, _("Incident board") if board else _("Security incidents"), "/incidents"),
        "rows": rows,
        "total": total,
        "page": page,
        "pages": max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        "show": show,
        "shows": [("active", _("Still open")), ("all", _("All")), (FAILED, _("Containment failed"))]
        + [(s.value, state_label(s.value)) for s in IncidentState],
        "board": board,
        **_labels(),
    }
    return _templates.TemplateResponse(request, "incidents.html", context)


_EMPTY = {"text": "", "reason": "", "comment": "", "dismiss_reason": ""}


def _detail(
    request: Request,
    session: Session,
    token: str,
    user: User,
    incident_id: int,
    *,
    errs: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    flash: tuple[str, str] | None = None,
    status: int = 200,
) -> Response:
    actor = identity.actor_of(user)
    try:
        row = incidents.get_incident(session, actor, incident_id)
    except errors.NotFound:
        return _no_such_incident(request, token, user, incident_id)
    incident = row.incident
    reports = rectification.list_for_incident(session, actor, incident_id)
    files = rectification.attachments(session, [r.id for r in reports if r.id is not None])
    available = set(INCIDENT.available(incident.state, Role(user.role)))
    if user.unit_id != incident.unit_id:  # a unit's admin reports on their own unit's incidents only
        available.discard(Action.SUBMIT_RECTIFICATION.value)
    context = {
        **common.base(token, user, _("Security incident %(id)d") % {"id": incident_id}, "/incidents"),
        "timeline": incidents.timeline(session, actor, incident_id),
        "reports": [(r, files.get(r.id or 0, [])) for r in reports],
        "may_submit": Action.SUBMIT_RECTIFICATION.value in available,
        "why_not_submit": _why_not_submit(incident, user),
        "may_review": Action.ACCEPT.value in available,
        "may_dismiss": Action.DISMISS.value in available,
        **_status(row),
        "errors": errs or {},
        "values": {**_EMPTY, **(values or {})},
        "flashes": [flash] if flash else [],
        "max_files": rectification.MAX_FILES,
        "say": common.say,
        **_labels(),
    }
    return _templates.TemplateResponse(request, "incident_detail.html", context, status_code=status)


def _status(row: incidents.IncidentRow) -> dict[str, Any]:
    """What the status block (incident_status.html) shows besides the labels."""
    incident = row.incident
    return {
        "row": row,
        "incident": incident,
        "reasons": incident.reasons_zh if common.zh() else incident.reasons_en,
        # Polled while it can still change (a final state never does).
        "live": incident.state not in (IncidentState.CLOSED.value, IncidentState.DISMISSED.value),
    }


@router.get("/incidents/{incident_id:int}/status", response_class=HTMLResponse)
def incident_status(request: Request, session: SessionDep, incident_id: int) -> Response:
    """The status block alone: what the incident page's htmx refresh asks for."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    try:
        row = incidents.get_incident(session, identity.actor_of(user), incident_id)
    except errors.NotFound:
        return _no_such_incident(request, token, user, incident_id)
    context = {**common.base(token, user, "", "/incidents"), **_status(row), **_labels()}
    return _templates.TemplateResponse(request, "incident_status.html", context)


def _no_such_incident(request: Request, token: str, user: User, incident_id: int) -> Response:
    return common.not_found(
        _templates,
        request,
        token,
        user,
        "/incidents",
        _("There is no incident %(id)d, or it is not yours to see") % {"id": incident_id},
    )


@router.get("/incidents/{incident_id:int}", response_class=HTMLResponse)
def incident_detail(request: Request, session: SessionDep, incident_id: int, done: str = "") -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    messages = {
        "submitted": _("Your rectification report is submitted; the center verifies it."),
        "accepted": _("The report is verified; the VM is being restored."),
        "rejected": _("The report is rejected; the unit has been told why."),
        "dismissed": _("The incident is dismissed as a false positive."),
    }
    flash = ("success", messages[done]) if done in messages else None
    return _detail(request, session, token, user, incident_id, flash=flash)


def _refusal(exc: errors.PortalError, action: Action) -> str:
    """A refusal that is not about one field (the state moved on, a role): its rule and reason."""
    rule = str(exc.extra.get("rule") or f"incident.{action.value}")
    return _rule(rule, common.error_message(exc))


def _upload_error(exc: errors.PortalError) -> tuple[str, str] | None:
    """(field, message beside it) for a service error about the report's text or its files."""
    fields = exc.extra.get("fields") or []
    if fields:  # InvalidField: the field, its rule and both messages
        field, rule = str(fields[0]["field"]), str(fields[0]["rule"])
        zh_text = exc.message_zh.split("：", 1)[-1]
        message = common.say(str(fields[0]["message"]), zh_text)
    elif isinstance(exc.extra.get("field"), str):  # an attachment's type or size: files[i]
        field, rule = str(exc.extra["field"]), str(exc.extra.get("rule", exc.code))
        message = common.error_message(exc)
    else:
        return None
    return ("files" if field.startswith("files") else "text"), _beside(message, rule)


@router.post("/incidents/{incident_id:int}/rectification")
async def submit_report(request: Request, session: SessionDep, incident_id: int) -> Response:
    """The unit's security administrator submits the report (text and attachments) through
    incidents.rectification.submit. Bad input is shown beside its field, the text kept; nothing is
    written (the transaction is rolled back; a stored attachment is content-addressed, unreferenced)."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    form = await request.form(max_files=rectification.MAX_FILES + 1, max_fields=10)
    try:
        if (bad := common.csrf_refused(_templates, request, token, user, form)) is not None:
            return bad
        text = str(form.get("text", ""))
        uploads = [
            rectification.Upload(part.filename, part.content_type or "", part.file)
            for part in form.getlist("files")
            if isinstance(part, UploadFile) and part.filename
        ]
        values = {"text": text}
        problems: dict[str, str] = {}
        if not text.strip():
            problems["text"] = _beside(_("Describe what was found and what was fixed."), "required")
        elif len(text.strip()) > rectification.MAX_TEXT:
            problems["text"] = _beside(
                _("At most %(n)d characters.") % {"n": rectification.MAX_TEXT}, "max_length"
            )
        if len(uploads) > rectification.MAX_FILES:
            problems["files"] = _beside(
                _("At most %(n)d attachments.") % {"n": rectification.MAX_FILES}, "max_items"
            )
        if problems:
            try:
                incidents.find_incident(session, identity.actor_of(user), incident_id)
            except errors.NotFound:
                return _no_such_incident(request, token, user, incident_id)
            return _detail(
                request, session, token, user, incident_id, errs=problems, values=values, status=422
            )

        def submit() -> None:
            rectification.submit(
                session, identity.actor_of(user), identity.who(user), incident_id, text, uploads
            )

        try:
            await run_in_threadpool(submit)
        except errors.NotFound:
            session.rollback()
            return _no_such_incident(request, token, user, incident_id)
        except errors.PortalError as exc:
            session.rollback()  # nothing half-written
            beside = _upload_error(exc)
            errs = {beside[0]: beside[1]} if beside else {}
            flash = None if beside else ("error", _refusal(exc, Action.SUBMIT_RECTIFICATION))
            return _detail(
                request,
                session,
                token,
                user,
                incident_id,
                errs=errs,
                values=values,
                flash=flash,
                status=exc.status,
            )
    finally:
        await form.close()
    return RedirectResponse(f"/incidents/{incident_id}?done=submitted", status_code=303)


#: The center's actions: the lifecycle's action, and the form field whose text it takes.
_CENTER_ACTIONS = {
    "accepted": (Action.ACCEPT, "comment"),
    "rejected": (Action.REJECT, "reason"),
    "dismissed": (Action.DISMISS, "reason"),
}


async def _center_action(
    request: Request, session: Session, incident_id: int, kind: str, rect_id: int | None = None
) -> Response:
    """Verify (accept) or reject a report, or dismiss the incident: the center's, through the same
    service calls as the API's routes (which require a center role; so does this)."""
    posted = await common.signed_form(_templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
    actor, who = identity.actor_of(user), identity.who(user)
    action, name = _CENTER_ACTIONS[kind]
    text = str(form.get(name, "")).strip()
    # Where an error is shown: beside the text box of the form that was sent.
    field = "dismiss_reason" if kind == "dismissed" else name
    values = {field: text}
    try:
        incidents.find_incident(session, actor, incident_id)  # 404 for another unit's
        if rect_id is not None:
            _belongs(session, actor, rect_id, incident_id)
    except errors.NotFound:
        return _no_such_incident(request, token, user, incident_id)
    if refused := _role_refusal(actor.role, action):
        flash = ("error", refused)
        return _detail(request, session, token, user, incident_id, values=values, flash=flash, status=403)
    problem = ""
    if kind != "accepted" and not text:
        problem = _beside(_("Give the reason; it is told to the unit."), "required")
    elif len(text) > MAX_REASON:
        problem = _beside(_("At most %(n)d characters.") % {"n": MAX_REASON}, "max_length")
    if problem:
        errs = {field: problem}
        return _detail(request, session, token, user, incident_id, errs=errs, values=values, status=422)
    try:
        if kind == "dismissed":
            incidents.dismiss(session, actor, who, incident_id, text)
        elif kind == "accepted" and rect_id is not None:
            rectification.accept(session, actor, who, rect_id, text)
        elif rect_id is not None:
            rectification.reject(session, actor, who, rect_id, text)
    except errors.PortalError as exc:  # the state moved on meanwhile: nothing written
        session.rollback()
        flash = ("error", _refusal(exc, action))
        return _detail(
            request, session, token, user, incident_id, values=values, flash=flash, status=exc.status
        )
    return RedirectResponse(f"/incidents/{incident_id}?done={kind}", status_code=303)


def _belongs(session: Session, actor: Actor, rect_id: int, incident_id: int) -> None:
    rect = rectification.get_rectification(session, actor, rect_id)
    if rect.incident_id != incident_id:
        raise errors.NotFound("rectification", rect_id)


@router.post("/incidents/{incident_id:int}/dismiss")
async def dismiss(request: Request, session: SessionDep, incident_id: int) -> Response:
    return await _center_action(request, session, incident_id, "dismissed")


@router.post("/incidents/{incident_id:int}/rectifications/{rect_id:int}/accept")
async def accept(request: Request, session: SessionDep, incident_id: int, rect_id: int) -> Response:
    return await _center_action(request, session, incident_id, "accepted", rect_id)


@router.post("/incidents/{incident_id:int}/rectifications/{rect_id:int}/reject")
async def reject(request: Request, session: SessionDep, incident_id: int, rect_id: int) -> Response:
    return await _center_action(request, session, incident_id, "rejected", rect_id)


@router.get("/incidents/{incident_id:int}/rectifications/{rect_id:int}/attachments/{attachment_id:int}")
def attachment(
    request: Request, session: SessionDep, incident_id: int, rect_id: int, attachment_id: int
) -> Response:
    """An attachment of a report, for whoever may see the incident (the unit, the center)."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    actor = identity.actor_of(user)
    try:
        _belongs(session, actor, rect_id, incident_id)
        found = rectification.get_attachment(session, actor, rect_id, attachment_id)
    except errors.NotFound:
        return common.not_found(_templates, request, token, user, "/incidents", _("No such attachment"))
    path = rectification.attachment_path(found)
    if not path.is_file():
        return common.not_found(_templates, request, token, user, "/incidents", _("No such attachment"))
    return FileResponse(path, media_type=found.content_type, filename=found.filename)
