"""未登记虚拟机 against the live demo portal: two VMs are created on the simulator behind the portal's
back and found by an inventory sync; the operator finds them on /inventory with the assign form; a
unit's admin is refused the page and the action naming the rule (inventory.read, inventory.assign),
nothing written; the auditor reads the list without a form; bad input (no unit, a unit that is not a
number, another unit's information system) is refused beside its field with the rule, the choices
kept, nothing written; a form without its CSRF token is refused; the operator assigns one to CS with
one of CS's systems (CS's admin then sees it in 我的虚拟机), the center admin assigns the other in
Chromium through the confirmation dialog; English too; axe-core at phone and desktop width in both
languages; screenshots at desktop and phone width under .cache/screenshots (tests/web/screens.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from hypervisors.simulator import SimulatorAdapter
from policies.roles import Role
from tests.production.harness import wait_for
from tests.web.conftest import Live
from tests.web.pagekit import as_user, csrf, sign_in
from tests.web.screens import Shots, axe_violations, shots

API = "/api/v1"
__all__ = ["shots"]


def _unregistered(live: Live) -> dict[str, int]:
    with live.client() as c:
        r = c.get(f"{API}/inventory/unregistered", headers=live.login("operator", Role.CENTER_OPERATOR))
        assert r.status_code == 200, r.text
        return {v["name"]: int(v["id"]) for v in r.json()}


def _vm(live: Live, vm_id: int) -> dict[str, Any]:
    with live.client() as c:
        r = c.get(f"{API}/vms/{vm_id}", headers=live.login("operator", Role.CENTER_OPERATOR))
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture(scope="module")
def found(live: Live) -> dict[str, int]:
    """Two VMs made on the simulator by hand, found by the inventory; and CS's and ME's ids and systems."""
    sim = SimulatorAdapter(f"simulator://{(live.data_dir / 'simulator.json').resolve()}")
    sim.add_unmanaged_vm("legacy-oa-server", ips=["10.20.0.77"], vcpus=2, memory_mib=4096)
    sim.add_unmanaged_vm("old-library-db", ips=["10.20.0.78"])
    headers = live.login("operator", Role.CENTER_OPERATOR)
    with live.client() as c:
        assert c.post(f"{API}/inventory/sync", json={}, headers=headers).status_code == 202
    listed = wait_for(
        lambda: (u := _unregistered(live)) and {"legacy-oa-server", "old-library-db"} <= set(u) and u,
        timeout=60,
        what="the inventory finding the VMs",
    )
    with live.client() as c:
        units = {u["code"]: int(u["id"]) for u in c.get(f"{API}/units", headers=headers).json()}
        systems = {
            code: int(c.get(f"{API}/units/{units[code]}/systems", headers=headers).json()[0]["id"])
            for code in ("CS", "ME")
        }
    return {
        "oa": listed["legacy-oa-server"],
        "lib": listed["old-library-db"],
        "cs": units["CS"],
        "me": units["ME"],
        "cs_system": systems["CS"],
        "me_system": systems["ME"],
    }


def _listed(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<li class="queue-item" data-vm="(\d+)"', html)]


def _error(html: str, field_id: str) -> str:
    m = re.search(rf'id="{field_id}-error"[^>]*>(.*?)</p>', html, re.S)
    assert m is not None, f"no error beside {field_id}"
    return re.sub(r"<[^>]+>", "", m.group(1)).strip()


def test_a_unit_admin_is_refused_naming_the_rule(live: Live, found: dict[str, int]) -> None:
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        page = c.get("/inventory")
        assert page.status_code == 403 and "inventory.read" in page.text
        assert 'href="/inventory"' not in c.get("/vms").text
        token = csrf(c.get("/vms").text)
        refused = c.post(
            f"/inventory/{found['oa']}/assign", data={"csrf_token": token, "unit_id": found["cs"]}
        )
        assert refused.status_code == 403 and "inventory.assign" in refused.text
    assert found["oa"] in _unregistered(live).values()  # nothing written


def test_the_auditor_reads_the_list_without_a_form(live: Live, found: dict[str, int]) -> None:
    with as_user(live, "auditor", Role.AUDITOR) as c:
        page = c.get("/inventory")
        assert page.status_code == 200 and "legacy-oa-server" in page.text and "10.20.0.77" in page.text
        assert f'/inventory/{found["oa"]}/assign"' not in page.text
        assert "只有信息中心值班人员和管理员可以" in page.text  # why not, beside the button


def test_the_operator_assigns_a_vm_and_bad_input_is_shown_beside_its_field(
    live: Live, found: dict[str, int]
) -> None:
    oa = found["oa"]
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        page = c.get("/inventory")
        assert page.status_code == 200 and "未登记虚拟机" in page.text
        assert {found["oa"], found["lib"]} <= set(_listed(page.text))
        assert 'href="/inventory"' in page.text  # in the operator's navigation
        token = csrf(page.text)
        none = c.post(f"/inventory/{oa}/assign", data={"csrf_token": token, "unit_id": ""})
        assert none.status_code == 422 and "请选择虚拟机所属单位" in _error(none.text, f"f-unit-{oa}")
        assert "required" in _error(none.text, f"f-unit-{oa}") and 'aria-invalid="true"' in none.text
        word = c.post(f"/inventory/{oa}/assign", data={"csrf_token": token, "unit_id": "CS"})
        assert word.status_code == 422 and "exists" in _error(word.text, f"f-unit-{oa}")
        other = c.post(
            f"/inventory/{oa}/assign",
            data={"csrf_token": token, "unit_id": found["cs"], "system_id": found["me_system"]},
        )
        assert other.status_code == 422 and "belongs_to_unit" in _error(other.text, f"f-system-{oa}")
        assert "该信息系统不属于此单位" in _error(other.text, f"f-system-{oa}")
        # The choices are kept.
        assert re.search(rf'<option value="{found["me_system"]}" selected>', other.text)
        assert oa in _unregistered(live).values()  # nothing written
        no_csrf = c.post(f"/inventory/{oa}/assign", data={"unit_id": found["cs"]})
        assert no_csrf.status_code == 403
        done = c.post(
            f"/inventory/{oa}/assign",
            data={"csrf_token": token, "unit_id": found["cs"], "system_id": found["cs_system"]},
        )
        assert done.status_code == 303 and done.headers["location"] == f"/inventory?done=assigned&id={oa}"
        after = c.get(done.headers["location"]).text
        assert f"虚拟机 {oa} 已归属该单位" in after and oa not in _listed(after)
        again = c.post(f"/inventory/{oa}/assign", data={"csrf_token": token, "unit_id": found["me"]})
        assert again.status_code == 409 and "vm.assign" in again.text  # assigned already: said at the top
        assert (
            c.post("/inventory/999999/assign", data={"csrf_token": token, "unit_id": found["cs"]}).status_code
            == 404
        )
    vm = _vm(live, oa)
    assert vm["unit_id"] == found["cs"] and vm["system_id"] == found["cs_system"]
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        assert "legacy-oa-server" in c.get("/vms").text


def test_the_page_in_english(live: Live, found: dict[str, int]) -> None:
    lib = found["lib"]
    with as_user(live, "center-admin", Role.CENTER_ADMIN, headers={"Accept-Language": "en"}) as c:
        page = c.get("/inventory")
        assert page.status_code == 200 and "Unregistered VMs" in page.text
        bad = c.post(f"/inventory/{lib}/assign", data={"csrf_token": csrf(page.text), "unit_id": ""})
        assert bad.status_code == 422 and "Choose the unit the VM belongs to." in _error(
            bad.text, f"f-unit-{lib}"
        )
    with as_user(live, "cs-admin", Role.UNIT_ADMIN, headers={"Accept-Language": "en"}) as c:
        refused = c.get("/inventory")
        assert refused.status_code == 403 and "see the VMs no unit owns" in refused.text


def test_the_center_admin_assigns_in_chromium(
    live: Live, found: dict[str, int], browser: Browser, vendored: None, shots: Shots
) -> None:
    lib = found["lib"]
    for locale, width in (("en-US", 375), ("en-US", 1280), ("zh-CN", 375), ("zh-CN", 1280)):
        context = browser.new_context(
            locale=locale, viewport={"width": width, "height": 900}, bypass_csp=True
        )
        page = context.new_page()
        try:
            sign_in(page, live.base_url, "center-admin", Role.CENTER_ADMIN, "/inventory")
            shots.take(page, "inventory")
            assert axe_violations(page) == []
            if (locale, width) != ("zh-CN", 1280):
                continue
            item = page.locator(f"li.queue-item[data-vm='{lib}']")
            item.locator(f"#f-unit-{lib}").select_option(str(found["me"]))
            item.locator("button[data-action=assign]").click()
            dialog = page.locator("#confirm-dialog")
            expect(dialog).to_be_visible()
            dialog.locator("[data-confirm-ok]").click()
            page.wait_for_url(f"{live.base_url}/inventory?done=assigned&id={lib}")
            expect(page.locator(".flash-success")).to_contain_text(f"虚拟机 {lib} 已归属该单位")
            expect(page.locator(f"li.queue-item[data-vm='{lib}']")).to_have_count(0)
            shots.take(page, "inventory-assigned")
            assert axe_violations(page) == []
        finally:
            context.close()
    assert _vm(live, lib)["unit_id"] == found["me"]
