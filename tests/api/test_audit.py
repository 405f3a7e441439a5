"""The audit log through the HTTP API (issue 2, point 9): who may read it, filters, and the chain
check that names the first row edited or removed behind the portal's back."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.factories import Factory
from vmportal.kit import db

API = "/api/v1"


def _make_history(client: TestClient, factory: Factory) -> tuple[dict[str, str], int]:
    """A few audited changes by a center_admin; answers their headers and a unit id."""
    admin = factory.login(client, factory.user("center_admin", username="chief"))
    r = client.post(f"{API}/units", json={"code": "MATH", "name_zh": "数学学院"}, headers=admin)
    assert r.status_code == 201
    unit_id = r.json()["id"]
    quota = {"max_vms": 2, "max_vcpus": 8, "max_memory_gib": 16, "max_disk_gib": 200}
    assert client.put(f"{API}/units/{unit_id}/quota", json=quota, headers=admin).status_code == 200
    assert (
        client.patch(f"{API}/units/{unit_id}", json={"name_en": "Mathematics"}, headers=admin).status_code
        == 200
    )
    return admin, unit_id


def test_only_center_admin_and_auditor_read_the_log(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    for role, member, status in (
        ("center_admin", None, 200),
        ("auditor", None, 200),
        ("center_operator", None, 403),
        ("unit_admin", unit, 403),
        ("unit_lead", unit, 403),
    ):
        headers = factory.login(client, factory.user(role, member))
        assert client.get(f"{API}/audit", headers=headers).status_code == status, role
        assert client.get(f"{API}/audit/verify", headers=headers).status_code == status, role
    assert client.get(f"{API}/audit").status_code == 401


def test_state_changes_are_recorded_and_filterable(client: TestClient, factory: Factory) -> None:
    _, unit_id = _make_history(client, factory)
    auditor = factory.login(client, factory.user("auditor"))
    page = client.get(f"{API}/audit", params={"unit_id": unit_id}, headers=auditor).json()
    assert [e["action"] for e in page["items"]] == [
        "unit.update",
        "quota.update",
        "unit.create",
    ]  # newest first
    assert page["total"] == 3
    created = page["items"][-1]
    assert (created["actor"], created["actor_role"], created["target_type"], created["target_id"]) == (
        "chief",
        "center_admin",
        "unit",
        str(unit_id),
    )
    assert created["after"]["code"] == "MATH"
    updated = page["items"][0]
    assert (updated["before"]["name_en"], updated["after"]["name_en"]) == ("", "Mathematics")

    by_action = client.get(f"{API}/audit", params={"action": "quota.update"}, headers=auditor).json()
    assert [e["target_id"] for e in by_action["items"]] == [str(unit_id)]
    by_prefix = client.get(
        f"{API}/audit", params={"action": "unit.*", "target_id": str(unit_id)}, headers=auditor
    ).json()
    assert by_prefix["total"] == 2
    by_actor = client.get(
        f"{API}/audit", params={"actor": "chief", "action": "login"}, headers=auditor
    ).json()
    assert by_actor["total"] == 1
    paged = client.get(
        f"{API}/audit", params={"unit_id": unit_id, "limit": 1, "offset": 1}, headers=auditor
    ).json()
    assert (paged["total"], len(paged["items"]), paged["items"][0]["action"]) == (3, 1, "quota.update")
    since = created["at"]
    later = client.get(f"{API}/audit", params={"since": since, "unit_id": unit_id}, headers=auditor).json()
    assert later["total"] == 3
    none = client.get(f"{API}/audit", params={"until": since, "unit_id": unit_id}, headers=auditor).json()
    assert none["total"] == 0
    r = client.get(f"{API}/audit", params={"limit": 0}, headers=auditor)
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "limit"
    r = client.get(f"{API}/audit", params={"since": "last tuesday"}, headers=auditor)
    assert r.status_code == 422


def _tamper(sql: str, **params: object) -> None:
    with db.engine().begin() as conn:
        conn.execute(sa.text(sql), params)


def test_verify_names_an_edited_row(client: TestClient, factory: Factory) -> None:
    _make_history(client, factory)
    auditor = factory.login(client, factory.user("auditor"))
    ok = client.get(f"{API}/audit/verify", headers=auditor).json()
    assert ok["ok"] is True
    assert ok["checked"] >= 5
    _tamper("UPDATE audit_entry SET detail = 'nothing happened' WHERE id = :id", id=3)
    broken = client.get(f"{API}/audit/verify", headers=auditor).json()
    assert (broken["ok"], broken["broken_at"]) == (False, 3)
    assert "row 3" in broken["reason"]


def test_verify_names_a_removed_row(client: TestClient, factory: Factory) -> None:
    _make_history(client, factory)
    auditor = factory.login(client, factory.user("auditor"))
    _tamper("DELETE FROM audit_entry WHERE id = :id", id=2)
    broken = client.get(f"{API}/audit/verify", headers=auditor).json()
    assert (broken["ok"], broken["broken_at"]) == (False, 2)
    assert "missing" in broken["reason"]
