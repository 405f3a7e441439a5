"""Inventory reconciliation through the API against the simulator: drift corrected, VMs deleted
behind the portal's back marked missing, unknown VMs listed for the center to assign."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import select

from hypervisors import ConnectionConfig, HypervisorKind, PowerState
from hypervisors.simulator import SimulatorAdapter
from tests.factories import Factory
from vmportal.audit.models import AuditEntry
from vmportal.kit import db
from vmportal.vm.models import VM


def _sim(factory: Factory) -> SimulatorAdapter:
    return SimulatorAdapter(ConnectionConfig(kind=HypervisorKind.SIMULATOR, url=factory.connection().url))


def _vm(vm_id: int) -> VM:
    with db.transaction() as s:
        row = s.get(VM, vm_id)
        assert row is not None
        return row


def test_power_drift_is_corrected_and_audited(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    vm = factory.vm(unit)
    center = factory.login(client, factory.user("center_admin"))
    _sim(factory).set_power_state(vm.hypervisor_ref, PowerState.STOPPED)

    r = client.post("/api/v1/inventory/sync", json={}, headers=center)
    assert r.status_code == 202, r.text

    assert _vm(vm.id or 0).power_state == "stopped"
    with db.transaction() as s:
        drift = s.exec(select(AuditEntry).where(AuditEntry.action == "vm.power_drift")).all()
    assert [(d.before, d.after) for d in drift] == [({"power_state": "running"}, {"power_state": "stopped"})]


def test_vm_deleted_behind_the_portals_back_is_marked_missing(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    vm = factory.vm(unit)
    center = factory.login(client, factory.user("center_operator"))
    _sim(factory).delete(vm.hypervisor_ref)

    client.post("/api/v1/inventory/sync", json={"connection_id": vm.connection_id}, headers=center)

    assert _vm(vm.id or 0).lifecycle == "missing"


def test_unknown_vm_is_listed_and_can_be_assigned_to_a_unit(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    system = factory.system(unit)
    unit_admin = factory.user("unit_admin", unit)
    center = factory.login(client, factory.user("center_admin"))
    _sim(factory).add_unmanaged_vm("legacy-oa-server", ips=["10.20.0.77"], vcpus=4, memory_mib=8192)

    client.post("/api/v1/inventory/sync", json={}, headers=center)
    listed = client.get("/api/v1/inventory/unregistered", headers=center).json()
    assert [(v["name"], v["ips"], v["vcpus"], v["memory_gib"]) for v in listed] == [
        ("legacy-oa-server", ["10.20.0.77"], 4, 8)
    ]
    # A second sync does not list it twice.
    client.post("/api/v1/inventory/sync", json={}, headers=center)
    assert len(client.get("/api/v1/inventory/unregistered", headers=center).json()) == 1

    admin_headers = factory.login(client, unit_admin)
    assert client.get("/api/v1/vms", headers=admin_headers).json()["items"] == []

    r = client.post(
        f"/api/v1/inventory/vms/{listed[0]['id']}/assign",
        json={"unit_id": unit.id, "system_id": system.id},
        headers=center,
    )
    assert r.status_code == 200, r.text
    assert client.get("/api/v1/inventory/unregistered", headers=center).json() == []
    names = [v["name"] for v in client.get("/api/v1/vms", headers=admin_headers).json()["items"]]
    assert names == ["legacy-oa-server"]
    assert _vm(listed[0]["id"]).ip_address == "10.20.0.77"


def test_assign_refuses_a_system_of_another_unit(client: TestClient, factory: Factory) -> None:
    unit_a, unit_b = factory.unit(), factory.unit()
    other_system = factory.system(unit_b)
    center = factory.login(client, factory.user("center_admin"))
    _sim(factory).add_unmanaged_vm("orphan")
    client.post("/api/v1/inventory/sync", json={}, headers=center)
    vm_id = client.get("/api/v1/inventory/unregistered", headers=center).json()[0]["id"]

    r = client.post(
        f"/api/v1/inventory/vms/{vm_id}/assign",
        json={"unit_id": unit_a.id, "system_id": other_system.id},
        headers=center,
    )
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "system_id"
    assert _vm(vm_id).unit_id is None


def test_only_center_staff_sync_and_assign(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    for role in ("unit_admin", "unit_lead", "auditor"):
        headers = factory.login(client, factory.user(role, unit if role.startswith("unit") else None))
        assert client.post("/api/v1/inventory/sync", json={}, headers=headers).status_code == 403
    auditor = factory.login(client, factory.user("auditor"))
    assert client.get("/api/v1/inventory/unregistered", headers=auditor).status_code == 200
