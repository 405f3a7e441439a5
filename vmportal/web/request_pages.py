"""我的申请: the VM requests the user may see (/requests) and one request's page (/requests/{id}).

The pages call the request service only: it scopes the list to the user's unit (unit users) and
answers another unit's request as not found, which the page shows as the 404 page. Each request
shows its state in the user's language and the agreement's 7-day countdown (days and hours left,
or how long overdue); times are Beijing time (vmportal.web.formats).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from policies.deadline import DeadlineStatus
from policies.roles import Role
from vmportal.identity import service as identity
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.request import service as requests
from vmportal.request.models import RequestState, VMRequest
from vmportal.web import common, i18n, templating
from vmportal.web.formats import time_left
from vmportal.web.i18n import gettext as _
from vmportal.web.session import csrf_for
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login
from vmportal.web.session import user_view as _user_view

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "unit")

PAGE_SIZE = 50
#: Who finds 我的申请 in the navigation: the roles that file, endorse or decide requests.
REQUEST_ROLES = frozenset(
    {Role.UNIT_ADMIN.value, Role.UNIT_LEAD.value, Role.CENTER_OPERATOR.value, Role.CENTER_ADMIN.value}
)
#: The list's sortable columns (the service's sort keys).
SORTS = ("due_at", "submitted_at")


def state_label(state: str) -> str:
    """A request state's name in the user's language."""
    return common.label(_state_names(i18n.current_locale()), RequestState, state)


@functools.cache
def _state_names(locale: str) -> dict[RequestState, str]:
    """The states' names in ``locale`` (the page's current one; made once per language: a list
    asks for a name per row). The catalogs are compiled into the release, so they never change
    under a running portal."""
    names = {
        RequestState.SUBMITTED: _("Submitted"),
        RequestState.ENDORSED: _("Endorsed by the unit lead"),
        RequestState.APPROVED: _("Approved"),
        RequestState.REJECTED: _("Rejected"),
        RequestState.PROVISIONING: _("Provisioning"),
        RequestState.DELIVERED: _("Delivered"),
        RequestState.FAILED: _("Provisioning failed"),
        RequestState.CANCELLED: _("Withdrawn"),
    }
    return names


def nav_items(role: str, active: str = "") -> list[dict[str, Any]]:
    """The navigation entry of these pages, for the roles that work with requests."""
    if role not in REQUEST_ROLES:
        return []
    return [{"url": "/requests", "label": _("My requests"), "icon": "clock", "active": active == "/requests"}]


def _countdown(req: VMRequest, now: datetime) -> dict[str, str]:
    """The 7-day countdown as shown: its words and a tone (badge colour), with the deadline status
    the service computes (None once rejected or withdrawn: no VM is owed, so no clock runs)."""
    status = requests.deadline_of(req, now)
    if status is None:
        return {"text": _("No deadline"), "tone": "muted", "status": ""}
    if status == DeadlineStatus.MET:
        return {"text": _("Delivered on time"), "tone": "success", "status": status.value}
    if status == DeadlineStatus.MISSED:
        return {"text": _("Delivered late"), "tone": "warning", "status": status.value}
    tone = {DeadlineStatus.OVERDUE: "danger", DeadlineStatus.AT_RISK: "warning"}.get(status, "info")
    return {"text": time_left(req.due_at, now), "tone": tone, "status": status.value}


def _row(req: VMRequest, now: datetime) -> dict[str, Any]:
    return {
        "req": req,
        "state": state_label(req.state),
        "countdown": _countdown(req, now),
        "name": req.system_name or req.hostname,
    }


def _base(request: Request, token: str, role: str, title: str, user: dict[str, str]) -> dict[str, Any]:
    return {
        "page_title": title,
        "user": user,
        "csrf_token": csrf_for(token),
        "nav": common.nav_items(role, "/requests"),
    }


@router.get("/requests", response_class=HTMLResponse)
def request_list(
    request: Request,
    session: SessionDep,
    state: str = "",
    sort: str = "submitted_at",
    order: str = "desc",
    page: int = 1,
) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    # A pasted URL with an unknown value shows the default, not an error page.
    sort = sort if sort in SORTS else "submitted_at"
    order = order if order in ("asc", "desc") else "desc"
    chosen = RequestState(state) if state in set(RequestState) else None
    page = max(page, 1)
    rows, total = requests.list_requests(
        session,
        identity.actor_of(user),
        state=chosen,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
        sort=("-" if order == "desc" else "") + sort,
    )
    now = datetime.now(UTC)
    context = {
        **_base(request, token, user.role, _("My requests"), _user_view(user)),
        "rows": [_row(r, now) for r in rows],
        "total": total,
        "page": page,
        "pages": max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        "sort": sort,
        "order": order,
        "state": chosen.value if chosen else "",
        "states": [("", _("Any"))] + [(st.value, state_label(st)) for st in RequestState],
    }
    return _templates.TemplateResponse(request, "requests.html", context)


@router.get("/requests/{request_id:int}", response_class=HTMLResponse)
def request_detail(request: Request, session: SessionDep, request_id: int) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    try:
        req = requests.get_request(session, identity.actor_of(user), request_id)
    except errors.NotFound:  # missing, or another unit's: the same answer
        context = {
            **_base(request, token, user.role, _("Not found"), _user_view(user)),
            "message": _("There is no request %(id)d, or it is not yours to see") % {"id": request_id},
        }
        return _templates.TemplateResponse(request, "pages/error.html", context, status_code=404)
    now = datetime.now(UTC)
    # The request's history as its own timestamps record it (the service keeps no separate log).
    history = [(req.submitted_at, _("Submitted"))]
    if req.endorsed_at:
        history.append((req.endorsed_at, _("Endorsed by the unit lead")))
    if req.decided_at:  # a decision stays the last word: rejected, withdrawn, or else approved
        closed = req.state in (RequestState.REJECTED, RequestState.CANCELLED)
        history.append((req.decided_at, state_label(req.state) if closed else _("Approved")))
    if req.delivered_at:
        history.append((req.delivered_at, _("Delivered")))
    context = {
        **_base(request, token, user.role, _("Request %(id)d") % {"id": request_id}, _user_view(user)),
        "row": _row(req, now),
        "history": history,
    }
    return _templates.TemplateResponse(request, "request_detail.html", context)
