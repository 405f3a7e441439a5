"""单位信息 against the live demo portal: CS's unit admin reads its paperwork (complete), its contact
registry (names, staff numbers, mobiles masked as the API masks them) and its information systems
with their VMs; the library's admin reads what is missing (the signed VM service agreement) in
words; the lead reads the same page, with nothing to change; ME's admin gets the 404 page for CS's
unit; the center's roles open any unit (the center admin sees the mobiles in full, as in the API);
English too; one Chromium pass per language with axe-core and screenshots."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from policies.roles import Role
from tests.web.conftest import Live
from tests.web.pagekit import as_user
from tests.web.screens import Shots, axe_violations, shots
from vmportal.app.demo import PASSWORDS

API = "/api/v1"
__all__ = ["shots"]


@pytest.fixture(scope="module")
def unit_ids(live: Live) -> dict[str, int]:
    with live.client() as c:
        units = c.get(f"{API}/units", headers=live.login("center-admin", Role.CENTER_ADMIN)).json()
    return {u["code"]: int(u["id"]) for u in units}


def _vm_counts(html: str) -> dict[int, int]:
    rows = re.findall(r'<tr data-system="(\d+)">.*?<td class="num vm-count">(\d+)</td>', html, re.S)
    return {int(s): int(n) for s, n in rows}


def test_the_unit_admin_reads_paperwork_registry_and_systems(live: Live, unit_ids: dict[str, int]) -> None:
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        home = c.get("/")
        assert 'href="/unit"' in home.text  # in the unit's navigation
        page = c.get("/unit")
        assert page.status_code == 200, page.text
        text = page.text
        assert "计算机科学与技术学院" in text and 'data-complete="yes"' in text and "材料齐全" in text
        # The registry: both rows, staff number, the mobile masked as the API masks it.
        assert "李娜" in text and "王建国" in text and "T2008117" in text
        assert "139****1002" in text and "13952161002" not in text
        assert "320311" not in text  # no ID number on the page at all
        with live.client() as api:
            contacts = api.get(
                f"{API}/units/{unit_ids['CS']}/contacts", headers=live.login("cs-admin", Role.UNIT_ADMIN)
            ).json()
        assert {str(x["mobile"]) for x in contacts} <= set(
            re.findall(r'<td class="mobile">([^<]*)</td>', text)
        )
        # The systems with their purpose, domain and VMs (the demo's two delivered VMs, one each).
        assert "计算机学院课程实验平台" in text and "lab.cs.example.edu.cn" in text and "教学" in text
        assert sorted(_vm_counts(text).values()) == [1, 1]
        assert "<form" not in text.split('id="main"', 1)[1].split("</main>")[0]  # nothing to change here
        # Its own unit under its number answers too; another unit's does not.
        assert c.get(f"/unit/{unit_ids['CS']}").status_code == 200
        other = c.get(f"/unit/{unit_ids['ME']}")
        assert other.status_code == 404 and "赵敏" not in other.text and "机电工程学院" not in other.text


def test_the_library_reads_what_is_missing(live: Live, unit_ids: dict[str, int]) -> None:
    with as_user(live, "lib-admin", Role.UNIT_ADMIN) as c:
        page = c.get("/unit")
        assert page.status_code == 200 and 'data-complete="no"' in page.text
        missing = re.search(r'<ul class="paperwork-missing">(.*?)</ul>', page.text, re.S)
        assert missing is not None and "已签署的《虚拟机服务协议书》" in missing.group(1)
        assert "《网络安全承诺书》" not in missing.group(1)  # that one is on file
        assert "paperwork" in page.text and "暂不能申请虚拟机" in page.text
    with as_user(live, "lib-lead", Role.UNIT_LEAD) as c:  # the lead reads the same, nothing to change
        page = c.get("/unit")
        assert page.status_code == 200 and "已签署的《虚拟机服务协议书》" in page.text
        assert "<form" not in page.text.split('id="main"', 1)[1].split("</main>")[0]
        assert c.get(f"/unit/{unit_ids['CS']}").status_code == 404


def test_the_center_opens_any_unit(live: Live, unit_ids: dict[str, int]) -> None:
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        listing = c.get("/unit")
        assert listing.status_code == 200
        assert {unit_ids["CS"], unit_ids["ME"], unit_ids["LIB"]} <= {
            int(i) for i in re.findall(r'<tr data-unit="(\d+)">', listing.text)
        }
        page = c.get(f"/unit/{unit_ids['ME']}")
        assert page.status_code == 200 and "赵敏" in page.text and "151****2002" in page.text
        assert c.get("/unit/999999").status_code == 404
    with as_user(live, "center-admin", Role.CENTER_ADMIN) as c:
        page = c.get(f"/unit/{unit_ids['ME']}")
        assert page.status_code == 200 and "15162162002" in page.text  # in clear, as in the API


def test_the_same_page_in_english(live: Live, unit_ids: dict[str, int]) -> None:
    with as_user(live, "lib-admin", Role.UNIT_ADMIN, headers={"Accept-Language": "en"}) as c:
        page = c.get("/unit")
        assert page.status_code == 200 and "University Library" in page.text
        assert "The signed VM service agreement" in page.text and "Security contact registry" in page.text
        assert "Management" in page.text and "cannot request VMs yet" in page.text


def test_the_unit_page_in_chromium_passes_axe(
    live: Live, browser: Browser, vendored: None, shots: Shots
) -> None:
    for locale, width, username in (("zh-CN", 375, "lib-admin"), ("en-US", 1280, "cs-lead")):
        context = browser.new_context(
            locale=locale, viewport={"width": width, "height": 800}, bypass_csp=True
        )
        page = context.new_page()
        try:
            page.goto(f"{live.base_url}/login?next=/unit")
            page.locator("#username").fill(username)
            page.locator("#password").fill(
                PASSWORDS[Role.UNIT_ADMIN if "admin" in username else Role.UNIT_LEAD]
            )
            page.locator("#password").press("Enter")
            page.wait_for_url(f"{live.base_url}/unit")
            expect(page.locator("#contacts-heading")).to_be_visible()
            shots.both(page, "unit")
            assert axe_violations(page) == []
        finally:
            context.close()
