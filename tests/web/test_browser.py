"""In Chromium against the live demo portal: / leads to the login page, a unit admin logs in and
lands where they asked to go, logs out with the header's button; each page passes axe-core with
no serious or critical violation, in Chinese and English, at desktop and phone width, and no
request leaves 127.0.0.1. Screenshots at desktop and phone width are kept under .cache/screenshots (tests/web/screens.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Request, Route, expect

from policies.roles import Role
from tests.web.conftest import Live
from tests.web.screens import Shots, axe_violations, shots
from vmportal.app.demo import PASSWORDS

__all__ = ["shots"]  # the module fixture, imported


@pytest.mark.parametrize(
    ("locale", "login_label", "width"), [("zh-CN", "登录", 1280), ("en-US", "Log in", 375)]
)
def test_login_walk(
    live: Live, browser: Browser, vendored: None, shots: Shots, locale: str, login_label: str, width: int
) -> None:
    # bypass_csp: axe is injected inline; the route guard still refuses any foreign request.
    context = browser.new_context(locale=locale, viewport={"width": width, "height": 900}, bypass_csp=True)
    foreign: list[str] = []

    def guard(route: Route, request: Request) -> None:
        if request.url.startswith(("data:", "blob:")) or urlsplit(request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            foreign.append(request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    try:
        page.goto(f"{live.base_url}/account")
        assert urlsplit(page.url).path == "/login"
        shots.both(page, "login")
        assert axe_violations(page) == []
        page.locator("#username").fill(_unit_admin())
        page.locator("#password").fill(PASSWORDS[Role.UNIT_ADMIN])
        page.get_by_role("button", name=login_label).click()
        expect(page).to_have_url(f"{live.base_url}/account")
        shots.both(page, "account")
        assert axe_violations(page) == []
        page.goto(f"{live.base_url}/")
        assert axe_violations(page) == []
        toggle = page.locator("button.nav-toggle")
        if toggle.is_visible():  # at phone width the user menu sits behind the menu button
            toggle.click()
        page.locator("form.inline-form button[type=submit]").click()
        expect(page).to_have_url(f"{live.base_url}/login")
        assert foreign == []
    finally:
        context.close()


def _unit_admin() -> str:
    from vmportal.app.demo import logins

    return next(d.username for d in logins() if d.role == Role.UNIT_ADMIN)
