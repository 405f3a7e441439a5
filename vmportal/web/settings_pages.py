"""中心设置: the center-wide settings (/settings): whether requests need the unit lead's endorsement
(endorsement_required) and how the center hears of alerts that match no VM (unmatched_alert_mail:
each, digest or off).

Every signed-in user reads them (as GET /api/v1/center/settings: a unit needs to know whether its
requests wait for the lead); the center administrator changes them. A change goes through
center.service.set_setting, which checks the type and the choices and writes the audit row; its
refusal is shown beside the field with the rule, the values kept, and nothing is written (both
settings or neither).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from policies.roles import Role
from vmportal.center import service as center
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.web import common, templating
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "center")

#: Who changes the settings (the API's PUT /center/settings).
CHANGERS = frozenset({Role.CENTER_ADMIN.value})
FIELDS = ("endorsement_required", "unmatched_alert_mail", "maintenance_notice_hours")


def _description(key: str) -> str:
    spec = center.KNOWN[key]
    return common.say(spec.description_en, spec.description_zh)


def _page(
    request: Request,
    session: Session,
    token: str,
    user: User,
    *,
    errs: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    flash: tuple[str, str] | None = None,
    status: int = 200,
) -> Response:
    stored = center.all_settings(session)
    shown = {
        "endorsement_required": "true" if stored["endorsement_required"] else "false",
        "unmatched_alert_mail": str(stored["unmatched_alert_mail"]),
        "maintenance_notice_hours": str(stored["maintenance_notice_hours"]),
    }
    context = {
        **common.base(token, user, _("Center settings"), "/settings"),
        "values": {**shown, **(values or {})},
        "stored": shown,
        "errors": errs or {},
        "flashes": [flash] if flash else [],
        "may_change": user.role in CHANGERS,
        "why_not": _("Only the center administrator changes the center settings."),
        "descriptions": {key: _description(key) for key in FIELDS},
        "endorsement_options": [
            ("true", _("Yes: requests wait for the unit lead's endorsement")),
            ("false", _("No: requests go straight to the center")),
        ],
        "mail_options": [
            ("each", _("One mail per alert")),
            ("digest", _("One mail per hour listing them")),
            ("off", _("No mail")),
        ],
    }
    return _templates.TemplateResponse(request, "settings.html", context, status_code=status)


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, session: SessionDep, done: str = "") -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    flash = ("success", _("The center settings are saved.")) if done == "saved" else None
    return _page(request, session, token, user, flash=flash)


def _shown(exc: errors.PortalError) -> tuple[str, str]:
    fields = exc.extra.get("fields") or [{}]
    first = fields[0]
    message = common.say(str(first.get("message", exc.message)), exc.message_zh.split("：", 1)[-1])
    text = _("%(message)s (rule %(rule)s)") % {"message": message, "rule": str(first.get("rule", ""))}
    return str(first.get("field", "")), text


@router.post("/settings")
async def save_settings(request: Request, session: SessionDep) -> Response:
    posted = await common.signed_form(_templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
    if user.role not in CHANGERS:
        message = _("Rule %(rule)s: %(reason)s") % {
            "rule": "settings.update",
            "reason": _("only the center administrator changes the center settings"),
        }
        return common.refused(_templates, request, token, user, "/settings", message)
    # A field the form does not carry is left as it is (a client posting only some of them).
    typed = {k: str(form.get(k, "")).strip()[:64] for k in FIELDS if k in form}
    # true/false and whole hours as the form gives them; anything else reaches the service as
    # typed, which refuses it (rule type) as it refuses the API's.
    as_bool = {"true": True, "false": False}
    wanted: dict[str, Any] = dict(typed)
    if "endorsement_required" in typed:
        wanted["endorsement_required"] = as_bool.get(
            typed["endorsement_required"], typed["endorsement_required"]
        )
    hours = typed.get("maintenance_notice_hours")
    if hours is not None and hours.isascii() and hours.isdigit():
        wanted["maintenance_notice_hours"] = int(hours)
    who = identity.who(user)
    problems: dict[str, str] = {}
    for key in wanted:
        try:
            center.set_setting(session, who, key, wanted[key])
        except errors.PortalError as exc:
            field, message = _shown(exc)
            problems[field or key] = message
    if problems:
        session.rollback()  # both settings or neither
        return _page(request, session, token, user, errs=problems, values=typed, status=422)
    return RedirectResponse("/settings?done=saved", status_code=303)
