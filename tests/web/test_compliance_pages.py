"""隐患与通报 against the live demo portal: the center records a finding on a CS VM through the API;
CS's unit admin finds it on /findings with its deadline, opens it from the link its e-mail carries
(kit.pages), reports it fixed (an empty report is refused beside its field, nothing written); the
operator's retest fails it (open again, new deadline) then passes it (closed); ME's admin gets the
404 page for it; the list filters and sorts; the forbidden-service and notice pages answer; a form
without its CSRF token is refused; English too; one Chromium pass with axe-core."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from policies.roles import Role
from tests.web.conftest import Live
from tests.web.pagekit import as_user, csrf, sign_in
from tests.web.screens import Shots, axe_violations, shots
from vmportal.kit import pages

# The tests of this file build on one another (a module fixture, states reached in order): one
# worker runs them all, in order (make test uses --dist loadgroup).
pytestmark = pytest.mark.xdist_group("web-compliance-pages")

API = "/api/v1"
__all__ = ["shots"]


def _record(live: Live, vm_id: int, title: str, severity: str) -> int:
    with live.client() as c:
        r = c.post(
            f"{API}/findings",
            json={"vm_id": vm_id, "category": "vulnerability", "severity": severity, "title": title,
                  "target": "http://10.0.0.1:8080/struts"},
            headers=live.login("operator", Role.CENTER_OPERATOR),
        )  # fmt: skip
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


@pytest.fixture(scope="module")
def recorded(live: Live) -> dict[str, int]:
    with live.client() as c:
        vms = c.get(f"{API}/vms", headers=live.login("cs-admin", Role.UNIT_ADMIN)).json()["items"]
    vm_id = int(vms[0]["id"])
    return {
        "vm": vm_id,
        "struts": _record(live, vm_id, "Struts2 远程代码执行漏洞（S2-045）", "critical"),
        "weak": _record(live, vm_id, "SSH 弱口令", "low"),
    }


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-finding="(\d+)"', html)]


def test_unit_admin_reports_a_finding_fixed_and_the_center_retests_it(
    live: Live, recorded: dict[str, int]
) -> None:
    fid = recorded["struts"]
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        listing = c.get("/findings")
        assert listing.status_code == 200 and "Struts2" in listing.text and "严重" in listing.text
        assert {recorded["struts"], recorded["weak"]} <= set(_ids(listing.text))
        # Earliest deadline first by default: critical (24 h) before low (30 d).
        ids = _ids(listing.text)
        assert ids.index(recorded["struts"]) < ids.index(recorded["weak"])
        by_number = _ids(c.get("/findings", params={"sort": "id", "order": "desc"}).text)
        assert by_number.index(recorded["weak"]) < by_number.index(recorded["struts"])

        page = c.get(pages.finding(fid))  # the path the e-mail links to
        assert page.status_code == 200 and "待整改" in page.text and "报告整改完成" in page.text
        token = csrf(page.text)

        empty = c.post(f"/findings/{fid}/fix", data={"csrf_token": token, "note": "  "})
        assert (
            empty.status_code == 422 and "说明如何整改" in empty.text and 'aria-invalid="true"' in empty.text
        )
        assert "待整改" in c.get(pages.finding(fid)).text  # nothing written

        no_csrf = c.post(f"/findings/{fid}/fix", data={"note": "已升级"})
        assert no_csrf.status_code == 403

        done = c.post(f"/findings/{fid}/fix", data={"csrf_token": token, "note": "已升级 Struts 至 2.5.33"})
        assert done.status_code == 303 and done.headers["location"] == pages.finding(fid)
        after = c.get(pages.finding(fid)).text
        assert "单位已整改" in after and "已升级 Struts 至 2.5.33" in after
        # The unit cannot retest its own finding: the form is not offered.
        assert f'/findings/{fid}/retest"' not in after

    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        page = c.get(pages.finding(fid))
        token = csrf(page.text)
        assert f'/findings/{fid}/retest"' in page.text
        missing = c.post(f"/findings/{fid}/retest", data={"csrf_token": token, "passed": ""})
        assert missing.status_code == 422 and "请选择复测是否通过" in missing.text
        failed = c.post(
            f"/findings/{fid}/retest", data={"csrf_token": token, "passed": "no", "note": "仍可利用"}
        )
        assert failed.status_code == 303
        assert "待整改" in c.get(pages.finding(fid)).text  # open again, the unit told
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        token = csrf(c.get(pages.finding(fid)).text)
        assert (
            c.post(
                f"/findings/{fid}/fix", data={"csrf_token": token, "note": "已删除上传文件并升级"}
            ).status_code
            == 303
        )
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        token = csrf(c.get(pages.finding(fid)).text)
        assert (
            c.post(f"/findings/{fid}/retest", data={"csrf_token": token, "passed": "yes"}).status_code == 303
        )
        closed = c.get(pages.finding(fid)).text
        assert "已关闭" in closed and f'/findings/{fid}/fix"' not in closed
    with live.client() as c:  # the API reads the same record
        r = c.get(f"{API}/findings/{fid}", headers=live.login("operator", Role.CENTER_OPERATOR))
        assert r.json()["state"] == "closed"


def test_another_unit_gets_the_404_page_and_a_lead_is_told_why_not(
    live: Live, recorded: dict[str, int]
) -> None:
    with as_user(live, "me-admin", Role.UNIT_ADMIN) as c:
        other = c.get(pages.finding(recorded["weak"]))
        assert other.status_code == 404 and "SSH 弱口令" not in other.text
        assert recorded["weak"] not in _ids(c.get("/findings").text)
        token = csrf(c.get("/findings").text)
        assert (
            c.post(f"/findings/{recorded['weak']}/fix", data={"csrf_token": token, "note": "x"}).status_code
            == 404
        )
    with as_user(live, "cs-lead", Role.UNIT_LEAD) as c:
        page = c.get(pages.finding(recorded["weak"]))
        assert page.status_code == 200 and "由本单位网络安全管理员（或信息中心）报告整改完成" in page.text
        assert f'/findings/{recorded["weak"]}/fix"' not in page.text


def test_filters_notices_and_violations_pages_answer(live: Live, recorded: dict[str, int]) -> None:
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        assert _ids(c.get("/findings", params={"state": "closed", "overdue": "1"}).text) == []
        open_ones = _ids(c.get("/findings", params={"state": "open"}).text)
        assert recorded["weak"] in open_ones
        for path, words in (("/notices", "通报"), ("/violations", "《虚拟机服务协议书》第6条")):
            r = c.get(path)
            assert r.status_code == 200 and words in r.text, path
        assert c.get("/notices/999999").status_code == 404 and c.get("/violations/999999").status_code == 404
        home = c.get("/")
        assert 'href="/findings"' in home.text and 'href="/notices"' in home.text


def test_the_same_pages_in_english(live: Live, recorded: dict[str, int]) -> None:
    with as_user(live, "cs-admin", Role.UNIT_ADMIN, headers={"Accept-Language": "en"}) as c:
        page = c.get(pages.finding(recorded["weak"]))
        assert page.status_code == 200 and "To be fixed" in page.text and "Report it fixed" in page.text
        assert "Security findings" in c.get("/findings").text
        bad = c.post(f"/findings/{recorded['weak']}/fix", data={"csrf_token": csrf(page.text), "note": ""})
        assert bad.status_code == 422 and "Say how the finding was fixed" in bad.text


def test_findings_pages_in_chromium_pass_axe(
    live: Live, recorded: dict[str, int], browser: Browser, vendored: None, shots: Shots
) -> None:
    for locale, width in (("zh-CN", 375), ("en-US", 1280)):
        context = browser.new_context(
            locale=locale, viewport={"width": width, "height": 800}, bypass_csp=True
        )
        page = context.new_page()
        try:
            sign_in(page, live.base_url, "cs-admin", Role.UNIT_ADMIN, "/findings")
            expect(page.locator(f"tr[data-finding='{recorded['weak']}']")).to_be_visible()
            shots.both(page, "findings")
            assert axe_violations(page) == []
            page.locator(f"tr[data-finding='{recorded['weak']}'] td a").first.click()
            page.wait_for_url(f"{live.base_url}/findings/{recorded['weak']}")
            expect(page.locator("#f-note")).to_be_visible()
            shots.both(page, "finding")
            assert axe_violations(page) == []
        finally:
            context.close()
