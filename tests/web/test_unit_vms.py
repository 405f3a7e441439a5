"""我的虚拟机 against the live demo portal: a unit admin's VMs with their power and security state
and one "Actions" control per VM (a link to the VM's page, which htmx turns into a fetch of the
VM's power buttons); an action the user may not take is shown refused with its rule and reason
before trying (the unit lead: power_ops once for the page; a suspended VM: suspended_lock on start,
reset and reboot, power off still offered, on its page and in its opened actions); a refused post
names the rule and queues nothing; a form without its CSRF token is refused; another unit's VM
answers the 404 page, its actions too. In Chromium: the unit admin opens a VM's actions from the
keyboard, the table's 5 s refresh leaves the open menu alone, powers the VM off, confirms in the
dialog and sees the state change without reloading; the VM's page in English at phone width;
axe-core on each (no serious or critical violation), screenshots at desktop and phone width under
.cache/screenshots (tests/web/screens.py)."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from policies.roles import Role
from tests.web.conftest import Live
from tests.web.screens import Shots, axe_violations, shots
from vmportal.app.demo import PASSWORDS

API = "/api/v1"
__all__ = ["shots"]


@contextlib.contextmanager
def _pages(live: Live, username: str, role: Role, **kwargs: Any) -> Iterator[httpx.Client]:
    with live.client(**kwargs) as c:
        r = c.post("/login", data={"username": username, "password": PASSWORDS[role], "next": "/vms"})
        assert r.status_code == 303, r.text
        yield c


def _vms(live: Live, username: str) -> list[dict[str, Any]]:
    with live.client() as c:
        items = c.get(f"{API}/vms", headers=live.login(username, Role.UNIT_ADMIN)).json()["items"]
    return list(items)


def _set(live: Live, vm_id: int, **values: str) -> None:
    with contextlib.closing(sqlite3.connect(live.data_dir / "vmportal.sqlite3", timeout=30)) as db:
        for column, value in values.items():
            db.execute(f"UPDATE vm SET {column} = ? WHERE id = ?", (value, vm_id))  # noqa: S608
        db.commit()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found is not None
    return found.group(1)


@pytest.fixture(scope="module")
def vms(live: Live) -> dict[str, int]:
    """CS's two VMs (the second suspended for security here); ME has none."""
    cs = sorted(_vms(live, "cs-admin"), key=lambda v: v["id"])
    assert _vms(live, "me-admin") == []
    _set(live, cs[1]["id"], security_state="suspended")
    return {"cs_free": cs[0]["id"], "cs_suspended": cs[1]["id"]}


def test_refusals_are_shown_before_trying(live: Live, vms: dict[str, int]) -> None:
    with _pages(live, "cs-admin", Role.UNIT_ADMIN) as c:
        page = c.get("/vms")
        assert page.status_code == 200 and "我的虚拟机" in page.text
        free = re.search(rf'<tr data-vm="{vms["cs_free"]}">.*?</tr>', page.text, re.S)
        assert free is not None
        # A light row: no power form, one control that is a link to the VM's page without
        # JavaScript and fetches the VM's actions with htmx.
        assert 'name="action"' not in free.group(0) and "data-menu-toggle" in free.group(0)
        assert f'href="/vms/{vms["cs_free"]}" data-menu-toggle' in free.group(0)
        assert f'hx-get="/vms/{vms["cs_free"]}/actions"' in free.group(0)
        opened = c.get(f"/vms/{vms['cs_free']}/actions", headers={"HX-Request": "true"})
        assert opened.status_code == 200 and "<html" not in opened.text
        assert 'value="stop"' in opened.text and "强制关机" in opened.text
        assert f'name="csrf_token" value="{_csrf(page.text)}"' in opened.text
        assert 'name="from" value="list"' in opened.text  # a press answers the row
        no_js = c.get(f"/vms/{vms['cs_free']}/actions", follow_redirects=False)
        assert no_js.status_code == 303 and no_js.headers["location"] == f"/vms/{vms['cs_free']}"

        # The suspended VM's opened actions: refused before trying, with the rule and its reason.
        menu = c.get(f"/vms/{vms['cs_suspended']}/actions", headers={"HX-Request": "true"}).text
        assert sorted(re.findall(r'aria-disabled="true"[^>]*data-action="(\w+)"', menu)) == [
            "reboot",
            "restart",
            "start",
        ]
        assert "规则 suspended_lock" in menu and 'name="action" value="stop"' in menu

        detail = c.get(f"/vms/{vms['cs_suspended']}")
        assert detail.status_code == 200 and "已暂停" in detail.text
        refused = re.findall(r'aria-disabled="true"[^>]*data-action="(\w+)"', detail.text)
        assert sorted(refused) == ["reboot", "restart", "start"]
        assert "规则 suspended_lock" in detail.text and "在信息中心核实整改之前不能开机" in detail.text
        assert 'name="action" value="stop"' in detail.text  # powering down stays allowed

        # Posted anyway (a stale page): refused naming the rule, nothing queued.
        r = c.post(
            f"/vms/{vms['cs_suspended']}/power",
            data={"csrf_token": _csrf(detail.text), "action": "start"},
        )
        assert r.status_code == 403 and "规则 suspended_lock" in r.text
        assert "data-operation" not in r.text

        no_token = c.post(f"/vms/{vms['cs_free']}/power", data={"action": "stop"})
        assert no_token.status_code == 403 and "CSRF" in no_token.text

    with _pages(live, "me-admin", Role.UNIT_ADMIN) as c:  # another unit's VM: the 404 page
        mine = c.get("/vms")
        assert f'data-vm="{vms["cs_free"]}"' not in mine.text
        other = c.get(f"/vms/{vms['cs_free']}")
        assert other.status_code == 404 and "无权查看" in other.text and "cs-lab-web" not in other.text
        other_menu = c.get(f"/vms/{vms['cs_free']}/actions", headers={"HX-Request": "true"})
        assert other_menu.status_code == 404 and "cs-lab-web" not in other_menu.text
        assert 'name="action"' not in other_menu.text
        other_post = c.post(
            f"/vms/{vms['cs_free']}/power", data={"csrf_token": _csrf(mine.text), "action": "stop"}
        )
        assert other_post.status_code == 404

    with _pages(live, "cs-lead", Role.UNIT_LEAD) as c:
        page = c.get("/vms")
        assert "规则 power_ops" in page.text and "网络安全负责人可以查看，但不能操作" in page.text
        assert 'name="action"' not in page.text and "仅可查看" in page.text
        assert "data-menu-toggle" not in page.text  # nothing to open
        menu = c.get(f"/vms/{vms['cs_free']}/actions", headers={"HX-Request": "true"})
        assert "规则 power_ops" in menu.text and 'name="action"' not in menu.text


def test_a_power_action_from_the_vm_page_in_english(live: Live, vms: dict[str, int]) -> None:
    with _pages(live, "cs-admin", Role.UNIT_ADMIN, headers={"Accept-Language": "en"}) as c:
        detail = c.get(f"/vms/{vms['cs_suspended']}")
        assert "Rule suspended_lock" in detail.text and "you cannot start it" in detail.text
        r = c.post(
            f"/vms/{vms['cs_suspended']}/power",
            data={"csrf_token": _csrf(detail.text), "action": "shutdown", "from": "detail"},
            headers={"HX-Request": "true"},
        )
        assert r.status_code == 200 and r.text.lstrip().startswith('<section id="vm-status"')
        assert "Shut down the OS requested" in r.text


def _login(page: Page, base: str, next_path: str) -> None:
    page.goto(f"{base}/login?next={next_path}")
    page.locator("#username").fill("cs-admin")
    page.locator("#password").fill(PASSWORDS[Role.UNIT_ADMIN])
    page.locator("#password").press("Enter")
    page.wait_for_url(f"{base}{next_path}")


def test_power_off_from_the_list_in_chromium(
    live: Live, vms: dict[str, int], browser: Browser, vendored: None, shots: Shots
) -> None:
    _set(live, vms["cs_free"], power_state="running")
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    try:
        _login(page, live.base_url, "/vms")
        row = page.locator(f"tr[data-vm='{vms['cs_free']}']")
        expect(row.locator(".power-state")).to_contain_text("运行中")
        shots.both(page, "vms")
        assert axe_violations(page) == []
        # The row's one control, from the keyboard: a button that opens the VM's actions.
        toggle = row.locator("[data-menu-toggle]")
        expect(toggle).to_have_attribute("role", "button")
        expect(toggle).to_have_attribute("aria-expanded", "false")
        toggle.focus()
        page.keyboard.press("Space")
        expect(toggle).to_have_attribute("aria-expanded", "true")
        menu = row.locator(".row-menu")
        expect(menu.locator("button[data-action=stop]")).to_be_visible()
        page.keyboard.press("Escape")  # closes it, the focus back on its control
        expect(toggle).to_have_attribute("aria-expanded", "false")
        expect(menu.locator("button")).to_have_count(0)
        expect(toggle).to_be_focused()
        page.keyboard.press("Enter")
        expect(toggle).to_have_attribute("aria-expanded", "true")
        shots.both(page, "vms-actions")
        assert axe_violations(page) == []
        # The table's 5 s refresh waits while the menu is open: it is still there after one.
        page.wait_for_timeout(6_000)
        expect(toggle).to_have_attribute("aria-expanded", "true")
        row.locator("button[data-action=stop]").click()
        dialog = page.locator("#confirm-dialog")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("立即强制关闭")
        dialog.locator("[data-confirm-ok]").click()
        expect(row.locator("[role=status]")).to_contain_text("已提交")
        # The simulator stops the VM; the table's own refresh shows it, no reload.
        expect(row.locator(".power-state")).to_contain_text("已关机", timeout=20_000)
        assert axe_violations(page) == []
    finally:
        context.close()

    context = browser.new_context(locale="en-US", viewport={"width": 375, "height": 800}, bypass_csp=True)
    page = context.new_page()
    try:
        _login(page, live.base_url, f"/vms/{vms['cs_suspended']}")
        expect(page.locator("#vm-status .security-state")).to_contain_text("Suspended")
        start = page.locator("#vm-status button[data-action=start]")
        expect(start).to_have_attribute("aria-disabled", "true")
        start.focus()
        expect(page.locator("#vm-status .tooltip").first).to_contain_text("suspended_lock")
        shots.both(page, "vm-detail")
        assert axe_violations(page) == []
    finally:
        context.close()
