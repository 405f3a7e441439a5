"""Delivery through the HTTP API (issue 2, point 6): an approved request becomes a VM on the
simulator with an address from the pool and a generated password, handed to the unit's admin once
(then 410 ``credentials_once``); provisioning failures end as ``failed`` with the adapter's message
and can be retried; a redelivered task never makes a second VM."""

from __future__ import annotations

import ipaddress
import json
import logging
import sqlite3
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import col, select

from hypervisors import ConnectionConfig, HypervisorKind, create
from hypervisors.base import TaskFailed
from hypervisors.simulator import SimulatorAdapter
from tests.api.test_requests import API, Portal, make_portal
from tests.factories import Factory
from vmportal.audit.models import AuditEntry
from vmportal.kit import db
from vmportal.kit.settings import Settings
from vmportal.network.models import IPAllocation, IPPool
from vmportal.request import service
from vmportal.request import tasks as request_tasks
from vmportal.request.models import VMRequest
from vmportal.vm.models import VM, DeliveryCredential


@pytest.fixture
def portal(client: TestClient, factory: Factory) -> Portal:
    return make_portal(client, factory, quota=(50, 200, 512, 10000))


def simulator(settings: Settings) -> SimulatorAdapter:
    adapter = create(ConnectionConfig(kind=HypervisorKind.SIMULATOR, url=settings.simulator_state_url))
    assert isinstance(adapter, SimulatorAdapter)
    return adapter


def deliver(portal: Portal, **overrides: Any) -> dict[str, Any]:
    req = portal.submitted(**overrides)
    r = portal.act("operator", req["id"], "approve")
    assert r.status_code == 200, r.text
    done = portal.get("admin", f"/requests/{req['id']}").json()
    assert done["state"] == "delivered", done
    return dict(done)


def fetch(portal: Portal, vm_id: int, who: str = "admin") -> Any:
    return portal.client.post(f"{API}/vms/{vm_id}/credentials", headers=portal.heads[who])


def test_a_delivered_vm_hands_its_credentials_over_once(
    portal: Portal, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    req = deliver(portal)
    vm_id = req["vm_id"]
    vm = portal.get("admin", f"/vms/{vm_id}").json()
    assert vm["lifecycle"] == "active" and vm["power_state"] == "running"
    assert vm["request_id"] == req["id"] and vm["admin_account"] == "vmadmin"
    address = ipaddress.ip_address(vm["ip_address"])
    assert address in ipaddress.ip_network("10.20.0.0/24")
    assert int(str(address).rsplit(".", 1)[1]) > 10  # .1–.10 are excluded in the factory's pool

    # Only the unit's admin, and only once.
    assert fetch(portal, vm_id, "other_admin").status_code == 404
    for who in ("lead", "center_admin", "operator", "auditor"):
        r = fetch(portal, vm_id, who)
        assert r.status_code == 403, who
        assert r.json()["error"]["rule"] == "credentials_once"

    r = fetch(portal, vm_id)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    creds = r.json()
    assert creds["ip_address"] == vm["ip_address"]
    assert creds["gateway"] == "10.20.0.1" and creds["dns"] == ["10.20.0.2"] and creds["prefix_length"] == 24
    assert creds["admin_account"] == "vmadmin" and creds["hostname"] == "lab-web"
    password = creds["password"]
    assert len(password) >= 16
    assert any(c.islower() for c in password) and any(c.isupper() for c in password)
    assert any(c.isdigit() for c in password) and any(not c.isalnum() for c in password)
    assert not set(password) & set("0O1lI")

    # The password is the VM's own, and the portal kept nothing of it.
    ref = portal.get("center_admin", f"/vms/{vm_id}").json()
    with db.transaction() as s:
        row = s.get(VM, vm_id)
        credential = s.get(DeliveryCredential, vm_id)
        assert row is not None and credential is not None
        hypervisor_ref = row.hypervisor_ref
        assert credential.password is None and credential.fetched_at is not None
        assert credential.fetched_by is not None
    assert ref["id"] == vm_id
    assert simulator(settings).verify_admin_password(hypervisor_ref, password)

    again = fetch(portal, vm_id)
    assert again.status_code == 410
    error = again.json()["error"]
    assert error["rule"] == "credentials_once" and error["rules"] == ["credentials_once"]
    assert "只提供一次" in error["message_zh"] and "only once" in error["message"]

    # Never in the audit log, the logs, or the database file.
    with db.transaction() as s:
        entries = s.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all()
    assert password not in json.dumps([[e.before, e.after, e.detail] for e in entries], ensure_ascii=False)
    actions = [e.action for e in entries]
    assert {
        "request.submit",
        "request.approve",
        "request.provision",
        "request.deliver",
        "vm.create",
        "vm.credentials_fetch",
    } <= set(actions)
    assert password not in caplog.text
    fetches = [e.result for e in entries if e.action == "vm.credentials_fetch"]
    assert fetches == ["denied"] * 5 + ["ok", "denied"]  # every attempt is on record, refusals too
    with db.engine().connect() as raw:  # past the ORM: what the database holds
        stored = raw.execute(
            text("SELECT password FROM delivery_credential WHERE vm_id = :id"), {"id": vm_id}
        )
        assert stored.scalar() is None
    if settings.sqlalchemy_url.startswith("sqlite"):
        dump = sqlite3.connect(settings.data_dir / "vmportal.sqlite3")
        assert password not in "\n".join(dump.iterdump())
        dump.close()
    verify = portal.get("auditor", "/audit/verify").json()
    assert verify["ok"] is True


def test_credentials_are_not_shown_before_delivery(portal: Portal) -> None:
    """The VM row exists while provisioning (it holds the password the clone uses) but is not
    handed over until the request is delivered."""
    req = portal.submitted()
    with db.transaction() as s:
        row = s.get(VMRequest, req["id"])
        assert row is not None
        row.state = "approved"
        s.add(row)
    with db.transaction() as s:
        plan = service.prepare_provisioning(s, req["id"])
        assert plan is not None
    r = fetch(portal, plan.vm_id)
    assert r.status_code == 409 and r.json()["error"]["state"] == "provisioning"
    listed = portal.get("admin", "/vms").json()
    assert plan.vm_id not in [v["id"] for v in listed["items"]]


def test_windows_templates_get_the_administrator_account(portal: Portal) -> None:
    req = deliver(
        portal, template_ref="tpl-windows-2019", vcpus=4, memory_gib=8, disk_gib=80, hostname="win-app"
    )
    creds = fetch(portal, req["vm_id"]).json()
    assert creds["admin_account"] == "Administrator"


def test_addresses_never_repeat_across_deliveries(portal: Portal) -> None:
    addresses = []
    for i in range(12):
        req = deliver(portal, hostname=f"lab-{i}", vcpus=1, memory_gib=1, disk_gib=40)
        addresses.append(portal.get("admin", f"/vms/{req['vm_id']}").json()["ip_address"])
    assert len(set(addresses)) == 12
    with db.transaction() as s:
        live = s.exec(select(IPAllocation).where(col(IPAllocation.released_at).is_(None))).all()
    assert sorted(a.address for a in live) == sorted(addresses)
    assert all(a.vm_id is not None and a.request_id is not None for a in live)
    pool = portal.get("operator", "/pools").json()[0]
    assert pool["counts"]["used"] == 12


def test_a_failed_provisioning_is_reported_and_retried(portal: Portal, settings: Settings) -> None:
    sim = simulator(settings)
    sim.inject_fault("clone", TaskFailed("Insufficient disk space on datastore 'sim-ds-01'"))
    req = portal.submitted()
    assert portal.act("operator", req["id"], "approve").status_code == 200
    failed = portal.get("admin", f"/requests/{req['id']}").json()
    assert failed["state"] == "failed"
    assert failed["failure_reason"] == "Insufficient disk space on datastore 'sim-ds-01'"
    assert failed["vm_id"] is None and failed["deadline_status"] == "on_time"
    with db.transaction() as s:
        assert s.exec(select(VM).where(VM.request_id == req["id"])).all() == []
        allocations = s.exec(select(IPAllocation).where(IPAllocation.request_id == req["id"])).all()
        assert len(allocations) == 1 and allocations[0].released_at is not None
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "request.fail")).one()
        assert entry.result == "failed" and "Insufficient disk space" in entry.detail
    assert sim.find_by_marker(service.marker_of(req["id"])) is None
    assert portal.get("operator", "/pools").json()[0]["counts"]["used"] == 0

    assert portal.act("admin", req["id"], "retry").status_code == 403
    assert portal.act("auditor", req["id"], "retry").status_code == 403
    r = portal.act("operator", req["id"], "retry")
    assert r.status_code == 200, r.text
    done = portal.get("admin", f"/requests/{req['id']}").json()
    assert done["state"] == "delivered" and done["failure_reason"] == ""
    assert done["provisioning_attempts"] == 2
    assert portal.act("operator", req["id"], "retry").json()["error"]["state"] == "delivered"
    assert fetch(portal, done["vm_id"]).status_code == 200


def test_a_missing_template_fails_the_request_with_the_hypervisors_message(portal: Portal) -> None:
    req = portal.submitted()
    with db.transaction() as s:  # the template existed at submission and was removed since
        row = s.get(VMRequest, req["id"])
        assert row is not None
        row.template_ref = "tpl-removed-last-week"
        s.add(row)
    assert portal.act("operator", req["id"], "approve").status_code == 200
    failed = portal.get("operator", f"/requests/{req['id']}").json()
    assert failed["state"] == "failed"
    assert "tpl-removed-last-week" in failed["failure_reason"]


def test_no_pool_and_an_exhausted_pool_fail_with_a_message(portal: Portal, factory: Factory) -> None:
    with db.transaction() as s:
        for pool in s.exec(select(IPPool)).all():
            pool.connection_id = None
            s.add(pool)
    req = portal.submitted()
    portal.act("operator", req["id"], "approve")
    failed = portal.get("operator", f"/requests/{req['id']}").json()
    assert failed["state"] == "failed" and "no IP pool" in failed["failure_reason"]

    tiny = factory.pool(cidr="10.99.0.0/30")  # hosts .1–.2: gateway .1 and one address
    with db.transaction() as s:
        row = s.get(IPPool, tiny.id)
        assert row is not None
        row.excluded = []
        s.add(row)
    first = portal.submitted(hostname="first", pool_id=tiny.id)
    second = portal.submitted(hostname="second", pool_id=tiny.id)
    portal.act("operator", first["id"], "approve")
    portal.act("operator", second["id"], "approve")
    assert portal.get("operator", f"/requests/{first['id']}").json()["state"] == "delivered"
    exhausted = portal.get("operator", f"/requests/{second['id']}").json()
    assert exhausted["state"] == "failed" and "no free address" in exhausted["failure_reason"]


def test_a_redelivered_task_never_makes_a_second_vm(portal: Portal, settings: Settings) -> None:
    """The worker died after the clone and before recording it: the redelivered task finds the
    placeholder and its password, the adapter finds the VM by its marker, and that VM is delivered."""
    sim = simulator(settings)
    before = len(sim.list_vms())
    req = portal.submitted()
    with db.transaction() as s:
        row = s.get(VMRequest, req["id"])
        assert row is not None
        row.state = "approved"
        s.add(row)
    with db.transaction() as s:
        plan = service.prepare_provisioning(s, req["id"])
    assert plan is not None and plan.fresh
    assert plan.spec.admin_password and plan.spec.admin_password not in repr(plan)
    first = sim.clone(plan.spec)  # ... and the worker is killed here

    assert request_tasks.provision(vm_request_id=req["id"]) == "delivered"
    assert len(sim.list_vms()) == before + 1
    done = portal.get("admin", f"/requests/{req['id']}").json()
    assert done["state"] == "delivered"
    with db.transaction() as s:
        vm = s.get(VM, done["vm_id"])
        assert vm is not None and vm.hypervisor_ref == first.ref
    password = fetch(portal, done["vm_id"]).json()["password"]
    assert sim.verify_admin_password(first.ref, password)

    # Delivered: any further delivery of the task finds nothing to do.
    assert request_tasks.provision(vm_request_id=req["id"]) == "nothing to do"
    assert len(sim.list_vms()) == before + 1


def test_a_leftover_vm_of_a_failed_attempt_is_not_resumed(portal: Portal, settings: Settings) -> None:
    """A VM left by a failed attempt has a password nobody holds: the retry removes it first."""
    sim = simulator(settings)
    req = portal.submitted()
    leftover = sim.add_unmanaged_vm("leftover", marker=service.marker_of(req["id"]))
    with db.transaction() as s:
        row = s.get(VMRequest, req["id"])
        assert row is not None
        row.state, row.provisioning_attempts = "failed", 1
        s.add(row)
    assert portal.act("operator", req["id"], "retry").status_code == 200
    done = portal.get("admin", f"/requests/{req['id']}").json()
    assert done["state"] == "delivered"
    refs = {v.ref for v in sim.list_vms()}
    assert leftover.ref not in refs
    password = fetch(portal, done["vm_id"]).json()["password"]
    with db.transaction() as s:
        vm = s.get(VM, done["vm_id"])
        assert vm is not None
    assert sim.verify_admin_password(vm.hypervisor_ref, password)


def test_an_inventory_sync_during_provisioning_does_not_duplicate_the_vm(
    portal: Portal, settings: Settings
) -> None:
    from vmportal.connection.models import HypervisorConnection
    from vmportal.inventory import service as inventory

    sim = simulator(settings)
    req = portal.submitted()
    with db.transaction() as s:
        row = s.get(VMRequest, req["id"])
        assert row is not None
        row.state = "approved"
        s.add(row)
    with db.transaction() as s:
        plan = service.prepare_provisioning(s, req["id"])
    assert plan is not None
    info = sim.clone(plan.spec)
    with db.transaction() as s:  # a sync sees the new VM before the task records it
        conn = s.get(HypervisorConnection, plan.connection.id)
        assert conn is not None
        inventory.sync_connection(s, conn)
    with db.transaction() as s:
        assert service.finish_provisioning(s, req["id"], plan.vm_id, info)
    with db.transaction() as s:
        rows = s.exec(select(VM).where(VM.hypervisor_ref == info.ref)).all()
    assert [r.id for r in rows] == [plan.vm_id]
    assert rows[0].unit_id == portal.unit.id and rows[0].registered


def test_the_embedded_portal_provisions_in_its_own_thread_pool(portal: Portal, settings: Settings) -> None:
    """task_mode thread, as `make run` has it: the approval answers first, a worker thread of the
    portal's own process delivers right after."""
    from vmportal.jobs import outbox
    from vmportal.kit.settings import use_settings

    use_settings(settings.model_copy(update={"task_mode": "thread"}))
    try:
        req = portal.submitted()
        r = portal.act("operator", req["id"], "approve")
        assert r.status_code == 200 and r.json()["state"] == "approved"
        outbox.wait_idle(timeout=60)
    finally:
        use_settings(settings)
    assert portal.get("admin", f"/requests/{req['id']}").json()["state"] == "delivered"
