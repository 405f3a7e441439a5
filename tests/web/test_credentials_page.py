"""The one-time credentials page against the live demo portal (rule ``credentials_once``): CS's admin
files two requests, the operator approves them, the simulator delivers them. The VM's page links to
the credentials page; the page only reads (shown again and again, nothing consumed) and says they
are shown once; the unit lead and the operator see the rule's refusal, another unit's admin the 404
page; a post without its CSRF token, or without the ticked confirmation, consumes nothing; the one
post shows the password (``Cache-Control: no-store``), and every later visit or post shows the rule
and its reason instead, in Chinese and in English. In Chromium: the admin collects the second VM's
credentials through the confirmation dialog and copies the password; axe-core on each page (no
serious or critical violation); screenshots at desktop and phone width (tests/web/screens.py)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from policies.roles import Role
from tests.production.harness import wait_for
from tests.web.conftest import Live
from tests.web.pagekit import as_user
from tests.web.screens import DESKTOP, PHONE, Shots, axe_violations, shots
from vmportal.app.demo import PASSWORDS

pytestmark = pytest.mark.xdist_group("web-credentials-page")

API = "/api/v1"
__all__ = ["shots"]


def _deliver(live: Live, hostnames: tuple[str, ...]) -> list[int]:
    admin = live.login("cs-admin", Role.UNIT_ADMIN)
    operator = live.login("operator", Role.CENTER_OPERATOR)
    with live.client() as c:
        connection = int(c.get(f"{API}/vms", headers=admin).json()["items"][0]["connection_id"])
        ids = []
        for hostname in hostnames:
            body: dict[str, Any] = {
                "system_name": f"凭据测试平台 {hostname}",
                "purpose": "teaching",
                "hostname": hostname,
                "connection_id": connection,
                "template_ref": "tpl-rocky-9",
                "vcpus": 1,
                "memory_gib": 2,
                "disk_gib": 40,
            }
            r = c.post(f"{API}/requests", json=body, headers=admin)
            assert r.status_code == 201, r.text
            ids.append(int(r.json()["id"]))
        for rid in ids:
            r = c.post(f"{API}/requests/{rid}/approve", json={}, headers=operator)
            assert r.status_code == 200, r.text

        def delivered() -> bool:
            return all(
                c.get(f"{API}/requests/{rid}", headers=operator).json()["state"] == "delivered" for rid in ids
            )

        wait_for(delivered, timeout=120, what="the requests delivered")
        return [int(c.get(f"{API}/requests/{rid}", headers=operator).json()["vm_id"]) for rid in ids]


@pytest.fixture(scope="module")
def delivered(live: Live) -> dict[str, int]:
    first, second = _deliver(live, ("cred-a", "cred-b"))
    return {"http": first, "browser": second}


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found is not None
    return found.group(1)


def _state(c: httpx.Client, vm_id: int) -> str:
    found = re.search(r'data-state="(\w+)"', c.get(f"/vms/{vm_id}/credentials").text)
    assert found is not None
    return found.group(1)


def test_the_page_only_reads_and_refuses_everyone_else(live: Live, delivered: dict[str, int]) -> None:
    vm_id = delivered["http"]
    url = f"/vms/{vm_id}/credentials"
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        vm_page = c.get(f"/vms/{vm_id}")
        assert vm_page.status_code == 200 and f'href="{url}"' in vm_page.text
        assert 'data-credentials="available"' in vm_page.text and "领取初始凭据（仅显示一次）" in vm_page.text
        for _ in range(2):  # a GET consumes nothing: a link preview or a reload is harmless
            page = c.get(url)
            assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
            assert "仅显示一次" in page.text and 'data-state="available"' in page.text
            assert 'name="understood"' in page.text and 'data-confirm="' in page.text
            assert 'data-field="password"' not in page.text
        token = _csrf(page.text)

        no_token = c.post(url, data={"understood": "1"})
        assert no_token.status_code == 403 and "CSRF" in no_token.text
        unticked = c.post(url, data={"csrf_token": token})
        assert unticked.status_code == 422 and "请勾选" in unticked.text
        assert 'aria-invalid="true"' in unticked.text and 'data-field="password"' not in unticked.text
        assert _state(c, vm_id) == "available"

    with as_user(live, "cs-lead", Role.UNIT_LEAD) as c:  # the lead sees the VM, not its password
        assert 'data-credentials="available"' not in c.get(f"/vms/{vm_id}").text
        page = c.get(url)
        assert page.status_code == 200 and "规则 credentials_once" in page.text
        assert "单位网络安全负责人不能查看" in page.text and 'name="understood"' not in page.text
        r = c.post(url, data={"csrf_token": _csrf(page.text), "understood": "1"})
        assert (
            r.status_code == 403
            and "规则 credentials_once" in r.text
            and 'data-field="password"' not in r.text
        )

    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        page = c.get(url)
        assert page.status_code == 200 and "信息中心值班人员不能查看" in page.text

    with as_user(live, "me-admin", Role.UNIT_ADMIN) as c:  # another unit's VM: the 404 page, both ways
        other = c.get(url)
        assert other.status_code == 404 and "无权查看" in other.text and "cred-a" not in other.text
        token = _csrf(c.get("/vms").text)
        assert c.post(url, data={"csrf_token": token, "understood": "1"}).status_code == 404

    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        assert _state(c, vm_id) == "available"  # nothing above used the one fetch


def test_shown_once_then_the_rule_in_both_languages(live: Live, delivered: dict[str, int]) -> None:
    vm_id = delivered["http"]
    url = f"/vms/{vm_id}/credentials"
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        token = _csrf(c.get(url).text)
        shown = c.post(url, data={"csrf_token": token, "understood": "1"})
        assert shown.status_code == 200, shown.text
        assert shown.headers["cache-control"] == "no-store"
        password = re.search(r'data-field="password">([^<]+)</code>', shown.text)
        assert password is not None and len(password.group(1)) >= 16
        assert re.search(r'data-field="account">vmadmin</code>', shown.text)
        assert "仅显示一次" in shown.text and shown.text.count("data-copy=") >= 4
        secret = password.group(1)

        again = c.post(url, data={"csrf_token": token, "understood": "1"})  # a resubmitted form
        assert again.status_code == 410 and "规则 credentials_once" in again.text
        assert "已经领取过" in again.text and secret not in again.text
        later = c.get(url)
        assert later.status_code == 200 and 'data-state="fetched"' in later.text
        assert "规则 credentials_once" in later.text and "不提供恢复密码服务" in later.text
        assert 'name="understood"' not in later.text and secret not in later.text
        vm_page = c.get(f"/vms/{vm_id}").text
        assert 'data-credentials="fetched"' in vm_page and secret not in vm_page

    with as_user(live, "cs-admin", Role.UNIT_ADMIN, headers={"Accept-Language": "en"}) as c:
        later = c.get(url)
        assert "Rule credentials_once" in later.text and "already been collected" in later.text
        assert "Already collected" in later.text
        again = c.post(url, data={"csrf_token": _csrf(later.text), "understood": "1"})
        assert again.status_code == 410 and "does not recover passwords" in again.text


def _login(page: Page, base: str, next_path: str) -> None:
    page.goto(f"{base}/login?next={next_path}")
    page.locator("#username").fill("cs-admin")
    page.locator("#password").fill(PASSWORDS[Role.UNIT_ADMIN])
    page.locator("#password").press("Enter")
    page.wait_for_url(f"{base}{next_path}")


def test_collect_and_copy_in_chromium(
    live: Live, delivered: dict[str, int], browser: Browser, vendored: None, shots: Shots
) -> None:
    vm_id = delivered["browser"]
    url = f"/vms/{vm_id}/credentials"
    context = browser.new_context(locale="zh-CN", viewport=DESKTOP, bypass_csp=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.base_url)
    page = context.new_page()
    try:
        _login(page, live.base_url, f"/vms/{vm_id}")
        page.locator(f"a[href='{url}']").click()
        page.wait_for_url(f"{live.base_url}{url}")
        expect(page.locator(".flash-warning")).to_contain_text("仅显示一次")
        shots.take(page, "credentials-confirm")
        assert axe_violations(page) == []
        page.locator("button[data-action=reveal]").click()  # unticked: the browser holds the form
        expect(page.locator("#f-understood")).to_have_js_property("validity.valid", False)
        page.locator("#f-understood").check()
        page.locator("button[data-action=reveal]").click()
        dialog = page.locator("#confirm-dialog")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("仅显示这一次")
        dialog.locator("[data-confirm-ok]").click()
        secret = page.locator("[data-field=password]")
        expect(secret).to_be_visible()
        password = secret.inner_text()
        assert len(password) >= 16
        page.locator(f"button[data-copy='{password}']").click()
        expect(page.locator("#live-status")).to_contain_text("已复制")
        assert page.evaluate("() => navigator.clipboard.readText()") == password
        shots.take(page, "credentials-shown")
        assert axe_violations(page) == []
        page.goto(f"{live.base_url}{url}")
        expect(page.locator("[data-rule=credentials_once]")).to_contain_text("已经领取过")
        assert password not in page.content()
        shots.take(page, "credentials-fetched")
    finally:
        context.close()

    for locale, viewport in (("en-US", PHONE), ("zh-CN", PHONE), ("en-US", DESKTOP)):
        context = browser.new_context(locale=locale, viewport=viewport, bypass_csp=True)
        page = context.new_page()
        try:
            _login(page, live.base_url, url)
            expect(page.locator("[data-rule=credentials_once]")).to_be_visible()
            shots.take(page, "credentials-fetched")
            assert axe_violations(page) == []
        finally:
            context.close()
