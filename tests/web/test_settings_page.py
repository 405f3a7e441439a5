"""中心设置 against the live demo portal: every role reads /settings (the values and what they mean);
only the center admin gets the form, the others the button explained, and a POST from them is refused
naming the rule (settings.update), nothing written; bad values (a mail choice not offered, an
endorsement neither yes nor no) are refused beside their field with center.service's rule (one_of,
type), the values kept, neither setting written; a form without its CSRF token is refused; the admin
turns the endorsement on and the mail to one per alert (the API reads the change); English too; a
Chromium pass with axe-core in both languages at phone and desktop width, the admin saving through
the form; screenshots at desktop and phone width under .cache/screenshots (tests/web/screens.py)."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Browser, Page, expect

from policies.roles import Role
from tests.web.conftest import Live
from tests.web.pagekit import as_user, csrf
from tests.web.screens import Shots, axe_violations, shots
from vmportal.app.demo import PASSWORDS

API = "/api/v1"
__all__ = ["shots"]


def _settings(live: Live) -> dict[str, Any]:
    with live.client() as c:
        r = c.get(f"{API}/settings", headers=live.login("auditor", Role.AUDITOR))
        assert r.status_code == 200, r.text
        return dict(r.json())


def _error(html: str, name: str) -> str:
    m = re.search(rf'id="f-{name}-error"[^>]*>(.*?)</p>', html, re.S)
    assert m is not None, f"no error beside {name}"
    return re.sub(r"<[^>]+>", "", m.group(1)).strip()


def test_every_role_reads_and_only_the_admin_changes(live: Live) -> None:
    before = _settings(live)
    for username, role in (
        ("cs-admin", Role.UNIT_ADMIN),
        ("operator", Role.CENTER_OPERATOR),
        ("auditor", Role.AUDITOR),
    ):
        with as_user(live, username, role) as c:
            page = c.get("/settings")
            assert page.status_code == 200 and "中心设置" in page.text
            shown = "true" if before["endorsement_required"] else "false"
            assert f'data-setting="endorsement_required" data-value="{shown}"' in page.text
            assert f'data-value="{before["unmatched_alert_mail"]}"' in page.text
            assert 'action="/settings"' not in page.text and "只有信息中心管理员可以修改" in page.text
            refused = c.post(
                "/settings",
                data={
                    "csrf_token": csrf(page.text),
                    "endorsement_required": "true",
                    "unmatched_alert_mail": "off",
                },
            )
            assert refused.status_code == 403 and "settings.update" in refused.text
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        assert 'href="/settings"' in c.get("/settings").text  # in the center's navigation
    assert _settings(live) == before  # nothing written


def test_bad_values_are_shown_beside_their_field_and_nothing_is_written(live: Live) -> None:
    before = _settings(live)
    with as_user(live, "center-admin", Role.CENTER_ADMIN) as c:
        page = c.get("/settings")
        assert page.status_code == 200 and 'action="/settings"' in page.text
        token = csrf(page.text)
        bad = c.post(
            "/settings",
            data={"csrf_token": token, "endorsement_required": "maybe", "unmatched_alert_mail": "weekly"},
        )
        assert bad.status_code == 422 and 'aria-invalid="true"' in bad.text
        mail = _error(bad.text, "unmatched_alert_mail")
        assert "one_of" in mail and "只能取以下值之一" in mail and "each, digest, off" in mail
        assert "type" in _error(bad.text, "endorsement_required")
        for hours, rule in (("0", "range"), ("721", "range"), ("三天", "type")):
            wrong = c.post(
                "/settings",
                data={"csrf_token": token, "endorsement_required": "true", "maintenance_notice_hours": hours},
            )
            assert wrong.status_code == 422 and rule in _error(wrong.text, "maintenance_notice_hours")
            assert f'value="{hours}"' in wrong.text  # the typed value kept
        one = c.post(
            "/settings",
            data={"csrf_token": token, "endorsement_required": "true", "unmatched_alert_mail": "weekly"},
        )
        assert one.status_code == 422 and "one_of" in _error(one.text, "unmatched_alert_mail")
        assert re.search(r'<option value="true" selected>', one.text)  # the values kept
        assert _settings(live) == before  # neither written, the valid one neither
        assert c.post("/settings", data={"endorsement_required": "true"}).status_code == 403  # no CSRF token


def test_the_admin_changes_the_settings(live: Live) -> None:
    with as_user(live, "center-admin", Role.CENTER_ADMIN) as c:
        token = csrf(c.get("/settings").text)
        saved = c.post(
            "/settings",
            data={
                "csrf_token": token,
                "endorsement_required": "true",
                "unmatched_alert_mail": "each",
                "maintenance_notice_hours": "96",
            },
        )
        assert saved.status_code == 303 and saved.headers["location"] == "/settings?done=saved"
        after = c.get(saved.headers["location"]).text
        assert "中心设置已保存" in after and re.search(r'<option value="each" selected>', after)
    assert _settings(live) == {
        "endorsement_required": True,
        "unmatched_alert_mail": "each",
        "maintenance_notice_hours": 96,
    }
    with live.client() as c:  # the change is in the audit log
        r = c.get(
            f"{API}/audit", params={"action": "setting.update"}, headers=live.login("auditor", Role.AUDITOR)
        )
        assert r.status_code == 200 and r.json()["items"], r.text


def test_the_page_in_english(live: Live) -> None:
    with as_user(live, "center-admin", Role.CENTER_ADMIN, headers={"Accept-Language": "en"}) as c:
        page = c.get("/settings")
        assert page.status_code == 200 and "Center settings" in page.text
        assert "Requests need the unit lead&#39;s endorsement" in page.text
        bad = c.post(
            "/settings",
            data={
                "csrf_token": csrf(page.text),
                "endorsement_required": "true",
                "unmatched_alert_mail": "x",
            },
        )
        assert bad.status_code == 422 and "must be one of: each, digest, off" in _error(
            bad.text, "unmatched_alert_mail"
        )
    with as_user(live, "auditor", Role.AUDITOR, headers={"Accept-Language": "en"}) as c:
        assert "Only the center administrator changes the center settings." in c.get("/settings").text


def _log_in(page: Page, base: str, username: str, role: Role) -> None:
    page.goto(f"{base}/login?next=/settings")
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORDS[role])
    page.locator("#password").press("Enter")
    page.wait_for_url(f"{base}/settings")


def test_the_settings_in_chromium(live: Live, browser: Browser, vendored: None, shots: Shots) -> None:
    for locale, width in (("zh-CN", 375), ("zh-CN", 1280), ("en-US", 375), ("en-US", 1280)):
        for username, role in (("center-admin", Role.CENTER_ADMIN), ("auditor", Role.AUDITOR)):
            context = browser.new_context(
                locale=locale, viewport={"width": width, "height": 900}, bypass_csp=True
            )
            page = context.new_page()
            try:
                _log_in(page, live.base_url, username, role)
                shots.take(page, f"settings-{username}")
                assert axe_violations(page) == []
                if (username, locale, width) != ("center-admin", "zh-CN", 1280):
                    continue
                page.locator("#f-unmatched_alert_mail").select_option("off")
                page.get_by_role("button", name="保存设置").click()
                page.wait_for_url(f"{live.base_url}/settings?done=saved")
                expect(page.locator(".flash-success")).to_contain_text("中心设置已保存")
                expect(page.locator("#f-unmatched_alert_mail")).to_have_value("off")
                assert axe_violations(page) == []
            finally:
                context.close()
    assert _settings(live)["unmatched_alert_mail"] == "off"
