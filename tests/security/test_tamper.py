"""Containment that holds: the inventory watcher sees changes made on the hypervisor behind the
portal's back, and a contained VM reconnected there is isolated again, its timeline says so and a
mail is queued for the unit and the center."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from hypervisors.base import PowerAction
from tests.factories import Factory
from tests.security.helpers import center_admin, incidents, nics, post, register, simulator, suricata_c2
from vmportal.inventory import watcher
from vmportal.kit import db
from vmportal.mail.models import Notification
from vmportal.vm.models import VM


def _wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture
def watching(factory: Factory) -> Iterator[threading.Event]:
    conn = factory.connection()
    assert conn.id is not None
    stop = threading.Event()
    thread = threading.Thread(target=watcher.watch_connection, args=(conn.id, stop), daemon=True)
    thread.start()
    yield stop
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_vm_powered_off_behind_the_portals_back_is_seen_within_seconds(
    factory: Factory, watching: threading.Event
) -> None:
    vm = factory.vm(factory.unit())
    simulator(factory).power(vm.hypervisor_ref, PowerAction.STOP)

    def stored() -> str:
        with db.transaction(read_only=True) as s:
            row = s.get(VM, vm.id)
            assert row is not None
            return row.power_state if row.power_state == "stopped" else ""

    assert _wait_for(stored) == "stopped"


def test_a_contained_vm_reconnected_on_the_hypervisor_is_isolated_again(
    client: TestClient, factory: Factory, watching: threading.Event
) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata")
    assert post(client, source, suricata_c2(vm.ip_address)).status_code == 202
    [incident] = incidents(client, h, vm_id=vm.id)
    assert incident["state"] == "contained" and not any(nics(factory, vm))

    simulator(factory).set_network(vm.hypervisor_ref, True)  # an administrator in vCenter
    assert any(nics(factory, vm))

    def tampered() -> list[dict[str, Any]]:
        timeline = client.get(f"/api/v1/incidents/{incident['id']}/timeline", headers=h).json()
        return [e for e in timeline if e["kind"] == "tampered"]

    [event] = _wait_for(tampered)
    assert event["data"]["restored"] is True and event["data"]["changed"] == {"network_connected": True}
    assert "重新处置" in event["message_zh"]
    assert not any(nics(factory, vm))  # isolated again on the hypervisor
    with db.transaction(read_only=True) as s:
        mails = s.exec(select(Notification)).all()
    tamper_mails = [m for m in mails if "在平台之外被改动" in m.subject]
    assert len(tamper_mails) == 1 and vm.name in tamper_mails[0].subject
    assert client.get(f"/api/v1/incidents/{incident['id']}", headers=h).json()["state"] == "contained"


def test_one_watcher_per_connection(factory: Factory) -> None:
    conn = factory.connection()
    assert conn.id is not None
    with watcher.lease(conn.id) as first, watcher.lease(conn.id) as second:
        assert first is True and second is False
    with watcher.lease(conn.id) as again:
        assert again is True  # freed when the holder stopped
