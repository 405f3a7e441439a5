"""Hypervisor connections and templates through the HTTP API (issue 2; the basics issue 3 builds on):
secrets encrypted and never returned, a connection test kept on the row, and the templates of every
active connection offered to the request form."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import select

from hypervisors import ConnectionConfig, HypervisorKind, create
from hypervisors.simulator import SimulatorAdapter
from tests.factories import Factory
from vmportal.audit.models import AuditEntry
from vmportal.connection.models import HypervisorConnection
from vmportal.connection.service import forget_templates
from vmportal.kit import db
from vmportal.kit.settings import Settings

API = "/api/v1"
SECRET = "Vc-Secret-9f8e7d6c"


@pytest.fixture(autouse=True)
def _fresh_template_cache() -> None:
    forget_templates()


@pytest.fixture
def heads(client: TestClient, factory: Factory) -> dict[str, dict[str, str]]:
    unit = factory.unit()
    return {
        "admin": factory.login(client, factory.user("center_admin")),
        "operator": factory.login(client, factory.user("center_operator")),
        "auditor": factory.login(client, factory.user("auditor")),
        "unit_admin": factory.login(client, factory.user("unit_admin", unit)),
    }


def _vsphere(**overrides: Any) -> dict[str, Any]:
    body = {
        "kind": "vsphere",
        "name": "vcenter-main",
        "url": "https://vcenter.example.edu.cn",
        "username": "portal@vsphere.local",
        "secret": SECRET,
        "defaults": {"datastore": "ds-01", "folder": "vmportal"},
    }
    return {**body, **overrides}


def test_secrets_are_encrypted_and_never_returned(
    client: TestClient, heads: dict[str, dict[str, str]], settings: Settings
) -> None:
    r = client.post(f"{API}/connections", json=_vsphere(), headers=heads["admin"])
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["has_secret"] is True
    assert SECRET not in r.text and "secret" not in created

    listed = client.get(f"{API}/connections", headers=heads["auditor"])
    assert listed.status_code == 200
    assert SECRET not in listed.text
    assert {c["name"] for c in listed.json()} == {"simulator", "vcenter-main"}
    one = client.get(f"{API}/connections/{created['id']}", headers=heads["operator"])
    assert one.json()["defaults"] == {"datastore": "ds-01", "folder": "vmportal"}

    # Not in the database in clear (read past the ORM's decryption), not in the audit log at all.
    with db.engine().connect() as raw:
        stored = raw.execute(
            text("SELECT secret FROM hypervisor_connection WHERE name = 'vcenter-main'")
        ).scalar()
    assert stored and SECRET not in stored
    with db.transaction() as s:
        conn = s.get(HypervisorConnection, created["id"])
        assert conn is not None and conn.secret == SECRET  # decrypts with the key
        entries = s.exec(select(AuditEntry).where(AuditEntry.target_type == "connection")).all()
    assert [e.action for e in entries] == ["connection.create"]
    assert SECRET not in json.dumps([e.after for e in entries])

    # Replacing the secret is audited as such, still without the value.
    r = client.patch(
        f"{API}/connections/{created['id']}", json={"secret": "Another-Secret-1"}, headers=heads["admin"]
    )
    assert r.status_code == 200 and r.json()["has_secret"] is True
    with db.transaction() as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "connection.update")).one()
    assert entry.detail == "secret replaced" and "Another-Secret-1" not in json.dumps(entry.after)


def test_who_may_see_and_change_connections(client: TestClient, heads: dict[str, dict[str, str]]) -> None:
    assert client.get(f"{API}/connections", headers=heads["unit_admin"]).status_code == 403
    for who in ("operator", "auditor", "unit_admin"):
        assert client.post(f"{API}/connections", json=_vsphere(), headers=heads[who]).status_code == 403
    r = client.post(f"{API}/connections", json=_vsphere(), headers=heads["admin"])
    assert r.status_code == 201
    r = client.post(f"{API}/connections", json=_vsphere(), headers=heads["admin"])
    assert r.status_code == 409
    assert r.json()["error"]["field"] == "name"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kind": "hyperv"}, "kind"),
        ({"username": ""}, "username"),
        ({"secret": None}, "secret"),
        ({"url": "ftp://vcenter.example.edu.cn"}, "url"),
        ({"url": "https://root:pw@vcenter.example.edu.cn"}, "url"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"defaults": {"Bad Key": "x"}}, "defaults.Bad Key.[key]"),
        ({"kind": "simulator", "url": "simulator:///etc/vmportal-state.json"}, "url"),
        ({"kind": "proxmox", "username": "", "token_id": ""}, "token_id"),
    ],
)
def test_a_wrong_connection_is_refused_naming_the_field(
    client: TestClient, heads: dict[str, dict[str, str]], overrides: dict[str, Any], field: str
) -> None:
    r = client.post(f"{API}/connections", json=_vsphere(**overrides), headers=heads["admin"])
    assert r.status_code == 422, r.text
    assert r.json()["error"]["fields"][0]["field"] == field
    with db.transaction() as s:
        assert (
            s.exec(select(HypervisorConnection).where(HypervisorConnection.name == "vcenter-main")).first()
            is None
        )


def test_connection_test_is_kept_on_the_row(
    client: TestClient, factory: Factory, heads: dict[str, dict[str, str]], settings: Settings
) -> None:
    conn = factory.connection()
    r = client.post(f"{API}/connections/{conn.id}/test", headers=heads["operator"])
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["ok"] is True and result["template_count"] >= 5
    row = client.get(f"{API}/connections/{conn.id}", headers=heads["auditor"]).json()
    assert row["last_check_ok"] is True and row["last_check_at"] is not None

    # A hypervisor that refuses the login: reported, stored, never a 500.
    adapter = create(ConnectionConfig(kind=HypervisorKind.SIMULATOR, url=settings.simulator_state_url))
    assert isinstance(adapter, SimulatorAdapter)
    adapter.inject_fault("check", "auth_failed")
    r = client.post(f"{API}/connections/{conn.id}/test", headers=heads["admin"])
    assert r.status_code == 200
    assert r.json()["ok"] is False and r.json()["message"]
    row = client.get(f"{API}/connections/{conn.id}", headers=heads["auditor"]).json()
    assert row["last_check_ok"] is False and row["last_check_message"]
    assert client.post(f"{API}/connections/{conn.id}/test", headers=heads["auditor"]).status_code == 403
    assert client.post(f"{API}/connections/999/test", headers=heads["admin"]).status_code == 404
    with db.transaction() as s:
        results = [e.result for e in s.exec(select(AuditEntry).where(AuditEntry.action == "connection.test"))]
    assert results == ["ok", "failed"]


def test_templates_of_every_active_connection_for_the_request_form(
    client: TestClient, factory: Factory, heads: dict[str, dict[str, str]]
) -> None:
    sim = factory.connection()
    lab = client.post(
        f"{API}/connections",
        json={"kind": "simulator", "name": "lab", "url": "simulator://memory/conn-test-lab"},
        headers=heads["admin"],
    ).json()
    broken = client.post(
        f"{API}/connections",
        json={
            "kind": "simulator",
            "name": "broken",
            "url": "simulator://memory/conn-test-broken",
            "defaults": {"fail": "*:unreachable:always"},
        },
        headers=heads["admin"],
    ).json()
    r = client.get(f"{API}/templates", headers=heads["unit_admin"])
    assert r.status_code == 200, r.text
    by_connection: dict[str, list[dict[str, Any]]] = {}
    for t in r.json():
        by_connection.setdefault(t["connection"], []).append(t)
    assert set(by_connection) == {"simulator", "lab"}  # the unreachable one is left out
    rocky = next(t for t in by_connection["simulator"] if t["ref"] == "tpl-rocky-9")
    assert rocky == {
        "connection_id": sim.id,
        "connection": "simulator",
        "ref": "tpl-rocky-9",
        "name": "Rocky Linux 9",
        "os": "Rocky Linux 9.4 (64-bit)",
        "vcpus": 2,
        "memory_gib": 4.0,
        "disk_gib": 40,
    }

    # A connection taken out of service disappears from the form.
    r = client.patch(f"{API}/connections/{lab['id']}", json={"active": False}, headers=heads["admin"])
    assert r.status_code == 200 and r.json()["active"] is False
    names = {t["connection"] for t in client.get(f"{API}/templates", headers=heads["unit_admin"]).json()}
    assert names == {"simulator"}

    # One connection's templates: center and auditor; an unreachable hypervisor is a 502 with its message.
    r = client.get(f"{API}/connections/{sim.id}/templates", headers=heads["auditor"])
    assert r.status_code == 200 and len(r.json()) >= 5
    assert client.get(f"{API}/connections/{sim.id}/templates", headers=heads["unit_admin"]).status_code == 403
    r = client.get(f"{API}/connections/{broken['id']}/templates", headers=heads["operator"])
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "hypervisor_error"
    SimulatorAdapter.drop_memory_worlds()
