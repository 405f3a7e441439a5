"""A page session: the identity token in an HttpOnly cookie, its CSRF token, and the signed-in user.

The CSRF token is an HMAC of the session token: bound to the session, and unforgeable without the
cookie, so no server-side key or table is needed. Every page module reads the session through
:func:`current` and sends a visitor without one to the log-in page with :func:`to_login`.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request
from fastapi.responses import RedirectResponse

from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import errors
from vmportal.kit.http import SessionDep
from vmportal.web.language import safe_next

COOKIE = "vmportal_session"


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"vmportal-csrf", hashlib.sha256).hexdigest()


def csrf_ok(token: str, sent: object) -> bool:
    return isinstance(sent, str) and hmac.compare_digest(csrf_for(token), sent)


def current(request: Request, session: SessionDep) -> tuple[str, User] | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return token, identity.user_for_token(session, token)
    except errors.Unauthorized:
        return None


def to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/login?next={safe_next(here)}", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def user_view(user: User) -> dict[str, str]:
    return {
        "display_name": user.display_name or user.username,
        "username": user.username,
        "role_label": user.role,
    }
