"""安全事件 against the live demo portal: an IDS posts a trojan's C2 traffic for CS's VMs (a bearer
Suricata source the center admin registers through the API); the VMs are contained. CS's unit admin
finds the incident on /incidents (ME's admin does not, and gets the 404 page and a 404 for a post),
the lead is told before trying why the report is not theirs (rule incident.submit_rectification); an
empty report and a refused attachment are shown beside their fields with the rule, the text kept,
nothing written; a form without its CSRF token is refused; the report with a text attachment goes
in. The unit admin may not verify it (rule incident.accept); the operator's reject without a reason
is refused beside the field; the operator rejects it with a reason (the VM stays suspended, the unit
reads why and reports again), then verifies the new one and the VM is released (the restore task,
confirmed on the simulator: the containment is released, the incident closes, the VM's security
state is restored). A later false positive is dismissed by the operator (a reason required), not by
the unit (rule incident.dismiss), and the VM is back to normal. English too; one Chromium pass with
axe-core (no serious or critical violation), the unit admin submitting a report in the browser and
the operator verifying it, screenshots at desktop and phone width under .cache/screenshots (tests/web/screens.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Browser, FilePayload, Page, expect

from policies.roles import Role
from tests.production.harness import wait_for
from tests.security.helpers import suricata_c2
from tests.web.conftest import Live
from tests.web.pagekit import as_user, csrf
from tests.web.screens import Shots, axe_violations, shots
from vmportal.app.demo import PASSWORDS
from vmportal.kit import pages

# The tests of this file build on one another (a module fixture, states reached in order): one
# worker runs them all, in order (make test uses --dist loadgroup).
pytestmark = pytest.mark.xdist_group("web-incident-pages")

API = "/api/v1"
__all__ = ["shots"]


def _incident(live: Live, incident_id: int) -> dict[str, Any]:
    with live.client() as c:
        r = c.get(f"{API}/incidents/{incident_id}", headers=live.login("operator", Role.CENTER_OPERATOR))
        assert r.status_code == 200, r.text
        return dict(r.json())


def _vm(live: Live, vm_id: int) -> dict[str, Any]:
    with live.client() as c:
        r = c.get(f"{API}/vms/{vm_id}", headers=live.login("operator", Role.CENTER_OPERATOR))
        assert r.status_code == 200, r.text
        return dict(r.json())


def _contained(live: Live, vm_id: int) -> int:
    """The id of the VM's incident once the hypervisor confirmed its containment."""
    headers = live.login("operator", Role.CENTER_OPERATOR)

    def found() -> int | None:
        with live.client() as c:
            items = c.get(f"{API}/incidents", params={"vm_id": vm_id}, headers=headers).json()["items"]
        return next((int(i["id"]) for i in items if i["state"] == "contained"), None)

    return wait_for(found, timeout=60, what=f"the containment of VM {vm_id}")


@pytest.fixture(scope="module")
def contained(live: Live) -> dict[str, int]:
    """CS's two VMs contained for a trojan, each with its incident."""
    with live.client() as c:
        vms = c.get(f"{API}/vms", headers=live.login("cs-admin", Role.UNIT_ADMIN)).json()["items"]
        vms = sorted(vms, key=lambda v: v["id"])[:2]
        source = c.post(
            f"{API}/alert-sources",
            json={"name": "campus-ids", "kind": "suricata", "auth": "bearer"},
            headers=live.login("center-admin", Role.CENTER_ADMIN),
        )
        assert source.status_code == 201, source.text
        for vm in vms:
            posted = c.post(
                f"{API}/alerts/campus-ids",
                content=json.dumps(suricata_c2(vm["ip_address"])).encode(),
                headers={
                    "Authorization": f"Bearer {source.json()['token']}",
                    "Content-Type": "application/json",
                },
            )
            assert posted.status_code == 202, posted.text
    first, second = (int(v["id"]) for v in vms)
    return {
        "vm": first,
        "incident": _contained(live, first),
        "vm2": second,
        "incident2": _contained(live, second),
    }


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-incident="(\d+)"', html)]


def test_only_the_units_own_incidents(live: Live, contained: dict[str, int]) -> None:
    iid = contained["incident"]
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        listing = c.get("/incidents")
        assert listing.status_code == 200 and "安全事件" in listing.text
        assert {iid, contained["incident2"]} <= set(_ids(listing.text))
        assert "已处置（虚拟机已暂停）" in listing.text and "木马" in listing.text
        # The state filter: none of CS's incidents is closed yet.
        assert _ids(c.get("/incidents", params={"show": "closed"}).text) == []
        assert iid in _ids(c.get("/incidents", params={"show": "contained"}).text)
        assert iid in _ids(c.get("/incidents", params={"show": "nonsense"}).text)  # the default
        assert _ids(c.get("/incidents", params={"show": "containment_failed"}).text) == []
        assert "已生效（虚拟化平台已确认）" in listing.text  # the containment column
        page = c.get(pages.incident(iid))  # the path the incident mails link to
        assert page.status_code == 200 and "提交整改报告" in page.text
        assert 'data-state="confirmed"' in page.text and "断开虚拟机网络" in page.text  # the containment
        assert f"/vms/{contained['vm']}" in page.text
        assert f'/incidents/{iid}/dismiss"' not in page.text  # the center's, not offered
        status = c.get(f"/incidents/{iid}/status", headers={"HX-Request": "true"})
        assert (
            status.status_code == 200
            and "<html" not in status.text
            and 'hx-trigger="every 5s"' in status.text
        )
    with as_user(live, "me-admin", Role.UNIT_ADMIN) as c:
        listing = c.get("/incidents")
        assert listing.status_code == 200 and iid not in _ids(listing.text)
        other = c.get(f"/incidents/{iid}")
        assert other.status_code == 404 and "木马" not in other.text
        assert c.get(f"/incidents/{iid}/status").status_code == 404
        token = csrf(listing.text)
        posted = c.post(f"/incidents/{iid}/rectification", data={"csrf_token": token, "text": "不是我们的"})
        assert posted.status_code == 404
    assert _incident(live, iid)["state"] == "contained"  # nothing written
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        board = c.get("/incidents")
        assert board.status_code == 200 and "事件看板" in board.text
        assert {iid, contained["incident2"]} <= set(_ids(board.text))
        assert 'href="/incidents"' in board.text and 'href="/queue"' in board.text  # the navigation
    with as_user(live, "auditor", Role.AUDITOR) as c:  # reads the board, acts on nothing
        board = c.get("/incidents")
        assert board.status_code == 200 and iid in _ids(board.text) and 'href="/queue"' not in board.text
        page = c.get(f"/incidents/{iid}")
        assert page.status_code == 200 and '<form method="post" action="/incidents' not in page.text


def test_the_lead_is_told_why_not(live: Live, contained: dict[str, int]) -> None:
    iid = contained["incident"]
    with as_user(live, "cs-lead", Role.UNIT_LEAD) as c:
        page = c.get(f"/incidents/{iid}")
        assert page.status_code == 200
        assert (
            "incident.submit_rectification" in page.text and "整改报告由本单位网络安全管理员提交" in page.text
        )
        assert f'/incidents/{iid}/rectification"' not in page.text
        refused = c.post(f"/incidents/{iid}/rectification", data={"csrf_token": csrf(page.text), "text": "x"})
        assert refused.status_code == 403 and "整改报告由本单位的网络安全管理员提交" in refused.text
    assert _incident(live, iid)["state"] == "contained"


def test_unit_submits_the_center_verifies_and_the_vm_is_released(
    live: Live, contained: dict[str, int]
) -> None:
    iid, vm_id = contained["incident"], contained["vm"]
    assert _vm(live, vm_id)["security_state"] == "suspended"
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        token = csrf(c.get(f"/incidents/{iid}").text)
        url = f"/incidents/{iid}/rectification"
        empty = c.post(url, data={"csrf_token": token, "text": "   "}, files={"files": ("", b"", "")})
        assert empty.status_code == 422 and "请说明发现了什么、整改了什么" in empty.text
        assert "required" in empty.text and 'aria-invalid="true"' in empty.text
        exe = c.post(
            url,
            data={"csrf_token": token, "text": "已清除木马"},
            files={"files": ("tool.exe", b"MZ\x90\x00", "application/x-msdownload")},
        )
        assert exe.status_code == 415 and "content_type" in exe.text and "不接受的文件类型" in exe.text
        assert ">已清除木马</textarea>" in exe.text  # the text kept
        assert _incident(live, iid)["state"] == "contained"  # nothing written
        no_csrf = c.post(url, data={"text": "已清除木马"}, files={"files": ("", b"", "")})
        assert no_csrf.status_code == 403
        done = c.post(
            url,
            data={"csrf_token": token, "text": "已清除木马程序，重装系统并更换全部口令。"},
            files={"files": ("report.txt", "整改说明：已重装。".encode(), "text/plain")},
        )
        assert done.status_code == 303 and done.headers["location"] == f"/incidents/{iid}?done=submitted"
        after = c.get(done.headers["location"]).text
        assert "整改报告已提交" in after and "已清除木马程序" in after and "report.txt" in after
        attachment = re.search(rf'href="(/incidents/{iid}/rectifications/\d+/attachments/\d+)"', after)
        assert attachment is not None
        assert c.get(attachment.group(1)).content == "整改说明：已重装。".encode()
        assert "等待信息中心核实" in after  # the timeline
        rect_id = int(re.search(r'data-rectification="(\d+)"', after).group(1))  # type: ignore[union-attr]
        # The unit may not verify its own report: not offered, and refused naming the rule.
        assert "/accept" not in after
        refused = c.post(f"/incidents/{iid}/rectifications/{rect_id}/accept", data={"csrf_token": token})
        assert refused.status_code == 403 and "incident.accept" in refused.text
    assert _incident(live, iid)["state"] == "rectification_submitted"
    assert _vm(live, vm_id)["security_state"] == "rectification_submitted"

    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        page = c.get(f"/incidents/{iid}")
        token = csrf(page.text)
        assert f"/rectifications/{rect_id}/accept" in page.text and "report.txt" in page.text
        no_reason = c.post(f"/incidents/{iid}/rectifications/{rect_id}/reject", data={"csrf_token": token})
        assert (
            no_reason.status_code == 422 and "请填写理由" in no_reason.text and "required" in no_reason.text
        )
        assert _incident(live, iid)["state"] == "rectification_submitted"
        rejected = c.post(
            f"/incidents/{iid}/rectifications/{rect_id}/reject",
            data={"csrf_token": token, "reason": "流量监测显示仍有外联"},
        )
        assert (
            rejected.status_code == 303 and rejected.headers["location"] == f"/incidents/{iid}?done=rejected"
        )
        assert "整改报告已驳回" in c.get(rejected.headers["location"]).text
    assert _incident(live, iid)["state"] == "contained"
    assert _vm(live, vm_id)["security_state"] == "suspended"

    with as_user(live, "me-admin", Role.UNIT_ADMIN) as c:  # another unit: not even the attachment
        assert c.get(attachment.group(1)).status_code == 404
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        told = c.get(f"/incidents/{iid}").text
        assert "信息中心意见：流量监测显示仍有外联" in told and "已驳回" in told
        assert f'/incidents/{iid}/rectification"' in told  # the unit reports again
        again = c.post(
            f"/incidents/{iid}/rectification",
            data={"csrf_token": csrf(told), "text": "已封堵外联端口并复查全部进程。"},
            files={"files": ("", b"", "")},
        )
        assert again.status_code == 303
        ids = [int(i) for i in re.findall(r'data-rectification="(\d+)"', c.get(f"/incidents/{iid}").text)]
        second = max(ids)
        assert second != rect_id

    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        token = csrf(c.get(f"/incidents/{iid}").text)
        # The first report was decided: it is refused naming the rule, nothing written.
        old = c.post(f"/incidents/{iid}/rectifications/{rect_id}/accept", data={"csrf_token": token})
        assert old.status_code == 409 and "incident.accept" in old.text
        accepted = c.post(
            f"/incidents/{iid}/rectifications/{second}/accept",
            data={"csrf_token": token, "comment": "复核通过"},
        )
        assert accepted.status_code == 303, accepted.text
        assert "整改报告已核实" in c.get(accepted.headers["location"]).text
        # Again: the report is no longer waiting (the state moved on), the refusal says so.
        twice = c.post(f"/incidents/{iid}/rectifications/{second}/accept", data={"csrf_token": token})
        assert twice.status_code == 409 and "incident.accept" in twice.text
    # Released: the restore task reconnects the VM on the simulator, then the incident closes.
    wait_for(lambda: _incident(live, iid)["state"] == "closed", timeout=60, what="the incident closed")
    released = _incident(live, iid)
    assert released["containment_state"] == "released" and released["restore_state"] == "confirmed"
    assert _vm(live, vm_id)["security_state"] == "restored"
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        closed = c.get(f"/incidents/{iid}").text
        assert "已关闭" in closed and "复核通过" in closed
        assert iid in _ids(c.get("/incidents", params={"show": "closed"}).text)
        assert iid not in _ids(c.get("/incidents").text)  # the default: still open ones


def test_the_center_dismisses_a_false_positive(live: Live, contained: dict[str, int]) -> None:
    """After the first incident closed, a new alert for the VM opens a new one; the operator judges
    it a false positive (a reason required, beside its field), the VM is restored."""
    vm_id = contained["vm"]
    assert _incident(live, contained["incident"])["state"] == "closed"
    with live.client() as c:
        vm = _vm(live, vm_id)
        source = c.post(
            f"{API}/alert-sources",
            json={"name": "campus-ids-2", "kind": "suricata", "auth": "bearer"},
            headers=live.login("center-admin", Role.CENTER_ADMIN),
        ).json()
        posted = c.post(
            f"{API}/alerts/campus-ids-2",
            content=json.dumps(suricata_c2(vm["ip_address"])).encode(),
            headers={"Authorization": f"Bearer {source['token']}", "Content-Type": "application/json"},
        )
        assert posted.status_code == 202, posted.text
    iid = _contained(live, vm_id)
    assert iid != contained["incident"]
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        page = c.get(f"/incidents/{iid}")
        assert f'/incidents/{iid}/dismiss"' not in page.text
        refused = c.post(f"/incidents/{iid}/dismiss", data={"csrf_token": csrf(page.text), "reason": "误报"})
        assert refused.status_code == 403 and "incident.dismiss" in refused.text
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        page = c.get(f"/incidents/{iid}")
        assert f'/incidents/{iid}/dismiss"' in page.text
        token = csrf(page.text)
        empty = c.post(f"/incidents/{iid}/dismiss", data={"csrf_token": token, "reason": ""})
        assert (
            empty.status_code == 422
            and "请填写理由" in empty.text
            and 'id="f-dismiss-reason-error"' in empty.text
        )
        assert _incident(live, iid)["state"] == "contained"
        done = c.post(
            f"/incidents/{iid}/dismiss", data={"csrf_token": token, "reason": "渗透测试流量，已报备"}
        )
        assert done.status_code == 303 and "该事件已判定为误报" in c.get(done.headers["location"]).text
    wait_for(lambda: _incident(live, iid)["state"] == "dismissed", timeout=60, what="the incident dismissed")
    assert _incident(live, iid)["containment_state"] == "released"
    assert _vm(live, vm_id)["security_state"] == "normal"  # a false positive leaves no mark
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        shown = c.get(f"/incidents/{iid}").text
        assert "已判定为误报" in shown and "渗透测试流量，已报备" in shown


def test_the_same_pages_in_english(live: Live, contained: dict[str, int]) -> None:
    iid = contained["incident2"]
    with as_user(live, "cs-admin", Role.UNIT_ADMIN, headers={"Accept-Language": "en"}) as c:
        page = c.get(f"/incidents/{iid}")
        assert page.status_code == 200 and "Contained (VM suspended)" in page.text
        assert "Submit a rectification report" in page.text and "Trojan" in page.text
        bad = c.post(
            f"/incidents/{iid}/rectification",
            data={"csrf_token": csrf(page.text), "text": ""},
            files={"files": ("", b"", "")},
        )
        assert bad.status_code == 422 and "Describe what was found and what was fixed" in bad.text
    with as_user(live, "cs-lead", Role.UNIT_LEAD, headers={"Accept-Language": "en"}) as c:
        lead = c.get(f"/incidents/{iid}").text
        assert "only the unit&#39;s security administrator submits its rectification report" in lead


def _login(page: Page, base: str, username: str, role: Role, next_path: str) -> None:
    page.goto(f"{base}/login?next={next_path}")
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORDS[role])
    page.locator("#password").press("Enter")
    page.wait_for_url(f"{base}{next_path}")


def test_a_report_submitted_and_verified_in_chromium(
    live: Live, contained: dict[str, int], browser: Browser, vendored: None, shots: Shots
) -> None:
    iid = contained["incident2"]
    context = browser.new_context(locale="zh-CN", viewport={"width": 375, "height": 800}, bypass_csp=True)
    page = context.new_page()
    try:
        _login(page, live.base_url, "cs-admin", Role.UNIT_ADMIN, "/incidents")
        expect(page.locator(f"tr[data-incident='{iid}']")).to_be_visible()
        shots.both(page, "incidents")
        assert axe_violations(page) == []
        page.locator(f"tr[data-incident='{iid}'] td a").first.click()
        page.wait_for_url(f"{live.base_url}/incidents/{iid}")
        page.locator("#f-text").fill("已删除恶意程序并修补漏洞。")
        attachment: FilePayload = {"name": "fix.txt", "mimeType": "text/plain", "buffer": "已修补".encode()}
        page.locator("#f-files").set_input_files(files=[attachment])
        page.locator(".rectification-form button[type=submit]").click()
        page.wait_for_url(f"{live.base_url}/incidents/{iid}?done=submitted")
        expect(page.locator(".flash-success")).to_contain_text("整改报告已提交")
        expect(page.locator(".incident-state")).to_contain_text("整改报告待核实")
        shots.both(page, "incident-submitted")
        assert axe_violations(page) == []
    finally:
        context.close()

    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    try:
        _login(page, live.base_url, "operator", Role.CENTER_OPERATOR, f"/incidents/{iid}")
        assert axe_violations(page) == []
        page.locator(".review form").first.locator("button[type=submit]").click()
        dialog = page.locator("#confirm-dialog")
        expect(dialog).to_be_visible()
        dialog.locator("[data-confirm-ok]").click()
        page.wait_for_url(f"{live.base_url}/incidents/{iid}?done=accepted")
        expect(page.locator(".flash-success")).to_contain_text("verified")
        assert axe_violations(page) == []
        # The status block refreshes itself: the restore confirmed, the incident closes, no reload.
        expect(page.locator("#incident-status .incident-state")).to_have_attribute(
            "data-state", "closed", timeout=60_000
        )
        expect(page.locator("#incident-status .restore-state")).to_contain_text("The VM is restored")
        shots.both(page, "incident-verified")
        page.goto(f"{live.base_url}/incidents?show=all")
        expect(page.locator(f"tr[data-incident='{iid}']")).to_contain_text("Closed")
        shots.both(page, "incident-board")
        assert axe_violations(page) == []
    finally:
        context.close()
    wait_for(lambda: _incident(live, iid)["state"] == "closed", timeout=60, what="the incident closed")
    assert _vm(live, contained["vm2"])["security_state"] == "restored"
