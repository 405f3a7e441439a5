"""清理工作: the annual clean-up of domains and VMs (plan 二(二)1) as pages (/cleanup).

A unit's users see the current campaign (the latest not closed, else the latest) with their unit's
items, and answer each: confirm, correct (a domain's new name, a system's responsible person, the
system a VM serves) or retire with a reason, or confirm all that are left. The center's roles see the
campaign's progress per unit and what is still unconfirmed. Every action goes through the clean-up
service (scoping, state, audit); a refusal is shown with its reason and nothing is written. Another
unit's item answers the 404 page, as the API does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic_core import PydanticCustomError
from sqlmodel import Session
from starlette.datastructures import UploadFile

from policies.roles import Actor
from vmportal.cleanup import service as cleanup
from vmportal.cleanup.models import CampaignState, CleanupCampaign, ItemKind, ItemStatus
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.fields import normalise_hostname
from vmportal.kit.http import SessionDep
from vmportal.kit.scope import sees_every_unit
from vmportal.kit.settings import get_settings
from vmportal.paperwork import service as paperwork
from vmportal.paperwork.sheets import XLSX_TYPE
from vmportal.unit import service as units
from vmportal.web import common, templating
from vmportal.web.i18n import N_
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "cleanup")

MAX_TEXT = 500
_KINDS = {
    ItemKind.VM: N_("VM"),
    ItemKind.SYSTEM: N_("Information system"),
    ItemKind.DOMAIN: N_("Domain name"),
}
_STATUSES = {
    ItemStatus.PENDING: N_("Not confirmed"),
    ItemStatus.CONFIRMED: N_("Confirmed"),
    ItemStatus.CORRECTED: N_("Corrected"),
    ItemStatus.RETIRED: N_("No longer needed"),
}
_STATES = {
    CampaignState.OPEN: N_("Open"),
    CampaignState.DEADLINE_PASSED: N_("Deadline passed"),
    CampaignState.CLOSED: N_("Closed"),
}
_DONE = {
    "confirm": N_("Confirmed."),
    "correct": N_("Corrected."),
    "retire": N_("Marked as no longer needed."),
    "confirm-all": N_("Every remaining item confirmed."),
    "register": N_("The registration form was imported and the systems it lists answered."),
}


def _current_campaign(session: Session) -> CleanupCampaign | None:
    campaigns = cleanup.list_campaigns(session)
    return next(
        (c for c in campaigns if c.state != CampaignState.CLOSED), campaigns[0] if campaigns else None
    )


def _context(
    session: Session,
    token: str,
    user: User,
    actor: Actor,
    *,
    done: str = "",
    error: str = "",
    error_item: int = 0,
    problems: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    campaign = _current_campaign(session)
    context: dict[str, Any] = {
        **common.base(token, user, _("Clean-up of domains and VMs"), "/cleanup"),
        "campaign": campaign,
        "done": _(_DONE[done]) if done in _DONE else "",
        "error": error,
        "error_item": error_item,
        "problems": problems or [],
        "zh": common.zh(),
        "center": sees_every_unit(actor.role),
    }
    if campaign is None or campaign.id is None:
        return context
    context["state"] = _(_STATES[CampaignState(campaign.state)])
    context["grace_ends_at"] = cleanup.grace_ends_at(campaign)
    context["answerable"] = campaign.state != CampaignState.CLOSED
    if sees_every_unit(actor.role):
        context["progress"] = cleanup.progress(session, actor, campaign.id)
        unconfirmed = cleanup.unconfirmed(session, actor, campaign.id)
        names = {u.id: u.name_zh for u in units.list_units(session)}
        context["unconfirmed"] = len(unconfirmed)
        context["unconfirmed_items"] = [
            {"i": i, "unit": names.get(i.unit_id, i.unit_id), "kind": _(_KINDS[ItemKind(i.kind)])}
            for i in unconfirmed[:500]
        ]
        return context
    items = cleanup.list_items(session, actor, campaign.id)
    systems = units.list_systems(session, actor.unit_id) if actor.unit_id is not None else []
    context["system_options"] = [(s.id, s.name) for s in systems]
    context["items"] = [
        {
            "i": i,
            "kind": _(_KINDS[ItemKind(i.kind)]),
            "status": _(_STATUSES[ItemStatus(i.status)]),
            "open": i.status != ItemStatus.RETIRED and i.action != "decommissioned",
        }
        for i in items
    ]
    context["pending"] = sum(1 for i in items if i.status == ItemStatus.PENDING)
    return context


@router.get("/cleanup", response_class=HTMLResponse)
def campaign_page(request: Request, session: SessionDep, done: str = "") -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    actor = identity.actor_of(user)
    return _templates.TemplateResponse(
        request, "cleanup.html", _context(session, token, user, actor, done=done)
    )


def _typed(form: Any, names: tuple[str, ...]) -> dict[str, str]:
    return {n: str(form.get(n, "")).strip()[: MAX_TEXT + 1] for n in names if str(form.get(n, "")).strip()}


async def _act(request: Request, session: Session, item_id: int, verb: str) -> Response:
    posted = await common.signed_form(_templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
    actor, who = identity.actor_of(user), identity.who(user)
    typed = _typed(form, ("note", "reason", "domain", "responsible_person", "responsible_phone", "system_id"))
    try:
        if any(len(v) > MAX_TEXT for v in typed.values()):
            raise errors.InvalidField(
                next(k for k, v in typed.items() if len(v) > MAX_TEXT),
                "max_length",
                f"at most {MAX_TEXT} characters",
                message_zh=f"最多 {MAX_TEXT} 个字符",
            )
        note = typed.pop("note", "")
        if verb == "confirm":
            cleanup.confirm(session, actor, who, item_id, note=note, via="page")
        elif verb == "retire":
            if not typed.get("reason"):
                raise errors.InvalidField(
                    "reason", "required", "say why it is no longer needed", message_zh="请填写不再需要的理由"
                )
            cleanup.retire(session, actor, who, item_id, reason=typed["reason"], via="page")
        else:
            values: dict[str, Any] = {k: v for k, v in typed.items() if k != "reason"}
            if "system_id" in values:
                if not values["system_id"].isdigit():
                    raise errors.InvalidField(
                        "system_id", "int", "choose a system", message_zh="请选择信息系统"
                    )
                values["system_id"] = int(values["system_id"])
            if "domain" in values:
                try:
                    values["domain"] = normalise_hostname(values["domain"])
                except PydanticCustomError as exc:
                    raise errors.InvalidField(
                        "domain", "hostname", exc.message(), message_zh="须为域名，如 lab.example.edu.cn"
                    ) from None
            cleanup.correct(session, actor, who, item_id, values, note=note, via="page")
    except errors.NotFound:
        session.rollback()
        message = _("There is no clean-up item %(id)d, or it is not yours to see") % {"id": item_id}
        return common.not_found(_templates, request, token, user, "/cleanup", message)
    except errors.PortalError as exc:
        session.rollback()  # nothing half-written
        context = _context(session, token, user, actor, error=common.error_message(exc), error_item=item_id)
        return _templates.TemplateResponse(request, "cleanup.html", context, status_code=exc.status)
    return RedirectResponse(f"/cleanup?done={verb}", status_code=303)


@router.post("/cleanup/items/{item_id:int}/confirm")
async def confirm(request: Request, session: SessionDep, item_id: int) -> Response:
    return await _act(request, session, item_id, "confirm")


@router.post("/cleanup/items/{item_id:int}/correct")
async def correct(request: Request, session: SessionDep, item_id: int) -> Response:
    return await _act(request, session, item_id, "correct")


@router.post("/cleanup/items/{item_id:int}/retire")
async def retire(request: Request, session: SessionDep, item_id: int) -> Response:
    return await _act(request, session, item_id, "retire")


@router.post("/cleanup/campaigns/{campaign_id:int}/confirm-all")
async def confirm_all(request: Request, session: SessionDep, campaign_id: int) -> Response:
    posted = await common.signed_form(_templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, _form = posted
    actor, who = identity.actor_of(user), identity.who(user)
    try:
        cleanup.confirm_all(session, actor, who, campaign_id, unit_id=None, via="page")
    except errors.PortalError as exc:
        session.rollback()
        context = _context(session, token, user, actor, error=common.error_message(exc))
        return _templates.TemplateResponse(request, "cleanup.html", context, status_code=exc.status)
    return RedirectResponse("/cleanup?done=confirm-all", status_code=303)


@router.post("/cleanup/campaigns/{campaign_id:int}/register")
async def register(request: Request, session: SessionDep, campaign_id: int) -> Response:
    """The unit's filled 附件4 file: imported (all or nothing) and the systems it lists answered."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    limit = get_settings().upload_max_bytes
    form = await request.form(max_files=1, max_fields=10)
    try:
        if (bad := common.csrf_refused(_templates, request, token, user, form)) is not None:
            return bad
        part = form.get("file")
        uploads: list[paperwork.Upload] = []
        if isinstance(part, UploadFile) and part.filename:
            content = await part.read(limit + 1)
            uploads.append(paperwork.Upload(part.filename, content))
    finally:
        await form.close()
    actor, who = identity.actor_of(user), identity.who(user)
    try:
        if not uploads:
            raise errors.InvalidField(
                "file", "required", "choose the filled form", message_zh="请选择填好的登记表"
            )
        if len(uploads[0].content) > limit:
            raise errors.InvalidField(
                "file", "max_size", f"larger than {limit} bytes", message_zh=f"文件超过 {limit} 字节的上限"
            )
        cleanup.register_upload(session, actor, who, campaign_id, uploads, commit=True)
    except errors.PortalError as exc:
        session.rollback()  # nothing imported, nothing answered
        problems = list(exc.extra.get("problems") or [])
        context = _context(session, token, user, actor, error=common.error_message(exc), problems=problems)
        return _templates.TemplateResponse(request, "cleanup.html", context, status_code=exc.status)
    return RedirectResponse("/cleanup?done=register", status_code=303)


@router.get("/cleanup/form.xlsx")
def register_form(request: Request, session: SessionDep) -> Response:
    """The 附件4 form pre-filled with the user's unit's systems (the paperwork domain's template)."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.unit_id is None:
        return common.not_found(
            _templates, request, token, user, "/cleanup", _("Your account belongs to no unit")
        )
    content, filename = paperwork.system_template(session, user.unit_id)
    return Response(
        content,
        media_type=XLSX_TYPE,
        headers={
            "Content-Disposition": (
                f"attachment; filename=\"systems.xlsx\"; filename*=UTF-8''{quote(filename)}"
            )
        },
    )
