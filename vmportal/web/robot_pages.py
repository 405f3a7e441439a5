"""群机器人: the center administrator's page of group robots (/admin/robots), issue 14 point 6.

One row per unit and one for the center: the DingTalk or WeCom robot that repeats the notices mailed
to it, its webhook masked, whether it signs, whether it is on and which kinds of notice it takes; the
form of the row chosen (?edit=center or ?edit=<unit id>) sets it up or changes it through
``center.robots.configure``, the API's use case, whose refusal is shown beside its field with the rule
and writes nothing. Below, the robot messages with their delivery status (the outbox the mail task
sends), a failed one sent again with one button (``mail.robots.resend``).

Blank webhook and secret fields keep what is stored: neither is ever put back into the page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from vmportal.center import robots as robot_config
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.mail import robots as robot_outbox
from vmportal.mail.models import NotificationState, RobotKind
from vmportal.mail.service import MailEvent
from vmportal.unit import service as units
from vmportal.web import common
from vmportal.web.admin_common import ADMINS, refused, shown, templates, typed_id
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)

PAGE = "/admin/robots"
FIELDS = ("kind", "webhook_url", "secret", "enabled")
MESSAGES_SHOWN = 50


def _refuse(request: Request, token: str, user: User, action: str) -> Response:
    return refused(
        request, token, user, PAGE, action, _("only the center administrator configures group robots")
    )


def _state_label(state: str) -> str:
    return {
        NotificationState.PENDING.value: _("Waiting"),
        NotificationState.SENDING.value: _("Sending"),
        NotificationState.SENT.value: _("Sent"),
        NotificationState.FAILED.value: _("Failed"),
    }.get(state, state)


def notice_labels() -> dict[str, str]:
    """Each kind of notice a robot may take, in the user's words: the center ticks what a group
    hears by what the notice is about, not by the outbox's event codes (kept beside, in small type,
    for the API's ``kinds``). A kind added to MailEvent without words here shows as its code."""
    words = {
        MailEvent.CONTAINED: _("A VM contained"),
        MailEvent.CONTAINMENT_FAILED: _("A containment failed"),
        MailEvent.RECTIFICATION_ACCEPTED: _("Rectification accepted"),
        MailEvent.RECTIFICATION_REJECTED: _("Rectification rejected"),
        MailEvent.DISMISSED: _("Incident dismissed"),
        MailEvent.NOTICE: _("Security notice (no containment)"),
        MailEvent.FINDING_OPENED: _("Finding opened"),
        MailEvent.FINDING_REOPENED: _("Finding reopened"),
        MailEvent.FINDING_DUE_SOON: _("Finding due soon"),
        MailEvent.FINDING_OVERDUE: _("Finding overdue"),
        MailEvent.VIOLATION: _("Violation recorded"),
        MailEvent.VIOLATION_SHUTDOWN: _("VM shut down for a violation"),
        MailEvent.REQUEST_DUE_SOON: _("Request due soon"),
        MailEvent.REQUEST_OVERDUE: _("Request overdue"),
        MailEvent.REQUEST_SUBMITTED: _("Request submitted"),
        MailEvent.REQUEST_ENDORSED: _("Request endorsed"),
        MailEvent.REQUEST_APPROVED: _("Request approved"),
        MailEvent.REQUEST_REJECTED: _("Request rejected"),
        MailEvent.REQUEST_DELIVERED: _("VM delivered"),
        MailEvent.REQUEST_FAILED: _("Provisioning failed"),
        MailEvent.POWER_FAILED: _("Power operation failed"),
        MailEvent.ALERT_UNMATCHED: _("Alert matching no VM"),
        MailEvent.CLEANUP_OPENED: _("Annual clean-up opened"),
        MailEvent.CLEANUP_REMINDER: _("Annual clean-up reminder"),
        MailEvent.CLEANUP_DEADLINE: _("Annual clean-up deadline"),
        MailEvent.CLEANUP_UNCONFIRMED: _("VMs not confirmed in the clean-up"),
        MailEvent.CLEANUP_ACTION: _("Clean-up action on a VM"),
        MailEvent.MAINTENANCE_ANNOUNCED: _("Maintenance announced"),
        MailEvent.MAINTENANCE_CHANGED: _("Maintenance changed"),
        MailEvent.MAINTENANCE_CANCELLED: _("Maintenance cancelled"),
        MailEvent.MAINTENANCE_REMINDER: _("Maintenance reminder"),
    }
    return {kind: words.get(MailEvent(kind), kind) for kind in robot_config.NOTICE_KINDS}


def _edit_target(edit: str) -> tuple[bool, int | None]:
    """(valid, unit id) of ?edit=…: "center" is the center's robot (None)."""
    if edit == "center":
        return True, None
    unit_id = typed_id(edit)
    return unit_id is not None, unit_id


def _page(
    request: Request,
    session: Session,
    token: str,
    user: User,
    *,
    edit: str = "",
    state: str = "",
    errs: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    flash: tuple[str, str] | None = None,
    status: int = 200,
) -> Response:
    configured = {r.scope: robot_config.shown(r) for r in robot_config.robots(session)}
    rows: list[dict[str, Any]] = [
        {"edit": "center", "name": _("The center"), "robot": configured.get(robot_outbox.CENTER_SCOPE)}
    ]
    names: dict[int, str] = {}
    for unit in units.list_units(session):
        assert unit.id is not None
        names[unit.id] = common.say(unit.name_en or unit.name_zh, unit.name_zh)
        rows.append(
            {
                "edit": str(unit.id),
                "name": names[unit.id],
                "robot": configured.get(robot_outbox.scope_of(unit.id)),
            }
        )
    editing = next((row for row in rows if row["edit"] == edit), None)
    stored = (editing or {}).get("robot") or {}
    shown_values = {
        "kind": stored.get("kind", RobotKind.DINGTALK.value),
        "webhook_url": "",
        "secret": "",
        "enabled": "true" if stored.get("enabled", True) else "false",
        "kinds": list(stored.get("kinds", [])),
    }
    wanted_state = state if state in {s.value for s in NotificationState} else ""
    messages, total = robot_outbox.list_messages(
        session, state=NotificationState(wanted_state) if wanted_state else None, limit=MESSAGES_SHOWN
    )
    context = {
        **common.base(token, user, _("Group robots"), PAGE),
        "rows": rows,
        "editing": editing,
        "stored": stored,
        "values": {**shown_values, **(values or {})},
        "errors": errs or {},
        "flashes": [flash] if flash else [],
        "kind_options": [(RobotKind.DINGTALK.value, _("DingTalk")), (RobotKind.WECOM.value, _("WeCom"))],
        "enabled_options": [("true", _("On")), ("false", _("Off"))],
        "notice_kinds": robot_config.NOTICE_KINDS,
        "notice_labels": notice_labels(),
        "messages": [
            {
                "m": m,
                "state_label": _state_label(m.state),
                "where": _("The center") if m.unit_id is None else names.get(m.unit_id, str(m.unit_id)),
                "may_resend": m.state in (NotificationState.FAILED.value, NotificationState.PENDING.value),
            }
            for m in messages
        ],
        "messages_total": total,
        "state": wanted_state,
        "state_options": [("", _("Any"))] + [(s.value, _state_label(s.value)) for s in NotificationState],
    }
    return templates.TemplateResponse(request, "robots.html", context, status_code=status)


@router.get(PAGE, response_class=HTMLResponse)
def robots_page(
    request: Request, session: SessionDep, edit: str = "", state: str = "", done: str = ""
) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role not in ADMINS:
        return _refuse(request, token, user, "robots.read")
    flash = None
    if done == "saved":
        flash = ("success", _("The group robot is saved."))
    elif done == "resent":
        flash = ("success", _("The message is being sent again."))
    return _page(request, session, token, user, edit=edit[:20], state=state[:20], flash=flash)


@router.post(PAGE + "/{edit}")
async def save_robot(request: Request, session: SessionDep, edit: str) -> Response:
    posted = await common.signed_form(templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
    if user.role not in ADMINS:
        return _refuse(request, token, user, "robots.configure")
    valid, unit_id = _edit_target(edit)
    if not valid:
        return common.not_found(templates, request, token, user, PAGE, _("No such unit."))
    typed = {f: str(form.get(f, "")).strip()[:1000] for f in FIELDS}
    kinds = [str(k)[:40] for k in form.getlist("kinds")][:100]
    remove_secret = form.get("remove_secret") == "1"
    change = robot_config.RobotChange(
        kind=typed["kind"],
        webhook_url=typed["webhook_url"] or None,  # blank: keep the stored one
        secret="" if remove_secret else (typed["secret"] or None),
        enabled={"true": True, "false": False}.get(typed["enabled"], True),
        kinds=kinds,
    )
    try:
        robot_config.configure(session, identity.who(user), unit_id, change)
    except errors.NotFound:
        session.rollback()
        return common.not_found(templates, request, token, user, PAGE, _("No such unit."))
    except errors.PortalError as exc:
        session.rollback()  # nothing half-written
        problems = {k.split(".", 1)[0]: v for k, v in shown(exc, "webhook_url").items()}
        values = {**typed, "webhook_url": "", "secret": "", "kinds": kinds}  # never echo a credential
        return _page(
            request, session, token, user, edit=edit, errs=problems, values=values, status=exc.status
        )
    return RedirectResponse(f"{PAGE}?done=saved", status_code=303)


@router.post(PAGE + "/messages/{message_id}/resend")
async def resend_message(request: Request, session: SessionDep, message_id: str) -> Response:
    posted = await common.signed_form(templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, _form = posted
    if user.role not in ADMINS:
        return _refuse(request, token, user, "robots.resend")
    ident = typed_id(message_id)
    if ident is None:
        return common.not_found(templates, request, token, user, PAGE, _("No such message."))
    try:
        robot_outbox.resend(session, ident)
    except errors.NotFound:
        return common.not_found(templates, request, token, user, PAGE, _("No such message."))
    except errors.PortalError as exc:
        session.rollback()
        message = _("%(message)s (rule %(rule)s)") % {"message": common.error_message(exc), "rule": exc.code}
        return common.refused(templates, request, token, user, PAGE, message)
    return RedirectResponse(f"{PAGE}?done=resent", status_code=303)
