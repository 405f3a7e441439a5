"""未登记虚拟机: the VMs the inventory found on the hypervisors that no unit owns (/inventory), each
with a form to assign it to a unit (and, optionally, one of that unit's information systems), which
puts it under the agreement like any VM the portal delivered.

The page calls the inventory service (unregistered, assign) and the unit service (the units and
their systems for the form); the service checks the unit and that the system is the unit's, and the
page shows its refusal beside the field it names, with the rule, the chosen values kept; nothing is
written then. The center's operators and administrators assign (the API's rule); the auditor reads
the list; a unit's users are refused naming the rule.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from policies.roles import Role
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.inventory import service as inventory
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.unit import service as units
from vmportal.web import common, templating
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "center")

#: Who sees the list (kit.scope.CENTER_READ) and who assigns (kit.scope.CENTER), as the API.
READERS = frozenset({Role.CENTER_ADMIN.value, Role.CENTER_OPERATOR.value, Role.AUDITOR.value})
ASSIGNERS = frozenset({Role.CENTER_ADMIN.value, Role.CENTER_OPERATOR.value})
MAX_ID = 2**31 - 1


def _with_rule(message: str, rule: str) -> str:
    return _("%(message)s (rule %(rule)s)") % {"message": message, "rule": rule}


def _refused(request: Request, token: str, user: User, action: str) -> Response:
    reasons = {
        "read": _("only the center's staff and the auditor see the VMs no unit owns"),
        "assign": _("only the center's operators and administrators assign a VM to a unit"),
    }
    message = _("Rule %(rule)s: %(reason)s") % {"rule": f"inventory.{action}", "reason": reasons[action]}
    return common.refused(_templates, request, token, user, "/inventory", message)


def _page(
    request: Request,
    session: Session,
    token: str,
    user: User,
    *,
    errs: dict[int, dict[str, str]] | None = None,
    values: dict[int, dict[str, str]] | None = None,
    flash: tuple[str, str] | None = None,
    status: int = 200,
) -> Response:
    actor = identity.actor_of(user)
    zh = common.zh()
    active = units.list_units(session, actor, active=True)
    unit_options = [("", _("Choose the unit"))] + [
        (str(u.id), f"{u.code} {u.name_zh if zh else u.name_en or u.name_zh}") for u in active
    ]
    system_options = [("", _("None (record it later)"))]
    for u in active:
        for s in units.list_systems(session, u.id or 0):
            system_options.append((str(s.id), f"{u.code} · {s.name}"))
    found = inventory.unregistered(session)
    listed = {vm.id for vm, _name in found}
    flashes = [flash] if flash else []
    for vm_id, messages in (errs or {}).items():
        if vm_id not in listed:  # assigned meanwhile, or gone: said at the top
            for message in messages.values():
                flashes.append(("error", _("VM %(id)d: %(message)s") % {"id": vm_id, "message": message}))
    context = {
        **common.base(token, user, _("Unregistered VMs"), "/inventory"),
        "rows": [{"vm": vm, "connection": name} for vm, name in found],
        "unit_options": unit_options,
        "system_options": system_options,
        "may_assign": user.role in ASSIGNERS,
        "why_not": _("Only the center's operators and administrators assign a VM to a unit."),
        "errors": errs or {},
        "values": values or {},
        "flashes": flashes,
    }
    return _templates.TemplateResponse(request, "inventory.html", context, status_code=status)


@router.get("/inventory", response_class=HTMLResponse)
def inventory_page(request: Request, session: SessionDep, done: str = "", id: int = 0) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role not in READERS:
        return _refused(request, token, user, "read")
    flash = None
    if done == "assigned":
        flash = ("success", _("VM %(id)d now belongs to the unit; the unit sees it in its VMs.") % {"id": id})
    return _page(request, session, token, user, flash=flash)


def _typed_id(text: str) -> int | None:
    return int(text) if text.isdigit() and 1 <= int(text) <= MAX_ID else None


@router.post("/inventory/{vm_id:int}/assign")
async def assign(request: Request, session: SessionDep, vm_id: int) -> Response:
    """inventory.service.assign (unit, optional information system). Bad input and the service's
    refusals are shown beside their field; nothing is written."""
    posted = await common.signed_form(_templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
    if user.role not in ASSIGNERS:
        return _refused(request, token, user, "assign")
    typed = {k: str(form.get(k, "")).strip()[:16] for k in ("unit_id", "system_id")}
    problems: dict[str, str] = {}
    unit_id = _typed_id(typed["unit_id"])
    if not typed["unit_id"]:
        problems["unit_id"] = _with_rule(_("Choose the unit the VM belongs to."), "required")
    elif unit_id is None:
        problems["unit_id"] = _with_rule(_("Choose one of the units listed."), "exists")
    system_id = _typed_id(typed["system_id"]) if typed["system_id"] else None
    if typed["system_id"] and system_id is None:
        problems["system_id"] = _with_rule(_("Choose one of the information systems listed."), "exists")
    if problems:
        return _page(request, session, token, user, errs={vm_id: problems}, values={vm_id: typed}, status=422)
    assert unit_id is not None
    try:
        inventory.assign(session, identity.who(user), vm_id, unit_id, system_id)
    except errors.NotFound:
        session.rollback()
        message = _("There is no VM %(id)d, or it is not yours to see") % {"id": vm_id}
        return common.not_found(_templates, request, token, user, "/inventory", message)
    except errors.PortalError as exc:
        session.rollback()  # nothing half-written
        fields = exc.extra.get("fields") or []
        if fields:
            message = common.say(str(fields[0]["message"]), exc.message_zh.split("：", 1)[-1])
            shown = {str(fields[0]["field"]): _with_rule(message, str(fields[0]["rule"]))}
        else:
            shown = {
                "": _("Rule %(rule)s: %(reason)s")
                % {"rule": "vm.assign", "reason": common.error_message(exc)}
            }
        return _page(
            request, session, token, user, errs={vm_id: shown}, values={vm_id: typed}, status=exc.status
        )
    return RedirectResponse(f"/inventory?done=assigned&id={vm_id}", status_code=303)
