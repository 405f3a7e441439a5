"""用户管理: the accounts (/admin/users), filtered by role, unit, state and a search, sorted, paged
(identity.service.page_users), each with its deactivate or activate button behind the portal's
confirmation (identity.service.update_user, as PATCH /api/v1/users/{id} with ``active``: a
deactivated account's sessions end at once; the service refuses the admin's own account and the
last active center administrator, and the page says the rule and its reason at the top).

The center's operators and the auditor read the list; only the center administrator (de)activates,
anyone else is refused naming the rule; a unit's users are refused the page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from policies.roles import Role
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.kit.paging import PageRequest
from vmportal.unit import service as units
from vmportal.web import common
from vmportal.web.admin_common import (
    ADMINS,
    MAX_ID,
    PAGE_SIZE,
    READERS,
    clean_page,
    clean_sort,
    pages_of,
    refused,
    role_name,
    rule_reason,
    shown,
    templates,
    typed_id,
)
from vmportal.web.i18n import gettext as _
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)

ACTIVE = "/admin/users"


def _refuse(request: Request, token: str, user: User, action: str) -> Response:
    reasons = {
        "read": ("user.read", _("only the center's staff and the auditor see every account")),
        "active": ("user.update", _("only the center administrator activates or deactivates an account")),
    }
    rule, reason = reasons[action]
    return refused(request, token, user, ACTIVE, rule, reason)


def _list_page(
    request: Request,
    session: Session,
    token: str,
    user: User,
    *,
    flash: tuple[str, str] | None = None,
    status: int = 200,
) -> Response:
    query = request.query_params
    sort, order = clean_sort(query.get("sort", ""), query.get("order", ""), identity.USER_SORTS, "username")
    page = clean_page(int(query["page"]) if query.get("page", "").isdigit() else 1)
    q = query.get("q", "").strip()[:100]
    role = query.get("role", "")
    role = role if role in {r.value for r in Role} else ""
    state = query.get("state", "")
    state = state if state in ("active", "inactive") else ""
    unit_text = query.get("unit_id", "")
    unit_id = typed_id(unit_text)
    actor = identity.actor_of(user)
    found = identity.page_users(
        session,
        actor,
        unit_id=unit_id,
        role=Role(role) if role else None,
        active=None if not state else state == "active",
        q=q or None,
        request=PageRequest(PAGE_SIZE, (page - 1) * PAGE_SIZE, sort if order == "asc" else f"-{sort}"),
    )
    all_units = units.list_units(session, actor)
    zh = common.zh()
    unit_names = {u.id: u.code for u in all_units}
    may_act = user.role in ADMINS
    rows: list[dict[str, Any]] = []
    for u in found.items:
        name = u.display_name or u.username
        if not may_act:
            why_not = _("Only the center administrator activates or deactivates an account.")
        elif u.id == user.id:
            why_not = rule_reason("self", _("you cannot deactivate your own account"))
        else:
            why_not = ""
        rows.append(
            {
                "u": u,
                "role": role_name(u.role),
                "unit": unit_names.get(u.unit_id, "") if u.unit_id else "",
                "why_not": why_not,
                "confirm": (
                    _("Deactivate the account %(name)s? Its sessions end at once and it cannot log in.")
                    if u.active
                    else _("Activate the account %(name)s again? It can log in again.")
                )
                % {"name": name},
            }
        )
    context = {
        **common.base(token, user, _("Users"), ACTIVE),
        "rows": rows,
        "total": found.total,
        "page": page,
        "pages": pages_of(found.total),
        "sort": sort,
        "order": order,
        "filters": {"q": q, "role": role, "state": state, "unit_id": str(unit_id or "")},
        "role_options": [("", _("Any"))] + [(r.value, role_name(r.value)) for r in Role],
        "unit_options": [("", _("Any"))]
        + [(str(u.id), f"{u.code} {u.name_zh if zh or not u.name_en else u.name_en}") for u in all_units],
        "may_act": may_act,
        "flashes": [flash] if flash else [],
    }
    return templates.TemplateResponse(request, "users.html", context, status_code=status)


@router.get("/admin/users", response_class=HTMLResponse)
def user_list(request: Request, session: SessionDep, done: str = "", id: int = 0) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    if user.role not in READERS:
        return _refuse(request, token, user, "read")
    flash = None
    name = ""
    if done in ("deactivated", "activated") and 1 <= id <= MAX_ID:
        try:  # the name said is the account's, not the URL's
            name = identity.visible_user(session, identity.actor_of(user), id).username
        except errors.NotFound:
            done = ""
    if done == "deactivated":
        flash = (
            "success",
            _("The account %(name)s is deactivated; its sessions have ended.") % {"name": name},
        )
    elif done == "activated":
        flash = ("success", _("The account %(name)s is active again.") % {"name": name})
    return _list_page(request, session, token, user, flash=flash)


@router.post("/admin/users/{user_id:int}/active")
async def set_active(request: Request, session: SessionDep, user_id: int) -> Response:
    """Deactivate (active=false) or activate (active=true) an account; the service's refusal is
    said at the top of the list with its rule, nothing written."""
    posted = await common.signed_form(templates, request, session)
    if isinstance(posted, Response):
        return posted
    token, user, form = posted
    if user.role not in ADMINS:
        return _refuse(request, token, user, "active")
    wanted = str(form.get("active", ""))
    if wanted not in ("true", "false"):
        message = rule_reason("one_of", _("choose to activate or to deactivate the account"))
        return _list_page(request, session, token, user, flash=("error", message), status=422)
    try:
        target = identity.visible_user(session, identity.actor_of(user), user_id)
    except errors.NotFound:
        message = _("There is no account %(id)d") % {"id": user_id}
        return common.not_found(templates, request, token, user, ACTIVE, message)
    try:
        identity.update_user(session, identity.who(user), target, active=wanted == "true")
    except errors.PortalError as exc:
        session.rollback()
        reason = next(iter(shown(exc, "active").values()))
        message = _("The account %(name)s was not changed: %(reason)s") % {
            "name": target.username,
            "reason": reason,
        }
        return _list_page(request, session, token, user, flash=("error", message), status=exc.status)
    done = "activated" if wanted == "true" else "deactivated"
    return RedirectResponse(f"/admin/users?done={done}&id={user_id}", status_code=303)
