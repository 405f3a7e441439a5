"""The pages' front door: log-in, log-out, the dashboard and my account.

A page session is an identity token (identity.service.login) kept in an HttpOnly cookie
(:mod:`vmportal.web.session`), so the token's lifetime, lock-out, deactivation and revocation rules
hold for pages too, and every log-in issues a new one.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from policies.roles import Role
from vmportal.center import service as center
from vmportal.identity import cas, ldap
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.kit.settings import get_settings
from vmportal.request import service as requests
from vmportal.request.models import RequestState
from vmportal.web import templating
from vmportal.web.i18n import current_locale, use_locale
from vmportal.web.i18n import gettext as _
from vmportal.web.language import safe_next
from vmportal.web.session import COOKIE
from vmportal.web.session import csrf_ok as _csrf_ok
from vmportal.web.session import current as _current
from vmportal.web.session import to_login as _to_login

router = APIRouter(include_in_schema=False)
_templates = templating.templates(Path(__file__).parent / "templates" / "pages")


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return _templates.TemplateResponse(request, name, context, status_code=status)


def _login_page(
    request: Request, *, next: str = "/", error: str = "", username: str = "", status: int = 200
) -> HTMLResponse:
    """The log-in page with the methods the settings offer: the campus CAS button, and one password
    form (the local account, the center directory, or a choice of the two)."""
    methods = get_settings().login_methods
    password_methods = [m for m in methods if m in ("local", "ldap")]
    return _page(
        request,
        "login.html",
        status=status,
        page_title=_("Log in"),
        next=next,
        error=error,
        username=username,
        cas_enabled=cas.enabled(),
        password_methods=password_methods,
    )


def _message(exc: errors.PortalError) -> str:
    return exc.message_zh if current_locale().startswith("zh") else exc.message


def _open_session(
    request: Request, session: SessionDep, issued: identity.IssuedToken, target: str
) -> Response:
    old = request.cookies.get(COOKIE)
    if old:  # a new session id at every log-in: the previous one is revoked
        with contextlib.suppress(errors.Unauthorized):
            identity.logout(session, old)
    return _session_cookie(request, issued, target)


def _session_cookie(request: Request, issued: identity.IssuedToken, target: str) -> Response:
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        issued.token,
        max_age=issued.expires_in,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    return response


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return _login_page(request, next=safe_next(next))


@router.post("/login")
async def login(request: Request, session: SessionDep) -> Response:
    form = await request.form()
    username = str(form.get("username", ""))
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "/")))
    methods = get_settings().login_methods
    method = str(form.get("method", "") or ("local" if "local" in methods else "ldap"))
    address = request.client.host if request.client else None
    try:
        if method not in methods or method not in ("local", "ldap"):
            raise errors.InvalidField(
                "method",
                "not_offered",
                f"log-in method '{method[:20]}' is not offered here",
                message_zh="本系统未提供该登录方式",
            )
        if method == "ldap":
            issued = ldap.login(session, username, password, address=address)
        else:
            issued = identity.login(session, username, password, address=address)
    except errors.PortalError as exc:  # wrong, unknown, locked or throttled: the service's reason
        return _login_page(request, status=401, next=target, error=_message(exc), username=username)
    return _open_session(request, session, issued, target)


# ---- campus single sign-on (CAS 3.0) ---------------------------------------------------------------

#: Where the page asked for before the CAS round trip waits (the service URL is fixed, so it cannot
#: carry it): a local path only (safe_next), for ten minutes, sent back to the callback alone.
NEXT_COOKIE = "vmportal_cas_next"


@router.get("/auth/cas/login")
def cas_login(request: Request, next: str = "/") -> Response:
    if not cas.enabled():
        return _page(
            request,
            "error.html",
            status=404,
            page_title=_("Campus sign-on"),
            message=_("Campus sign-on (CAS) is not enabled on this portal."),
        )
    response = RedirectResponse(cas.login_url(), status_code=303)
    response.set_cookie(
        NEXT_COOKIE,
        safe_next(next),
        max_age=600,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path=cas.CAS_CALLBACK_PATH,
    )
    return response


@router.get("/auth/cas/callback")
def cas_callback(request: Request, ticket: str = "") -> Response:
    address = request.client.host if request.client else None
    try:
        # Its own unit of work (a GET's only reads), which also ends the browser's earlier session.
        issued = cas.login(ticket[:300], address=address, previous_token=request.cookies.get(COOKIE))
    except identity.SignOnRefused as refused:
        if refused.reason == "unknown_user":
            return _unknown_cas_user(request, refused)
        status = 503 if refused.reason == "unavailable" else 401
        return _cas_refused(request, _message(refused), status)
    except errors.PortalError as exc:  # throttled
        return _cas_refused(request, _message(exc), exc.status)
    response = _session_cookie(request, issued, safe_next(request.cookies.get(NEXT_COOKIE)))
    response.delete_cookie(NEXT_COOKIE, path=cas.CAS_CALLBACK_PATH)
    return response


@router.post("/auth/cas/callback")
async def cas_single_logout(request: Request, session: SessionDep) -> Response:
    """The CAS server's back-channel single log-out (a SAML LogoutRequest in ``logoutRequest``)."""
    form = await request.form()
    cas.single_logout(session, str(form.get("logoutRequest", "")))
    return Response(status_code=200)


def _cas_refused(request: Request, message: str, status: int) -> HTMLResponse:
    return _page(
        request,
        "cas_refused.html",
        status=status,
        page_title=_("Campus sign-on failed"),
        message=message,
        cas_login=cas.enabled(),
        password_login=any(m in ("local", "ldap") for m in get_settings().login_methods),
    )


def _unknown_cas_user(request: Request, refused: identity.SignOnRefused) -> HTMLResponse:
    """Not in any unit's registry: both languages on one page (whoever reads it may not be able to
    switch the portal's language before they know what happened)."""
    texts = {}
    for locale in ("zh_CN", "en"):
        with use_locale(locale):
            texts[locale] = {
                "heading": _("You are not registered in the portal"),
                "body": _(
                    "Your campus account was accepted, but no unit's network security contact registry "
                    "(网络安全联络通讯录) names you with this staff number, so the portal has no account "
                    "for you."
                ),
                "action": _(
                    "Ask your unit's network security lead to update the unit's 网络安全联络通讯录 "
                    "with your name and staff number; your account is made from it."
                ),
                "who": _("Campus account"),
                "staff_no": _("Staff number"),
            }
    return _page(
        request,
        "cas_unknown.html",
        status=403,
        page_title=_("You are not registered in the portal"),
        texts=texts,
        cas_user=str(refused.extra.get("cas_user", "")),
        staff_no=str(refused.extra.get("staff_no", "")),
        logout_url=cas.logout_url(),
    )


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
    from vmportal.web import common  # it imports this module's session helpers

    return _page(
        request,
        "dashboard.html",
        **common.base(token, user, _("Dashboard"), "/"),
        endorsements=_endorsements_waiting(session, user),
    )


def _endorsements_waiting(session: Session, user: User) -> int | None:
    """How many of the unit's requests wait for this lead's endorsement; None when that is not the
    lead's work now (another role, or the center does not require endorsement)."""
    if user.role != Role.UNIT_LEAD.value or not center.endorsement_required(session):
        return None
    _rows, total = requests.list_requests(
        session, identity.actor_of(user), state=RequestState.SUBMITTED, limit=1
    )
    return total


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, session: SessionDep) -> Response:
    current = _current(request, session)
    if current is None:
        return _to_login(request)
    token, user = current
    from vmportal.web import common

    return _page(request, "account.html", **common.base(token, user, _("My account"), "/account"))
