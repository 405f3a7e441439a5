"""计划停机 as a page (in process): a unit's admin sees the outages touching the unit, with its own VMs
only, and not another unit's; the center's admin sees every one with the affected units. Chinese
first, English on request."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient

from tests.factories import Factory
from vmportal.kit import db

API = "/api/v1"


def _login(client: TestClient, username: str) -> None:
    r = client.post(
        "/login",
        data={"username": username, "password": Factory.PASSWORD, "next": "/maintenance"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def test_units_see_their_current_and_coming_outages_and_the_center_sees_all(
    client: TestClient, factory: Factory
) -> None:
    a, b = factory.unit(), factory.unit()
    vm_a = factory.vm(a, name="lab-web")
    vm_b = factory.vm(b, name="oa-db")
    admin_a, admin_b = factory.user("unit_admin", a), factory.user("unit_admin", b)
    center = factory.user("center_admin")
    headers = factory.login(client, center)
    now = db.utcnow()
    windows = []
    for vm_ids, title, start, extra in (
        ([vm_a.id, vm_b.id], "存储扩容", now + timedelta(days=4), {}),
        ([vm_b.id], "机房空调检修", now - timedelta(minutes=5), {"emergency_reason": "空调故障"}),
    ):
        r = client.post(
            f"{API}/maintenance",
            json={
                "title": title,
                "reason": "维护",
                "scope": "vms",
                "vm_ids": vm_ids,
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=3)).isoformat(),
                **extra,
            },
            headers=headers,
        )
        assert r.status_code == 201, r.text
        windows.append(r.json()["id"])

    _login(client, admin_a.username)
    page = client.get("/maintenance")
    assert page.status_code == 200
    assert "计划停机" in page.text and "存储扩容" in page.text and "lab-web" in page.text
    assert "机房空调检修" not in page.text and "oa-db" not in page.text  # unit B's only
    assert f'data-window="{windows[0]}" data-current="false"' in page.text
    english = client.get("/maintenance", headers={"Accept-Language": "en"})
    assert "Planned outages" in english.text and "Coming" in english.text

    _login(client, admin_b.username)
    page = client.get("/maintenance")
    assert f'data-window="{windows[1]}" data-current="true"' in page.text and "正在进行" in page.text
    assert "空调故障" in page.text and "lab-web" not in page.text and "oa-db" in page.text

    _login(client, center.username)
    page = client.get("/maintenance")
    assert "存储扩容" in page.text and "机房空调检修" in page.text and "受影响单位" in page.text
    assert a.name_zh in page.text and b.name_zh in page.text


def test_a_power_action_on_the_vm_page_during_an_outage_says_why_it_may_fail(
    client: TestClient, factory: Factory
) -> None:
    a = factory.unit()
    vm = factory.vm(a, name="lab-web", power_state="stopped")
    admin = factory.user("unit_admin", a)
    headers = factory.login(client, factory.user("center_admin"))
    now = db.utcnow()
    r = client.post(
        f"{API}/maintenance",
        json={
            "title": "机房空调检修",
            "reason": "空调故障",
            "scope": "vms",
            "vm_ids": [vm.id],
            "starts_at": (now - timedelta(minutes=5)).isoformat(),
            "ends_at": (now + timedelta(hours=2)).isoformat(),
            "emergency_reason": "空调故障，须立即停机",
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text

    _login(client, admin.username)
    page = client.get(f"/vms/{vm.id}")
    m = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert page.status_code == 200 and m is not None
    answer = client.post(
        f"/vms/{vm.id}/power",
        data={"csrf_token": m.group(1), "action": "start"},
        headers={"HX-Request": "true"},
    )
    assert answer.status_code == 200
    assert "flash-warning" in answer.text and "计划停机" in answer.text and "机房空调检修" in answer.text
    # Without htmx the page itself is answered with the warning (no silent redirect).
    answer = client.post(
        f"/vms/{vm.id}/power", data={"csrf_token": m.group(1), "action": "stop"}, follow_redirects=False
    )
    assert answer.status_code == 200 and "flash-warning" in answer.text and "可能失败" in answer.text
