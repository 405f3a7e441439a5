"""The center files a unit's signed papers (handed in at the counter) from the unit's administration
page, against the live demo portal: the page /admin/units/{id}/documents is the unit lead's own
upload form for that unit; the filed scan completes the unit's paperwork (the library had no VM
agreement), the audit row names who filed it for which unit; a scan filed for a paper the portal
generated (附件3 PDF) is linked to it (its footer id and SHA-256), a generated paper of another kind
is refused beside its field; bad input is refused beside its field with the values kept, nothing
filed; a form without its CSRF token is refused; the auditor reads the unit's page but is refused the
filing naming the rule, so is a unit's own user, and a unit that does not exist answers the 404 page.

The dashboard shows the unit lead's pending endorsements (count and link) while the center requires
endorsement, and nothing about them before. In Chromium: both pages in both languages at desktop
and phone width, axe-core on each (no serious or critical violation), screenshots kept
(tests/web/screens.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser

from policies.roles import Role
from tests.web.conftest import Live
from tests.web.pagekit import as_user, csrf, sign_in
from tests.web.screens import WIDTHS, Shots, axe_violations, shots

pytestmark = pytest.mark.xdist_group("web-center-papers")

API = "/api/v1"
__all__ = ["shots"]

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n" + b" " * 2048
SCAN = {"file": ("协议书扫描件.pdf", PDF, "application/pdf")}


@pytest.fixture(scope="module")
def lib(live: Live) -> int:
    """The library's unit id (the demo's unit without a signed VM agreement)."""
    with live.client() as c:
        r = c.get(f"{API}/units", headers=live.login("center-admin", Role.CENTER_ADMIN))
        assert r.status_code == 200, r.text
        items = r.json()["items"] if isinstance(r.json(), dict) else r.json()
        return int(next(u["id"] for u in items if u["code"] == "LIB"))


def _documents(live: Live, unit_id: int) -> list[dict[str, Any]]:
    with live.client() as c:
        r = c.get(
            f"{API}/units/{unit_id}/documents",
            params={"current": True},
            headers=live.login("center-admin", Role.CENTER_ADMIN),
        )
        assert r.status_code == 200, r.text
        return list(r.json())


def _audit(live: Live, unit_id: int, action: str) -> list[dict[str, Any]]:
    with live.client() as c:
        r = c.get(
            f"{API}/audit",
            params={"action": action, "unit_id": unit_id},
            headers=live.login("auditor", Role.AUDITOR),
        )
        assert r.status_code == 200, r.text
        return list(r.json()["items"])


def test_the_operator_files_the_units_agreement_at_the_counter(live: Live, lib: int) -> None:
    url = f"/admin/units/{lib}/documents"
    with as_user(live, "lib-admin", Role.UNIT_ADMIN) as c:  # the unit's own users file on their page
        r = c.get(url)
        assert r.status_code == 403 and "paperwork.file_signed" in r.text
    with as_user(live, "auditor", Role.AUDITOR) as c:  # reads the unit, files nothing
        unit_page = c.get(f"/admin/units/{lib}")
        assert unit_page.status_code == 200 and f'href="{url}"' not in unit_page.text
        assert "只有信息中心的管理员和值班人员可以代单位提交材料" in unit_page.text
        assert c.get(url).status_code == 403
    before = _documents(live, lib)
    assert not any(d["kind"] == "vm_agreement" for d in before)
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        assert c.get("/admin/units/99999/documents").status_code == 404
        unit_page = c.get(f"/admin/units/{lib}")
        assert f'href="{url}"' in unit_page.text
        page = c.get(url)
        assert page.status_code == 200 and "图书馆" in page.text and f'action="{url}"' in page.text
        assert 'name="original"' not in page.text  # no paper generated for the unit yet
        token = csrf(page.text)
        good = {"kind": "vm_agreement", "signer": "刘志强", "signed_on": "2026-09-01"}

        assert c.post(url, data=good, files=SCAN).status_code == 403  # no CSRF token
        empty = c.post(url, data={"csrf_token": token, "kind": "vm_agreement", "signer": "刘志强"})
        assert empty.status_code == 422 and "请选择要上传的扫描件" in empty.text
        assert 'value="刘志强"' in empty.text and 'value="vm_agreement" selected' in empty.text
        assert _documents(live, lib) == before  # nothing filed

        filed = c.post(url, data={"csrf_token": token, **good}, files=SCAN)
        assert filed.status_code == 303 and filed.headers["location"] == f"{url}?done=filed"
        after = c.get(filed.headers["location"]).text
        assert "已提交" in after and 'data-document="vm_agreement"' in after
    agreement = [d for d in _documents(live, lib) if d["kind"] == "vm_agreement"]
    assert len(agreement) == 1 and agreement[0]["signer"] == "刘志强"
    row = _audit(live, lib, "document.file")[0]
    assert row["actor"] == "operator" and row["unit_id"] == lib
    assert "on behalf of unit LIB" in row["detail"]
    with as_user(live, "lib-lead", Role.UNIT_LEAD) as c:  # the unit sees its paper on file
        unit_info = c.get("/unit").text
        assert "刘志强" in unit_info


def test_a_scan_filed_for_a_generated_paper_is_linked_to_it(live: Live, lib: int) -> None:
    url = f"/admin/units/{lib}/documents"
    with live.client() as c:  # the unit's lead printed the agreement from the portal
        r = c.post(
            f"{API}/units/{lib}/papers",
            json={"kind": "vm_agreement"},
            headers=live.login("lib-lead", Role.UNIT_LEAD),
        )
        assert r.status_code == 201, r.text
        document_id, digest = r.headers["X-Document-Id"], r.headers["X-Document-SHA256"]
    with as_user(live, "center-admin", Role.CENTER_ADMIN) as c:
        page = c.get(url)
        assert f'value="{document_id}"' in page.text and digest[:12] in page.text
        token = csrf(page.text)
        wrong = c.post(
            url,
            data={
                "csrf_token": token,
                "kind": "commitment_letter",
                "signer": "刘志强",
                "signed_on": "2026-09-02",
                "original": document_id,
            },
            files=SCAN,
        )
        assert wrong.status_code == 422 and "same_kind" in wrong.text
        assert re.search(rf'value="{document_id}"\s+selected', wrong.text)
        unknown = c.post(
            url,
            data={"csrf_token": token, "kind": "vm_agreement", "signer": "刘志强", "signed_on": "2026-09-02",
                  "original": "NO-SUCH-PAPER"},
            files=SCAN,
        )  # fmt: skip
        assert unknown.status_code == 422 and "请从列出的已生成材料中选择一份" in unknown.text
        filed = c.post(
            url,
            data={"csrf_token": token, "kind": "vm_agreement", "signer": "刘志强", "signed_on": "2026-09-02",
                  "original": document_id},
            files=SCAN,
        )  # fmt: skip
        assert filed.status_code == 303, filed.text
        assert f'value="{document_id}"' not in c.get(url).text  # no longer waiting for its scan
    with live.client() as c:
        papers = c.get(f"{API}/units/{lib}/papers", headers=live.login("auditor", Role.AUDITOR)).json()
    paper = next(p for p in papers if p["document_id"] == document_id)
    current = next(d for d in _documents(live, lib) if d["kind"] == "vm_agreement")
    assert paper["signed_document_id"] == current["id"] and current["signed_on"] == "2026-09-02"
    linked = _audit(live, lib, "paperwork.file_signed")[0]
    assert linked["actor"] == "center-admin" and digest in linked["detail"]
    with as_user(live, "center-admin", Role.CENTER_ADMIN, headers={"Accept-Language": "en"}) as c:
        page = c.get(url)
        assert "File signed papers for Library" in page.text or "File signed papers for" in page.text
        r = c.post(url, data={"csrf_token": csrf(page.text), "kind": "vm_agreement"})
        assert r.status_code == 422 and "Give the name of who signed it" in r.text


def _todo(html: str) -> str | None:
    found = re.search(r'data-todo="endorsements" data-count="(\d+)"', html)
    return found.group(1) if found else None


def test_the_dashboard_shows_the_leads_pending_endorsements(live: Live) -> None:
    admin = live.login("cs-admin", Role.UNIT_ADMIN)
    with as_user(live, "cs-lead", Role.UNIT_LEAD) as c:
        assert _todo(c.get("/").text) is None  # the center does not require endorsement yet
    with live.client() as c:
        r = c.put(
            f"{API}/settings",
            json={"endorsement_required": True},
            headers=live.login("center-admin", Role.CENTER_ADMIN),
        )
        assert r.status_code == 200, r.text
        connection = int(c.get(f"{API}/vms", headers=admin).json()["items"][0]["connection_id"])
    with as_user(live, "cs-lead", Role.UNIT_LEAD) as c:
        waiting = int(_todo(c.get("/").text) or -1)
    with live.client() as c:
        for n in range(2):
            body = {"system_name": f"仪表盘测试 {n}", "purpose": "teaching", "hostname": f"dash-{n}",
                    "connection_id": connection, "template_ref": "tpl-rocky-9", "vcpus": 1, "memory_gib": 2,
                    "disk_gib": 40}  # fmt: skip
            assert c.post(f"{API}/requests", json=body, headers=admin).status_code == 201
    with as_user(live, "cs-lead", Role.UNIT_LEAD) as c:
        home = c.get("/").text
        assert _todo(home) == str(waiting + 2) and 'href="/endorsements"' in home
        assert f"本单位有 {waiting + 2} 个申请等待您确认" in home
    with as_user(live, "cs-lead", Role.UNIT_LEAD, headers={"Accept-Language": "en"}) as c:
        assert f"{waiting + 2} requests of your unit wait for your endorsement" in c.get("/").text
    for username, role in (("cs-admin", Role.UNIT_ADMIN), ("operator", Role.CENTER_OPERATOR)):
        with as_user(live, username, role) as c:  # not their work
            assert _todo(c.get("/").text) is None


def test_in_chromium_both_languages_both_widths(
    live: Live, lib: int, browser: Browser, vendored: None, shots: Shots
) -> None:
    for locale in ("zh-CN", "en-US"):
        for viewport in WIDTHS:
            context = browser.new_context(locale=locale, viewport=viewport, bypass_csp=True)
            page = context.new_page()
            try:
                sign_in(page, live.base_url, "operator", Role.CENTER_OPERATOR, f"/admin/units/{lib}")
                shots.take(page, "admin-unit")
                assert axe_violations(page) == []
                page.locator('[data-action="file-documents"]').click()
                page.wait_for_url(f"{live.base_url}/admin/units/{lib}/documents")
                page.locator('[data-action="file"]').click()  # nothing filled: errors beside the fields
                page.wait_for_load_state()
                assert page.locator('[aria-invalid="true"]').count() >= 2
                shots.take(page, "center-documents-errors")
                assert axe_violations(page) == []
            finally:
                context.close()
            context = browser.new_context(locale=locale, viewport=viewport, bypass_csp=True)
            page = context.new_page()
            try:
                sign_in(page, live.base_url, "cs-lead", Role.UNIT_LEAD, "/")
                assert page.locator('[data-todo="endorsements"]').count() in (0, 1)
                shots.take(page, "lead-dashboard")
                assert axe_violations(page) == []
            finally:
                context.close()
