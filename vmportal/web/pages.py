"""The pages' front door: log-in, log-out, the dashboard and my account.

A page session is an identity token (identity.service.login) kept in an HttpOnly cookie, so the
token's lifetime, lock-out, deactivation and revocation rules hold for pages too, and every log-in
issues a new one. The CSRF token is an HMAC of the session token: bound to the session, and
unforgeable without the cookie, so no server-side key or table is needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.web import templating
from vmportal.web.i18n import current_locale
from vmportal.web.i18n import gettext as _
from vmportal.web.language import safe_next

COOKIE = "vmportal_session"
router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "pages")


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"vmportal-csrf", hashlib.sha256).hexdigest()


def _csrf_ok(token: str, sent: object) -> bool:
    return isinstance(sent, str) and hmac.compare_digest(csrf_for(token), sent)


def _current(request: Request, session: SessionDep) -> tuple[str, User] | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return token, identity.user_for_token(session, token)
    except errors.Unauthorized:
        return None


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/login?next={safe_next(here)}", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return _templates.TemplateResponse(request, name, context, status_code=status)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return _page(request, "login.html", page_title=_("Log in"), next=safe_next(next), error="", username="")


@router.post("/login")
async def login(request: Request, session: SessionDep) -> Response:
    form = await request.form()
    username = str(form.get("username", ""))
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "/")))
    address = request.client.host if request.client else None
    try:
        issued = identity.login(session, username, password, address=address)
    except errors.PortalError as exc:  # wrong, unknown, locked or throttled: the service's reason
        message = exc.message_zh if current_locale().startswith("zh") else exc.message
        return _page(
            request,
            "login.html",
            status=401,
            page_title=_("Log in"),
            next=target,
            error=message,
            username=username,
        )
    old = request.cookies.get(COOKIE)
    if old:  # a new session id at every log-in: the previous one is revoked
        with contextlib.suppress(errors.Unauthorized):
            identity.logout(session, old)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        issued.token,
        max_age=issued.expires_in,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep) -> Response:
    current = _current(request, session)
    if current is not None:
        form = await request.form()
        if not _csrf_ok(current[0], form.get("csrf_token") or request.headers.get("x-csrf-token")):
            return _page(
                request,
                "error.html",
                status=403,
                page_title=_("Refused"),
                message=_("Missing or wrong CSRF token"),
            )
        identity.logout(session, current[0])
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, session: SessionDep) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    return _page(
        request,
        "dashboard.html",
        page_title=_("Dashboard"),
        user=_user_view(user),
        csrf_token=csrf_for(token),
    )


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, session: SessionDep) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    return _page(
        request, "account.html", page_title=_("My account"), user=_user_view(user), csrf_token=csrf_for(token)
    )


def _user_view(user: User) -> dict[str, str]:
    return {
        "display_name": user.display_name or user.username,
        "username": user.username,
        "role_label": user.role,
    }


PAGE_SIZE = 50


@router.get("/vms", response_class=HTMLResponse)
def vm_list(
    request: Request, session: SessionDep, q: str | None = None, sort: str = "id", page: int = 1
) -> Response:
    """我的虚拟机: the VMs the user may see (scoped by the service), sortable, filterable, paged; the
    table refreshes itself every 5 s (HTMX polling of the same URL, table only)."""
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    from vmportal.vm import schemas as vm_schemas
    from vmportal.vm import service as vms

    try:
        order = vm_schemas.VMSort(sort)
    except ValueError:
        order = vm_schemas.VMSort.ID
    page = max(page, 1)
    filters = vm_schemas.VMFilters(q=q or None, sort=order, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    rows, total = vms.list_vms(session, identity.actor_of(user), filters)
    context: dict[str, Any] = {
        "page_title": _("My VMs"),
        "rows": rows,
        "total": total,
        "page": page,
        "pages": max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
        "q": q or "",
        "sort": order.value,
        "user": _user_view(user),
        "csrf_token": csrf_for(token),
    }
    name = "vm_table.html" if request.headers.get("hx-request") else "vms.html"
    return _page(request, name, **context)
