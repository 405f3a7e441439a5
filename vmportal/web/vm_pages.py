"""我的虚拟机: the VMs the user may see (/vms), one VM's page (/vms/{id}) and its power actions.

Each VM shows start, guest shutdown, guest reboot, power off and reset; an action the user may not
take now is shown disabled with the rule and its reason in the user's language, asked of the VM
service before the user tries (vmportal.vm.service.choices: the policy, the lifecycle, a
containment holding the VM, the power state, the connection's guest power). A press posts a form
with its CSRF token (POST /vms/{id}/power): with htmx the answer replaces the VM's row or status
block in place; without JavaScript it is a plain post answered by the VM's page. The list and the
VM's status refresh themselves every 5 s, so a state changed by the hypervisor or a containment
shows without reloading.

The list keeps a row light: its state columns and one "Actions" control per VM. With htmx the
control fetches the VM's power buttons (GET /vms/{id}/actions, asked of the service when it is
opened, so still before the user tries); without JavaScript it is a link to the VM's page, which
shows them all. A VM the user may not operate at all (rule power_ops: a lead, the auditor) is said
once on the page and its row says "View only", as before. While a menu is open the table's refresh
waits (portal.js): the swap would close the menu under the user's pointer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from hypervisors.base import PowerAction
from policies.roles import Actor
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.incidents import service as incidents
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.vm import schemas as vm_schemas
from vmportal.vm import service as vms
from vmportal.vm.models import VM, PowerOpState
from vmportal.vm.service import credentials
from vmportal.vm.service.choices import Choice, Refusal, power_barred, power_choices
from vmportal.web import common, templating
from vmportal.web import vm_list_view as view
from vmportal.web.i18n import gettext as _
from vmportal.web.session import csrf_for
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "unit")

PAGE_SIZE = view.PAGE_SIZE


def action_label(action: PowerAction) -> str:
    return {
        PowerAction.START: _("Start"),
        PowerAction.STOP: _("Power off"),
        PowerAction.RESTART: _("Reset"),
        PowerAction.SHUTDOWN: _("Shut down the OS"),
        PowerAction.REBOOT: _("Reboot the OS"),
    }[action]


def _op_state(state: str) -> str:
    names = {
        PowerOpState.PENDING: _("Queued"),
        PowerOpState.RUNNING: _("Running"),
        PowerOpState.SUCCEEDED: _("Done"),
        PowerOpState.FAILED: _("Failed"),
    }
    return common.label(names, PowerOpState, state)


def _confirm_text(action: PowerAction, name: str) -> str:
    texts = {
        PowerAction.START: _("Start VM %(name)s?"),
        PowerAction.STOP: _("Power off VM %(name)s at once? Unsaved work in it is lost."),
        PowerAction.RESTART: _("Reset VM %(name)s at once? Unsaved work in it is lost."),
        PowerAction.SHUTDOWN: _("Ask the operating system of VM %(name)s to shut down?"),
        PowerAction.REBOOT: _("Ask the operating system of VM %(name)s to restart?"),
    }
    return texts[action] % {"name": name}


def _reason(rule: str, text: str) -> str:
    return _("Rule %(rule)s: %(reason)s") % {"rule": rule, "reason": text}


def _buttons(vm: VM, choices: list[Choice]) -> list[dict[str, Any]]:
    return [
        {
            "action": c.action.value,
            "label": action_label(c.action),
            "confirm": _confirm_text(c.action, vm.name),
            "refusal": _reason(c.refusal.rule, common.say(c.refusal.message_en, c.refusal.message_zh))
            if c.refusal
            else None,
            "variant": "danger" if c.action in (PowerAction.STOP, PowerAction.RESTART) else None,
        }
        for c in choices
    ]


def _row(session: Session, actor: Actor, vm: VM, unit_name: str | None) -> dict[str, Any]:
    """A VM with its power buttons (the VM's page, and a list row's opened actions)."""
    choices = power_choices(session, actor, vm)
    # Not this user's to operate at all (a lead, the auditor): said once on the page, not per button.
    barred = next((c.refusal for c in choices if c.refusal and c.refusal.rule == "power_ops"), None)
    return {
        "vm": vm,
        "unit_name": unit_name or "",
        "buttons": [] if barred else _buttons(vm, choices),
        "barred": _reason(barred.rule, common.say(barred.message_en, barred.message_zh)) if barred else "",
    }


def barred_text(refusal: Refusal | None) -> str:
    """Rule power_ops's reason in the user's language ("" when the VM may be operated)."""
    return _reason(refusal.rule, common.say(refusal.message_en, refusal.message_zh)) if refusal else ""


def _light_row(actor: Actor, vm: VM, unit_name: str | None) -> view.Row:
    """A VM of the list: its columns and whether its actions may be opened; the buttons themselves
    are asked for when the user opens them (:func:`vm_actions`)."""
    assert vm.id is not None
    return view.Row(
        id=vm.id,
        name=vm.name,
        unit_name=unit_name or "",
        ip_address=vm.ip_address or "",
        power_state=view.state_text(vm.power_state),
        security_state=view.state_text(vm.security_state),
        barred=barred_text(power_barred(actor, vm)),
    )


def list_filters(q: str | None, sort: str, page: int) -> tuple[vm_schemas.VMFilters, int, str, str]:
    """The list's filters from the page's query (an unknown sort is the default order, a page
    before the first is the first, the search text trimmed to 100 characters), with the page, the
    search text and the sort as the page shows them. The page lane reads a query with this too."""
    try:
        order = vm_schemas.VMSort(sort)
    except ValueError:
        order = vm_schemas.VMSort.ID
    page = max(page, 1)
    q = (q or "").strip()[:100]
    filters = vm_schemas.VMFilters(q=q or None, sort=order, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return filters, page, q, order.value


def root_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/vms", response_class=HTMLResponse)
def vm_list(
    request: Request, session: SessionDep, q: str | None = None, sort: str = "id", page: int = 1
) -> Response:
    """我的虚拟机: the VMs the user may see (scoped by the service), sortable, filterable, paged; the
    table refreshes itself every 5 s (HTMX polling of the same URL, table only). On PostgreSQL the
    page lane (vmportal/web/vm_lane.py) answers most of these requests before they get here, with
    the same bytes (both render through vmportal/web/vm_list_view.py)."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    actor = identity.actor_of(user)
    filters, page, q, order = list_filters(q, sort, page)
    found, total = vms.list_vms(session, actor, filters)
    table = view.Table(
        rows=[_light_row(actor, r.vm, r.unit_name) for r in found],
        total=total,
        page=page,
        q=q,
        sort=order,
        query=request.query_params.multi_items(),
    )
    return HTMLResponse(list_html(request, table, user, token))


class Account(Protocol):
    """What the VM list's layout shows of the signed-in account (a User, or the page lane's row)."""

    @property
    def username(self) -> str: ...
    @property
    def display_name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def unit_id(self) -> int | None: ...


def list_html(request: Request, table: view.Table, user: Account, token: str) -> str:
    """The VM list's answer: the table alone for its HTMX refresh, else the whole page. The router's
    page and the page lane (vmportal/web/vm_lane.py) both answer with it."""
    root = root_path(request)
    if request.headers.get("hx-request"):
        return view.table_html(table, root)
    viewer = view.Viewer(
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        has_unit=user.unit_id is not None,
        csrf=csrf_for(token),
    )
    return view.page_html(table, viewer, root, view.here_of(request.url.path, request.url.query))


def _detail_context(session: Session, token: str, user: User, vm_id: int) -> dict[str, Any]:
    actor = identity.actor_of(user)
    row = vms.get_vm(session, actor, vm_id)  # 404 for another unit's
    ops, _total = vms.list_operations(session, actor, vm_id, limit=10)
    open_incidents, _n = incidents.list_incidents(
        session, actor, incidents.IncidentFilters(vm_id=vm_id, active=True, limit=5)
    )
    return {
        **common.base(token, user, _("VM %(name)s") % {"name": row.vm.name}, "/vms"),
        "row": _row(session, actor, row.vm, row.unit_name),
        "operations": ops,
        "incidents": [i.incident for i in open_incidents],
        # The one-time credentials: a link to their page while this user may collect them.
        "credentials": credentials.credentials_state(session, actor, vm_id),
        "action_label": lambda a: action_label(PowerAction(a)),
        "op_state": _op_state,
        "message": None,
    }


def _no_such_vm(request: Request, token: str, user: User, vm_id: int) -> Response:
    return common.not_found(
        _templates,
        request,
        token,
        user,
        "/vms",
        _("There is no VM %(id)d, or it is not yours to see") % {"id": vm_id},
    )


@router.get("/vms/{vm_id:int}", response_class=HTMLResponse)
def vm_detail(request: Request, session: SessionDep, vm_id: int) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    try:
        context = _detail_context(session, token, user, vm_id)
    except errors.NotFound:
        return _no_such_vm(request, token, user, vm_id)
    name = "vm_status.html" if request.headers.get("hx-request") else "vm_detail.html"
    return _templates.TemplateResponse(request, name, context)


@router.get("/vms/{vm_id:int}/actions", response_class=HTMLResponse)
def vm_actions(request: Request, session: SessionDep, vm_id: int) -> Response:
    """The power buttons of one VM of the list, asked of the service now (what the row's "Actions"
    control opens). Only htmx asks for this part; a browser sent here is sent to the VM's page."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    if not request.headers.get("hx-request"):
        return RedirectResponse(f"/vms/{vm_id}", status_code=303)
    token, user = current
    actor = identity.actor_of(user)
    try:
        found = vms.get_vm(session, actor, vm_id)  # 404 for another unit's
    except errors.NotFound:
        return _no_such_vm(request, token, user, vm_id)
    context = {**common.base(token, user, "", "/vms"), "row": _row(session, actor, found.vm, found.unit_name)}
    return _templates.TemplateResponse(request, "vm_actions.html", context)


@router.post("/vms/{vm_id:int}/power")
async def vm_power(request: Request, session: SessionDep, vm_id: int) -> Response:
    """One power action; ``from`` says which part of a page asked (``list``: the row, else the VM's
    status block) so htmx gets back just that part, with the outcome in words."""
    posted = await common.signed_form(_templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
    actor = identity.actor_of(user)
    status = 200
    message: tuple[str, str]
    try:
        action = PowerAction(str(form.get("action", "")))
    except ValueError:
        action = None
    if action is None:
        status, message = 422, ("error", _("Choose one of the listed actions"))
    else:
        try:
            op = vms.request_power(session, actor, identity.who(user), vm_id, action, "")
            message = (
                "success",
                _("%(action)s requested (operation %(id)d); the state shown follows when it is done")
                % {"action": action_label(action), "id": op.id or 0},
            )
            # Accepted, but e.g. a planned outage of the VM's platform is under way: say why it may fail.
            warnings = vms.power_warnings(session, vm_id)
            if warnings:
                said = " ".join(w.message_zh if common.zh() else w.message_en for w in warnings)
                message = ("warning", f"{message[1]} {said}")
        except errors.NotFound:
            session.rollback()
            return _no_such_vm(request, token, user, vm_id)
        except errors.PortalError as exc:  # refused meanwhile: the rule's reason, nothing written
            session.rollback()
            rule = str(exc.extra.get("rule", exc.code))
            status, message = exc.status, ("error", _reason(rule, common.error_message(exc)))
    if request.headers.get("hx-request"):
        vm = vms.find_vm(session, actor, vm_id)
        if form.get("from") == "list":  # the list's light row, its menu closed, the outcome said
            found = vms.get_vm(session, actor, vm_id)
            row = _light_row(actor, vm, found.unit_name)
            return HTMLResponse(view.one_row_html(row, root_path(request), message))
        context = _detail_context(session, token, user, vm_id)
        context["message"] = message
        return _templates.TemplateResponse(request, "vm_status.html", context)
    if status == 200 and message[0] != "warning":
        return RedirectResponse(f"/vms/{vm_id}", status_code=303)
    context = _detail_context(session, token, user, vm_id)
    context["message"] = message
    return _templates.TemplateResponse(request, "vm_detail.html", context, status_code=status)
