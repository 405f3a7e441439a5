"""The language switch: ``GET /lang/{locale}?next=/vms`` remembers the choice in a cookie and goes
back to the page it was made on.

A plain link (not a form) so it works without JavaScript and needs no CSRF token: the worst a
forged link can do is change someone's display language, which the same switch undoes.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse

from vmportal.web.i18n import LOCALE_COOKIE, SUPPORTED_LOCALES

COOKIE_MAX_AGE: Final = 365 * 24 * 3600

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``/``: the switch must never become an open
    redirect (``//evil.example``, ``/\\evil.example`` and ``https://…`` all leave the site)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 or c == "\\" for c in target):
        return "/"
    return target


def language_url(locale: str, next_path: str, *, root_path: str = "") -> str:
    return f"{root_path}/lang/{locale}?next={quote(next_path, safe='/')}"


@router.get("/lang/{locale}")
def switch_language(locale: str, request: Request, next: str = "/") -> RedirectResponse:
    if locale not in SUPPORTED_LOCALES:
        raise HTTPException(status_code=404, detail=f"unknown language {locale!r}")
    # ``next`` is the page's path as the browser saw it (the proxy prefix included), so it is used
    # as it is.
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        LOCALE_COOKIE,
        locale,
        max_age=COOKIE_MAX_AGE,
        path="/",
        samesite="lax",
        httponly=True,
        secure=request.url.scheme == "https",
    )
    return response
