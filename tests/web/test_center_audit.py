"""In Chromium against the live demo portal: the auditor opens the audit log and sees the hash
chain verified and the log's rows (the demo's own log-ins are in it), filters it by actor, gets a
bad date refused beside its field with the value kept; a unit admin is refused with the rule's
reason. Both languages, desktop and phone width, axe-core without serious or critical violations;
screenshots at desktop and phone width under .cache/screenshots (tests/web/screens.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from policies.roles import Role
from tests.web.conftest import Live
from tests.web.screens import Shots, axe_violations, shots
from vmportal.app.demo import PASSWORDS, logins

__all__ = ["shots"]  # the module fixture, imported


def _login(page: Page, base: str, role: Role, next_path: str) -> None:
    username = next(d.username for d in logins() if d.role == role)
    page.goto(f"{base}/login?next={next_path}")
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORDS[role])
    page.locator("#password").press("Enter")
    page.wait_for_url(f"{base}{next_path}")


@pytest.mark.parametrize(
    ("locale", "texts", "width"),
    [
        ("zh-CN", {"verified": "已验证", "bad_date": "YYYY-MM-DD", "refused": "audit.read"}, 1280),
        ("en-US", {"verified": "Verified", "bad_date": "YYYY-MM-DD", "refused": "audit.read"}, 375),
    ],
)
def test_auditor_reads_the_log(
    live: Live,
    browser: Browser,
    vendored: None,
    shots: Shots,
    locale: str,
    texts: dict[str, str],
    width: int,
) -> None:
    context = browser.new_context(locale=locale, viewport={"width": width, "height": 900}, bypass_csp=True)
    page = context.new_page()
    try:
        _login(page, live.base_url, Role.AUDITOR, "/audit-log")
        expect(page.locator("[data-chain=ok]")).to_contain_text(texts["verified"])
        rows = page.locator("table.data tbody tr")
        assert rows.count() >= 1
        shots.both(page, "audit-log")
        assert axe_violations(page) == []

        auditor = next(d.username for d in logins() if d.role == Role.AUDITOR)
        page.locator("#f-actor").fill(auditor)
        page.locator("#f-since").fill("2026-13-40")
        page.locator("form[role=search] button[type=submit]").click()
        error = page.locator("#f-since-error")
        expect(error).to_contain_text(texts["bad_date"])
        expect(page.locator("#f-since")).to_have_value("2026-13-40")
        expect(page.locator("#f-actor")).to_have_value(auditor)
        assert axe_violations(page) == []

        page.locator("#f-since").fill("")
        page.locator("form[role=search] button[type=submit]").click()
        expect(page.locator("table.data tbody tr").first).to_contain_text(auditor)
        actors = page.locator("table.data tbody tr td:nth-child(3)").all_inner_texts()
        assert actors and all(auditor in a for a in actors)
    finally:
        context.close()

    other = browser.new_context(locale=locale, viewport={"width": width, "height": 900})
    page = other.new_page()
    try:
        _login(page, live.base_url, Role.UNIT_ADMIN, "/")
        response = page.goto(f"{live.base_url}/audit-log")
        assert response is not None and response.status == 403
        expect(page.locator("main [role=alert]")).to_contain_text(texts["refused"])
    finally:
        other.close()
