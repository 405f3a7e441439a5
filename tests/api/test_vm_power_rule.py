"""The power rule (issue 11 point 13, docs/decisions.md "Power semantics"): start, stop and shutdown
are idempotent (202, nothing sent to the hypervisor when the state already holds); restart and
reboot need a running VM (409 naming the state); guest operations need the adapter's capability
(422 naming the field and the rule); the power task holds no transaction during the adapter call."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from hypervisors.base import PowerAction, PowerState, Retriable
from hypervisors.simulator import SimulatorAdapter
from tests.api import test_power
from tests.api.test_power import World, operations, set_vm, simulator
from vmportal.connection.models import HypervisorConnection
from vmportal.kit import db
from vmportal.vm import service
from vmportal.vm.models import PowerOperation, PowerOpState
from vmportal.vm.service import power as power_module
from vmportal.vm.service.power import POWER_LEASE

#: The VM, its units and their users (the fixture of tests/api/test_power.py).
world = test_power.world


def test_start_of_a_running_and_stop_of_a_stopped_vm_answer_202_and_send_nothing(world: World) -> None:
    vm_id = world.vm.id or 0
    ref = world.vm.hypervisor_ref
    # Behind the portal's back the VM is stopped; the portal still records it running. A start
    # that reached the hypervisor would power it on: it stays stopped, so nothing was sent.
    simulator(world).set_power_state(ref, PowerState.STOPPED)
    r = world.power("a_admin", "start")
    assert r.status_code == 202, r.text
    op = world.get("a_admin", f"/operations/{r.json()['id']}").json()
    assert op["state"] == "succeeded"
    assert simulator(world).get_vm(ref).power_state is PowerState.STOPPED

    set_vm(vm_id, power_state="stopped")
    simulator(world).set_power_state(ref, PowerState.RUNNING)
    for action in ("stop", "shutdown"):
        r = world.power("a_admin", action)
        assert r.status_code == 202, (action, r.text)
        assert world.get("a_admin", f"/operations/{r.json()['id']}").json()["state"] == "succeeded"
    assert simulator(world).get_vm(ref).power_state is PowerState.RUNNING
    assert [o.action for o in operations(vm_id)] == ["start", "stop", "shutdown"]


def test_reboot_and_restart_of_a_stopped_vm_are_409_in_both_languages(world: World) -> None:
    set_vm(world.vm.id or 0, power_state="stopped")
    for action in ("restart", "reboot"):
        r = world.power("a_admin", action)
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["state"] == "stopped" and error["action"] == action
        assert "stopped" in error["message"] and "stopped" in error["message_zh"]


def test_guest_operations_without_the_capability_are_422_naming_action(world: World) -> None:
    with db.transaction() as s:
        conn = s.exec(select(HypervisorConnection).where(HypervisorConnection.name == "simulator")).one()
        conn.defaults = {**(conn.defaults or {}), "lacks": "guest_power"}
        s.add(conn)
    try:
        for action in ("shutdown", "reboot"):
            r = world.power("a_admin", action)
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert error["fields"][0]["field"] == "action"
            assert error["fields"][0]["rule"] == "guest_power"
            assert error["message_zh"]
        # Hard operations need no guest: still accepted.
        assert world.power("a_admin", "restart").status_code == 202
    finally:
        with db.transaction() as s:
            conn = s.exec(select(HypervisorConnection).where(HypervisorConnection.name == "simulator")).one()
            conn.defaults = {k: v for k, v in (conn.defaults or {}).items() if k != "lacks"}
            s.add(conn)


def test_the_power_task_writes_while_the_hypervisor_works(world: World, monkeypatch: Any) -> None:
    """During the adapter call another transaction can write (on SQLite: the write lock is free)."""
    wrote: list[bool] = []
    original = SimulatorAdapter.power

    def slow_power(self: SimulatorAdapter, ref: str, action: PowerAction) -> Any:
        def writer() -> None:
            with db.transaction() as s:
                s.exec(sa.text("UPDATE vm SET name = name WHERE id = :id"), params={"id": world.vm.id})  # type: ignore[call-overload]
            wrote.append(True)

        t = threading.Thread(target=writer)
        t.start()
        t.join(timeout=10)
        return original(self, ref, action)

    monkeypatch.setattr(SimulatorAdapter, "power", slow_power)
    r = world.power("a_admin", "restart")
    assert r.status_code == 202, r.text
    assert wrote == [True]
    assert world.get("a_admin", f"/operations/{r.json()['id']}").json()["state"] == "succeeded"


def test_an_operation_another_worker_is_applying_is_not_applied_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The task waits in place for the other worker a while before it retries; not in this test.
    monkeypatch.setattr(power_module, "HELD_WAIT", timedelta(0))
    vm_id = world.vm.id or 0
    with db.transaction() as s:
        op = PowerOperation(
            vm_id=vm_id,
            action="stop",
            state=PowerOpState.RUNNING,
            power_before="running",
            started_at=db.utcnow(),
        )
        s.add(op)
        s.flush()
        op_id = op.id or 0
    with pytest.raises(Retriable):
        service.execute_power(op_id)
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.RUNNING
    # Once its lease has run out (the worker died), a redelivery applies it.
    with db.transaction() as s:
        row = s.get(PowerOperation, op_id)
        assert row is not None
        row.started_at = db.utcnow() - POWER_LEASE - timedelta(seconds=1)
        s.add(row)
    assert service.execute_power(op_id) == "succeeded"
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.STOPPED
