"""The unit lead's pages against the live demo portal. 待确认 (/endorsements): while the center does not
require endorsement it says so and offers nothing; once the center admin turns it on, the lead finds
the unit's submitted requests with 确认 and 不同意; endorsing passes a request to the center, declining
needs a reason (refused beside its field otherwise, nothing written) and ends it rejected with the
reason shown to the unit's admin; a second decision is refused naming the state; a form without its
CSRF token is refused; the unit's admin is refused the page and the action naming the rule; another
unit's lead gets the 404 page. The unit's other pages are read-only for the lead (no form posts
anything but the logout). English too; in Chromium the lead endorses through the confirmation
dialog and declines at phone width, axe-core on each (no serious or critical violation),
screenshots at desktop and phone width (tests/web/screens.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from policies.roles import Role
from tests.web.conftest import Live
from tests.web.pagekit import as_user
from tests.web.screens import DESKTOP, PHONE, WIDTHS, Shots, axe_violations, shots
from vmportal.app.demo import PASSWORDS

pytestmark = pytest.mark.xdist_group("web-lead-pages")

API = "/api/v1"
__all__ = ["shots"]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found is not None
    return found.group(1)


def _request(live: Live, rid: int) -> dict[str, Any]:
    with live.client() as c:
        r = c.get(f"{API}/requests/{rid}", headers=live.login("cs-admin", Role.UNIT_ADMIN))
        assert r.status_code == 200, r.text
        return dict(r.json())


def _waiting(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<li class="queue-item" data-request="(\d+)"', html)]


def _submit(live: Live, hostname: str) -> int:
    admin = live.login("cs-admin", Role.UNIT_ADMIN)
    with live.client() as c:
        connection = int(c.get(f"{API}/vms", headers=admin).json()["items"][0]["connection_id"])
        body = {
            "system_name": f"负责人确认测试 {hostname}",
            "purpose": "teaching",
            "description": "本科课程实验",
            "hostname": hostname,
            "connection_id": connection,
            "template_ref": "tpl-rocky-9",
            "vcpus": 1,
            "memory_gib": 2,
            "disk_gib": 40,
        }
        r = c.post(f"{API}/requests", json=body, headers=admin)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


def test_nothing_to_endorse_while_the_center_does_not_require_it(live: Live) -> None:
    rid = _submit(live, "lead-off")
    with as_user(live, "cs-lead", Role.UNIT_LEAD) as c:
        page = c.get("/endorsements")
        assert page.status_code == 200 and 'data-endorsement="off"' in page.text
        assert "不要求单位负责人确认" in page.text and _waiting(page.text) == []
        r = c.post(f"/endorsements/{rid}/endorse", data={"csrf_token": _csrf(page.text)})
        assert r.status_code == 409 and "不要求" in r.text
    assert _request(live, rid)["state"] == "submitted"


@pytest.fixture(scope="module")
def filed(live: Live) -> dict[str, int]:
    with live.client() as c:
        r = c.put(
            f"{API}/settings",
            json={"endorsement_required": True},
            headers=live.login("center-admin", Role.CENTER_ADMIN),
        )
        assert r.status_code == 200, r.text
    return {name: _submit(live, f"lead-{name}") for name in ("endorse", "decline", "browser", "phone")}


def test_the_lead_endorses_and_declines(live: Live, filed: dict[str, int]) -> None:
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:  # the unit's admin: refused naming the rule
        page = c.get("/endorsements")
        assert page.status_code == 403 and "request.endorse" in page.text
        assert 'href="/endorsements"' not in c.get("/vms").text
        r = c.post(f"/endorsements/{filed['endorse']}/endorse", data={"csrf_token": _csrf(page.text)})
        assert r.status_code == 403 and "request.endorse" in r.text
    assert _request(live, filed["endorse"])["state"] == "submitted"

    with as_user(live, "me-lead", Role.UNIT_LEAD) as c:  # another unit's lead: not there at all
        page = c.get("/endorsements")
        assert page.status_code == 200 and not set(_waiting(page.text)) & set(filed.values())
        r = c.post(f"/endorsements/{filed['endorse']}/endorse", data={"csrf_token": _csrf(page.text)})
        assert r.status_code == 404 and "无权查看" in r.text

    with as_user(live, "cs-lead", Role.UNIT_LEAD) as c:
        page = c.get("/endorsements")
        assert page.status_code == 200 and "待我确认" in page.text and 'href="/endorsements"' in page.text
        assert 'data-endorsement="on"' in page.text
        assert set(filed.values()) <= set(_waiting(page.text))
        token = _csrf(page.text)
        rid = filed["decline"]

        assert c.post(f"/endorsements/{rid}/decline", data={"reason": "不需要"}).status_code == 403  # CSRF
        blank = c.post(f"/endorsements/{rid}/decline", data={"csrf_token": token, "reason": "  "})
        assert blank.status_code == 422 and "请填写理由" in blank.text and "required" in blank.text
        assert 'aria-invalid="true"' in blank.text
        assert _request(live, rid)["state"] == "submitted"

        declined = c.post(
            f"/endorsements/{rid}/decline", data={"csrf_token": token, "reason": "本学期暂不需要"}
        )
        assert declined.status_code == 303
        assert declined.headers["location"] == f"/endorsements?done=declined&id={rid}"
        assert f"申请 {rid} 已不同意" in c.get(declined.headers["location"]).text
        assert _request(live, rid)["state"] == "rejected"

        rid = filed["endorse"]
        endorsed = c.post(f"/endorsements/{rid}/endorse", data={"csrf_token": token})
        assert endorsed.status_code == 303
        after = c.get(endorsed.headers["location"]).text
        assert f"申请 {rid} 已确认" in after and rid not in _waiting(after)
        assert filed["decline"] not in _waiting(after)
        assert _request(live, rid)["state"] == "endorsed"
        again = c.post(f"/endorsements/{rid}/decline", data={"csrf_token": token, "reason": "改主意"})
        assert again.status_code == 409 and "单位负责人已确认" in again.text
        assert _request(live, rid)["state"] == "endorsed"

    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:  # the admin reads the lead's reason
        page = c.get(f"/requests/{filed['decline']}")
        assert "已驳回" in page.text and "本学期暂不需要" in page.text
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:  # the endorsed one reaches the queue
        queue = c.get("/queue").text
        assert filed["endorse"] in _waiting(queue) and filed["decline"] not in _waiting(queue)


def test_the_lead_page_in_english(live: Live, filed: dict[str, int]) -> None:
    with as_user(live, "cs-lead", Role.UNIT_LEAD, headers={"Accept-Language": "en"}) as c:
        page = c.get("/endorsements")
        assert "Awaiting my endorsement" in page.text and "Reason for declining" in page.text
        rid = filed["browser"]
        r = c.post(f"/endorsements/{rid}/decline", data={"csrf_token": _csrf(page.text), "reason": ""})
        assert r.status_code == 422 and "Give the reason; it is told to the unit" in r.text
    assert _request(live, filed["browser"])["state"] == "submitted"


def _posting_forms(html: str) -> list[str]:
    """The forms that post anything but the logout."""
    forms = re.findall(r'<form[^>]*method="post"[^>]*action="([^"]*)"', html)
    return [f for f in forms if not f.endswith("/logout")]


def test_the_units_other_pages_are_read_only_for_the_lead(live: Live, filed: dict[str, int]) -> None:
    with live.client() as c:
        vm_id = c.get(f"{API}/vms", headers=live.login("cs-admin", Role.UNIT_ADMIN)).json()["items"][0]["id"]
    pages = [
        "/",
        "/vms",
        f"/vms/{vm_id}",
        "/requests",
        f"/requests/{filed['endorse']}",
        "/unit",
        "/incidents",
    ]
    pages += ["/findings", "/violations", "/account"]
    for language in ("zh-CN", "en"):
        with as_user(live, "cs-lead", Role.UNIT_LEAD, headers={"Accept-Language": language}) as c:
            for path in pages:
                r = c.get(path)
                assert r.status_code == 200, (path, r.status_code)
                assert _posting_forms(r.text) == [] or path == "/account", (path, _posting_forms(r.text))
            assert 'href="/requests/new"' not in c.get("/vms").text
            assert 'data-credentials="available"' not in c.get(f"/vms/{vm_id}").text


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n" + b" " * 2048


def _documents(live: Live) -> list[dict[str, Any]]:
    headers = live.login("cs-lead", Role.UNIT_LEAD)
    with live.client() as c:
        me = c.get(f"{API}/auth/me", headers=headers).json()
        r = c.get(f"{API}/units/{me['unit_id']}/documents", params={"current": True}, headers=headers)
        assert r.status_code == 200, r.text
        return list(r.json())


def test_the_lead_files_a_signed_paper(live: Live) -> None:
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:  # the admin reads, the lead files
        assert 'href="/unit/documents"' not in c.get("/unit").text
        page = c.get("/unit/documents")
        assert page.status_code == 403 and "paperwork.file_signed" in page.text
    before = _documents(live)
    with as_user(live, "cs-lead", Role.UNIT_LEAD) as c:
        assert 'href="/unit/documents"' in c.get("/unit").text
        page = c.get("/unit/documents")
        assert (
            page.status_code == 200
            and "网络安全承诺书" in page.text
            and 'enctype="multipart/form-data"' in page.text
        )
        token = _csrf(page.text)
        good = {"kind": "commitment_letter", "signer": "王建国", "signed_on": "2026-09-01"}
        scan = {"file": ("承诺书.pdf", PDF, "application/pdf")}

        assert c.post("/unit/documents", data=good, files=scan).status_code == 403  # no CSRF token
        empty = c.post("/unit/documents", data={"csrf_token": token, "kind": "vm_agreement"})
        assert empty.status_code == 422 and 'aria-invalid="true"' in empty.text
        assert "请填写签署人姓名" in empty.text and "请选择要上传的扫描件" in empty.text
        assert 'value="vm_agreement" selected' in empty.text  # the choice kept
        text = c.post(
            "/unit/documents",
            data={"csrf_token": token, **good},
            files={"file": ("a.txt", b"hello", "text/plain")},
        )
        assert text.status_code == 415 and "content_type" in text.text and "不接受的文件类型" in text.text
        future = c.post(
            "/unit/documents", data={"csrf_token": token, **good, "signed_on": "2099-01-01"}, files=scan
        )
        assert (
            future.status_code == 422
            and "签署日期不能晚于今天" in future.text
            and "not_future" in future.text
        )
        assert 'value="王建国"' in future.text
        assert _documents(live) == before  # nothing filed

        filed = c.post("/unit/documents", data={"csrf_token": token, **good}, files=scan)
        assert filed.status_code == 303 and filed.headers["location"] == "/unit/documents?done=filed"
        assert "已提交" in c.get(filed.headers["location"]).text
    after = _documents(live)
    letter = [d for d in after if d["kind"] == "commitment_letter"]
    assert len(letter) == 1 and letter[0]["signed_on"] == "2026-09-01"
    assert letter[0]["id"] not in {d["id"] for d in before}

    with as_user(live, "cs-lead", Role.UNIT_LEAD, headers={"Accept-Language": "en"}) as c:
        page = c.get("/unit/documents")
        r = c.post("/unit/documents", data={"csrf_token": _csrf(page.text), "kind": "vm_agreement"})
        assert r.status_code == 422 and "Give the name of who signed it" in r.text


def _login(page: Page, base: str, next_path: str) -> None:
    page.goto(f"{base}/login?next={next_path}")
    page.locator("#username").fill("cs-lead")
    page.locator("#password").fill(PASSWORDS[Role.UNIT_LEAD])
    page.locator("#password").press("Enter")
    page.wait_for_url(f"{base}{next_path}")


def test_endorse_and_decline_in_chromium(
    live: Live, filed: dict[str, int], browser: Browser, vendored: None, shots: Shots
) -> None:
    context = browser.new_context(locale="zh-CN", viewport=DESKTOP, bypass_csp=True)
    page = context.new_page()
    try:
        _login(page, live.base_url, "/endorsements")
        shots.take(page, "endorsements")
        assert axe_violations(page) == []
        rid = filed["browser"]
        page.locator(f"li.queue-item[data-request='{rid}'] button[data-action=endorse]").click()
        dialog = page.locator("#confirm-dialog")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text(f"确认申请 {rid}")
        dialog.locator("[data-confirm-ok]").click()
        page.wait_for_url(f"{live.base_url}/endorsements?done=endorsed&id={rid}")
        expect(page.locator(".flash-success")).to_contain_text(f"申请 {rid} 已确认")
        shots.take(page, "endorsements-endorsed")
        assert axe_violations(page) == []
    finally:
        context.close()
    assert _request(live, filed["browser"])["state"] == "endorsed"

    context = browser.new_context(locale="en-US", viewport=PHONE, bypass_csp=True)
    page = context.new_page()
    try:
        _login(page, live.base_url, "/endorsements")
        rid = filed["phone"]
        item = page.locator(f"li.queue-item[data-request='{rid}']")
        item.locator("button[data-action=decline]").click()  # no reason: refused beside the field
        expect(item.locator(".field-error")).to_contain_text("Give the reason")
        shots.take(page, "endorsements-refused")
        assert axe_violations(page) == []
        item.locator(f"#f-reason-{rid}").fill("Not needed this term")
        item.locator("button[data-action=decline]").click()
        page.wait_for_url(f"{live.base_url}/endorsements?done=declined&id={rid}")
        expect(page.locator(".flash-success")).to_contain_text(f"Request {rid} is declined")
        shots.take(page, "endorsements-declined")
        assert axe_violations(page) == []
    finally:
        context.close()
    assert _request(live, filed["phone"])["state"] == "rejected"

    for locale in ("zh-CN", "en-US"):  # the lead's read-only pages, both widths, both languages
        for viewport in WIDTHS:
            context = browser.new_context(locale=locale, viewport=viewport, bypass_csp=True)
            page = context.new_page()
            try:
                _login(page, live.base_url, "/requests")
                shots.take(page, "lead-requests")
                assert axe_violations(page) == []
                page.goto(f"{live.base_url}/unit/documents")
                shots.take(page, "lead-documents")
                assert axe_violations(page) == []
            finally:
                context.close()
