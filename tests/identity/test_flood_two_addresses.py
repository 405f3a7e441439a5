"""The flood of issue 13 as the checker does it, against the portal under uvicorn: one address
(127.0.0.2, the client socket bound there) floods the log-in of the only center admin well past the
lock-out threshold and the per-address rate limit; the admin logs in from another address
(127.0.0.1) in Chromium through the log-in page and lands where they asked. No proxy is involved:
the portal believes no X-Forwarded-For (``trusted_proxies`` empty, as in production by default),
so the peer address of each socket is the client. Also: the page log-in issues a new session id
every time and ends the browser's previous session (session fixation)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect
from sqlmodel import select

from tests.factories import PASSWORD, Factory
from tests.identity.conftest import Portal
from tests.web_foundation.conftest import CHROMIUM, CHROMIUM_ARGS, vendored
from vmportal.identity.models import AuthToken, User
from vmportal.kit import db

__all__ = ["vendored"]

pytestmark = pytest.mark.xdist_group("identity-servers")

COOKIE = "vmportal_session"
FLOODER = "127.0.0.2"
WRONG = "Wrong-passw0rd!"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def portal(start_portal: Callable[..., Portal]) -> Portal:
    return start_portal(login_methods=["local"], login_failure_rate="10/minute")


def _from(portal: Portal, address: str) -> httpx.Client:
    """A client whose connections leave from ``address`` (any 127.0.0.0/8 address is local)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=portal.url, transport=transport, timeout=30, trust_env=False)


def test_a_flood_from_one_address_does_not_keep_the_admin_out_in_a_browser_elsewhere(
    portal: Portal, factory: Factory, browser: Browser, vendored: None
) -> None:
    chief = factory.user("center_admin", username="only.chief")
    answers: list[int] = []
    with _from(portal, FLOODER) as flood:
        for _ in range(15):
            r = flood.post("/api/v1/auth/login", json={"username": chief.username, "password": WRONG})
            answers.append(r.status_code)
        # Even with a spoofed header the flood stays at its own address.
        spoofed = flood.post(
            "/api/v1/auth/login",
            json={"username": chief.username, "password": PASSWORD},
            headers={"X-Forwarded-For": "127.0.0.1"},
        )
    # 401 until the lock (5), then 423 at this address (a locked answer counts no failure against
    # the address's rate limit of 10 a minute, so the flooder reads 423, not 429, here).
    assert answers[:5] == [401] * 5
    assert set(answers[5:]) == {423}
    assert spoofed.status_code == 423
    with db.transaction() as s:
        row = s.exec(select(User).where(User.username == chief.username)).one()
        assert row.locked_until is not None and row.locked_address == FLOODER

    context = browser.new_context(locale="zh-CN", bypass_csp=True)
    page = context.new_page()
    try:
        page.goto(f"{portal.url}/login?next=/account")
        page.get_by_role("textbox", name="用户名").fill(chief.username)
        page.get_by_role("textbox", name="密码").fill(PASSWORD)
        page.locator("form[action$='/login'] button[type=submit]").click()
        page.wait_for_url(f"{portal.url}/account")
        expect(page.locator("main")).to_contain_text(chief.username)
    finally:
        context.close()
    # The flooder is still shut out, with the right password too.
    with _from(portal, FLOODER) as flood:
        r = flood.post("/api/v1/auth/login", json={"username": chief.username, "password": PASSWORD})
        assert r.status_code == 423


def test_the_rate_limit_stops_a_flood_of_many_names_at_its_address_only(
    portal: Portal, factory: Factory
) -> None:
    chief = factory.user("center_admin", username="only.chief")
    with _from(portal, FLOODER) as flood:
        seen = [
            flood.post("/api/v1/auth/login", json={"username": f"guess{i}", "password": WRONG}).status_code
            for i in range(11)
        ]
        assert seen == [401] * 10 + [429]
        stopped = flood.post("/api/v1/auth/login", json={"username": chief.username, "password": PASSWORD})
        assert stopped.status_code == 429 and int(stopped.headers["retry-after"]) >= 1
    with _from(portal, "127.0.0.1") as desk:
        r = desk.post("/api/v1/auth/login", json={"username": chief.username, "password": PASSWORD})
        assert r.status_code == 200, r.text


def test_the_page_log_in_gives_a_new_session_id_and_ends_the_previous_one(
    portal: Portal, factory: Factory
) -> None:
    user = factory.user("center_operator", username="desk.operator")
    with portal.client() as c:
        c.cookies.set(COOKIE, "planted-by-an-attacker")
        form = {"username": user.username, "password": PASSWORD, "next": "/account"}
        first = c.post("/login", data=form)
        assert first.status_code == 303 and first.headers["location"] == "/account"
        one = first.cookies[COOKIE]
        assert one != "planted-by-an-attacker"
        c.cookies.set(COOKIE, one)
        second = c.post("/login", data=form)
        two = second.cookies[COOKIE]
        assert two not in (one, "planted-by-an-attacker")
        c.cookies.set(COOKIE, two)
        assert c.get("/account").status_code == 200
    with portal.client() as old:
        old.cookies.set(COOKIE, one)
        assert old.get("/account").status_code == 303  # the earlier session was ended
    with db.transaction() as s:
        tokens = s.exec(select(AuthToken).where(AuthToken.user_id == user.id)).all()
        assert [t.revoked_at is None for t in tokens] == [False, True]
