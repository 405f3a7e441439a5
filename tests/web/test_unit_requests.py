"""我的申请 against the live demo portal: a unit admin files requests through the API and finds them
on /requests with their state and the 7-day countdown, in Chinese and in English, sorted either
way by submission or due time; another unit's request answers the 404 page; logged out, the page
sends to the login page and back; an overdue request is marked so. One Chromium pass with axe-core (no serious or critical
violation), its screenshots at desktop and phone width under .cache/screenshots (tests/web/screens.py)."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from policies.roles import Role
from tests.web.conftest import Live
from tests.web.pagekit import sign_in
from tests.web.screens import Shots, axe_violations, shots
from vmportal.app.demo import PASSWORDS

API = "/api/v1"
__all__ = ["shots"]


def _submit(live: Live, username: str, system_name: str, hostname: str, connection_id: int) -> int:
    headers = live.login(username, Role.UNIT_ADMIN)
    with live.client() as c:
        body: dict[str, Any] = {
            "system_name": system_name,
            "purpose": "teaching",
            "hostname": hostname,
            "connection_id": connection_id,
            "template_ref": "tpl-rocky-9",
            "vcpus": 2,
            "memory_gib": 4,
            "disk_gib": 40,
        }
        r = c.post(f"{API}/requests", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


def _connection(live: Live) -> int:
    """The demo's one hypervisor connection, where CS's VMs run."""
    with live.client() as c:
        vms = c.get(f"{API}/vms", headers=live.login("cs-admin", Role.UNIT_ADMIN)).json()["items"]
    return int(vms[0]["connection_id"])


@pytest.fixture(scope="module")
def filed(live: Live) -> dict[str, int]:
    """Two requests of 计算机学院 (CS) and one of 机电工程学院 (ME)."""
    connection = _connection(live)
    return {
        "cs1": _submit(live, "cs-admin", "课程实验平台", "lab-a", connection),
        "cs2": _submit(live, "cs-admin", "科研数据平台", "lab-b", connection),
        "me": _submit(live, "me-admin", "机电实训平台", "me-a", connection),
    }


@contextlib.contextmanager
def _page_client(live: Live, **kwargs: Any) -> Iterator[httpx.Client]:
    """A client logged in as CS's unit admin through the login form (the page session cookie)."""
    with live.client(**kwargs) as c:
        r = c.post(
            "/login",
            data={"username": "cs-admin", "password": PASSWORDS[Role.UNIT_ADMIN], "next": "/requests"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/requests", r.text
        yield c


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-request="(\d+)"', html)]


def test_unit_admin_sees_the_units_requests_with_the_countdown(live: Live, filed: dict[str, int]) -> None:
    with _page_client(live) as c:
        page = c.get("/requests")
        assert page.status_code == 200
        assert "我的申请" in page.text and "课程实验平台" in page.text and "已提交" in page.text
        # Filed a moment ago, due 7 days after: a little under 7 days left.
        assert re.search(r"还剩 6 天 23 小时", page.text), page.text
        listed = _ids(page.text)
        assert {filed["cs1"], filed["cs2"]} <= set(listed) and filed["me"] not in listed
        assert "机电实训平台" not in page.text

        oldest_first = _ids(c.get("/requests", params={"sort": "submitted_at", "order": "asc"}).text)
        assert oldest_first.index(filed["cs1"]) < oldest_first.index(filed["cs2"])
        latest_due_first = c.get("/requests", params={"sort": "due_at", "order": "desc"})
        by_due = _ids(latest_due_first.text)
        assert by_due.index(filed["cs2"]) < by_due.index(filed["cs1"])
        assert 'aria-sort="descending"' in latest_due_first.text

        assert _ids(c.get("/requests", params={"state": "delivered"}).text) == []
        submitted = _ids(c.get("/requests", params={"state": "submitted"}).text)
        assert {filed["cs1"], filed["cs2"]} <= set(submitted)

        detail = c.get(f"/requests/{filed['cs1']}")
        assert detail.status_code == 200
        assert "lab-a" in detail.text and "办理记录" in detail.text and "还剩 6 天 23 小时" in detail.text

        other = c.get(f"/requests/{filed['me']}")
        assert other.status_code == 404 and "无权查看" in other.text and "机电实训平台" not in other.text

        home = c.get("/")
        assert 'href="/requests"' in home.text and "我的申请" in home.text  # the navigation leads here


def test_an_overdue_request_is_marked(live: Live, filed: dict[str, int]) -> None:
    connection = _connection(live)
    late = _submit(live, "cs-admin", "迎新报到系统", "lab-late", connection)
    # The portal's own SQLite database: the due time moved to 2 h 5 min ago (UTC, as stored).
    past = (datetime.now(UTC) - timedelta(hours=2, minutes=5)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with contextlib.closing(sqlite3.connect(live.data_dir / "vmportal.sqlite3", timeout=30)) as db:
        db.execute("UPDATE vm_request SET due_at = ? WHERE id = ?", (past, late))
        db.commit()
    with _page_client(live) as c:
        page = c.get("/requests")
        row = re.search(rf'<tr data-request="{late}">.*?</tr>', page.text, re.S)
        assert row is not None
        assert 'data-deadline="overdue"' in row.group(0) and "已超期 2 小时" in row.group(0)
        assert "badge-danger" in row.group(0)
        on_time = re.search(rf'<tr data-request="{filed["cs1"]}">.*?</tr>', page.text, re.S)
        assert on_time is not None and 'data-deadline="on_time"' in on_time.group(0)


def test_the_same_page_in_english(live: Live, filed: dict[str, int]) -> None:
    with _page_client(live, headers={"Accept-Language": "en-US,en;q=0.9"}) as c:
        page = c.get("/requests")
        assert page.status_code == 200
        assert "My requests" in page.text and "Submitted" in page.text
        assert re.search(r"6 d 23 h left", page.text), page.text
        assert "我的申请" not in page.text
        other = c.get(f"/requests/{filed['me']}")
        assert other.status_code == 404 and "not yours to see" in other.text


def test_logged_out_goes_to_the_login_page_and_back(live: Live, filed: dict[str, int]) -> None:
    with live.client() as c:
        r = c.get(f"/requests/{filed['cs1']}")
        assert r.status_code == 303
        assert r.headers["location"] == f"/login?next=/requests/{filed['cs1']}"
        back = c.post(
            "/login",
            data={
                "username": "cs-admin",
                "password": PASSWORDS[Role.UNIT_ADMIN],
                "next": f"/requests/{filed['cs1']}",
            },
        )
        assert back.status_code == 303 and back.headers["location"] == f"/requests/{filed['cs1']}"


def test_requests_page_in_chromium_passes_axe(
    live: Live, filed: dict[str, int], browser: Browser, vendored: None, shots: Shots
) -> None:
    context = browser.new_context(locale="zh-CN", viewport={"width": 375, "height": 800}, bypass_csp=True)
    page = context.new_page()
    try:
        sign_in(page, live.base_url, "cs-admin", Role.UNIT_ADMIN, "/requests")
        expect(page.locator(f"tr[data-request='{filed['cs1']}'] .countdown")).to_contain_text("还剩")
        shots.both(page, "requests")
        assert axe_violations(page) == []
        page.locator(f"tr[data-request='{filed['cs1']}'] a").click()
        page.wait_for_url(f"{live.base_url}/requests/{filed['cs1']}")
        expect(page.locator(".timeline")).to_contain_text("已提交")
        shots.both(page, "request-detail")
        assert axe_violations(page) == []
    finally:
        context.close()
