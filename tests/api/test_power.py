"""Power operations and decommissioning through the HTTP API (issue 2, point 7).

Tasks run inline: the 202 answer comes first, the task runs right after the request's commit, so a
GET of the operation afterwards shows its outcome. The simulator is read back through the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from hypervisors import ConnectionConfig, HypervisorKind, create
from hypervisors.base import NotFound as HypervisorNotFound
from hypervisors.base import PowerState, Retriable, TaskFailed
from hypervisors.simulator import SimulatorAdapter
from tests.factories import Factory
from vmportal.audit.models import AuditEntry
from vmportal.audit.service import Who, verify
from vmportal.identity.models import User
from vmportal.kit import db
from vmportal.network.models import IPAllocation
from vmportal.unit.models import Unit
from vmportal.vm import service
from vmportal.vm.models import VM, PowerOperation, PowerOpState

API = "/api/v1"


class Logins(dict[str, dict[str, str]]):
    """Bearer headers by name, logging in on first use (argon2 makes every login cost)."""

    def __init__(self, client: TestClient, factory: Factory, users: dict[str, User]) -> None:
        super().__init__()
        self.client, self.factory, self.users = client, factory, users

    def __missing__(self, name: str) -> dict[str, str]:
        self[name] = self.factory.login(self.client, self.users[name])
        return self[name]


@dataclass
class World:
    client: TestClient
    factory: Factory
    unit_a: Unit
    unit_b: Unit
    vm: VM
    headers: Logins

    def power(self, who: str, action: str, vm_id: int | None = None, **extra: Any) -> Any:
        return self.client.post(
            f"{API}/vms/{vm_id or self.vm.id}/power",
            json={"action": action, **extra},
            headers=self.headers[who],
        )

    def get(self, who: str, path: str) -> Any:
        return self.client.get(f"{API}{path}", headers=self.headers[who])


@pytest.fixture
def world(client: TestClient, factory: Factory) -> World:
    unit_a, unit_b = factory.unit(), factory.unit()
    users = {
        "a_admin": factory.user("unit_admin", unit_a),
        "a_lead": factory.user("unit_lead", unit_a),
        "b_admin": factory.user("unit_admin", unit_b),
        "b_lead": factory.user("unit_lead", unit_b),
        "auditor": factory.user("auditor"),
        "center_admin": factory.user("center_admin"),
        "operator": factory.user("center_operator"),
    }
    vm = factory.vm(unit_a, name="a-web-01")
    return World(client, factory, unit_a, unit_b, vm, Logins(client, factory, users))


def simulator(world: World) -> SimulatorAdapter:
    adapter = create(
        ConnectionConfig(kind=HypervisorKind.SIMULATOR, url=world.factory.settings.simulator_state_url)
    )
    assert isinstance(adapter, SimulatorAdapter)
    return adapter


def audit_rows(action: str, target_id: int | None = None) -> list[AuditEntry]:
    with db.transaction() as s:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(col(AuditEntry.id))
        if target_id is not None:
            query = query.where(AuditEntry.target_id == str(target_id))
        return list(s.exec(query))


def operations(vm_id: int) -> list[PowerOperation]:
    with db.transaction() as s:
        return list(
            s.exec(
                select(PowerOperation).where(PowerOperation.vm_id == vm_id).order_by(col(PowerOperation.id))
            )
        )


def vm_row(vm_id: int) -> VM:
    with db.transaction() as s:
        vm = s.get(VM, vm_id)
        assert vm is not None
        return vm


def set_vm(vm_id: int, **fields: Any) -> None:
    with db.transaction() as s:
        vm = s.get(VM, vm_id)
        assert vm is not None
        for key, value in fields.items():
            setattr(vm, key, value)
        s.add(vm)


# ---- who may power which VM ------------------------------------------------------------------------


def test_another_units_admin_can_neither_see_nor_power_the_vm(world: World) -> None:
    assert world.get("b_admin", f"/vms/{world.vm.id}").status_code == 404
    assert world.get("b_admin", f"/vms/{world.vm.id}/operations").status_code == 404
    listed = world.get("b_admin", "/vms").json()
    assert world.vm.id not in [v["id"] for v in listed["items"]]

    r = world.power("b_admin", "stop")
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"
    # The same answer as for a VM that does not exist: nothing tells unit B the VM is there.
    missing = world.power("b_admin", "stop", vm_id=999_999)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"].replace("999999", "X") == r.json()["error"]["message"].replace(
        str(world.vm.id), "X"
    )

    assert operations(world.vm.id or 0) == []
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.RUNNING
    # The center still sees the probe.
    denied = audit_rows("vm.power.request", world.vm.id)
    assert [(a.actor_role, a.result) for a in denied] == [("unit_admin", "denied")]


@pytest.mark.parametrize("who", ["a_lead", "auditor"])
def test_unit_lead_and_auditor_are_refused_with_power_ops(world: World, who: str) -> None:
    # Both can read the VM ...
    assert world.get(who, f"/vms/{world.vm.id}").status_code == 200
    # ... but not power it.
    r = world.power(who, "stop", reason="trying")
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "policy_denied"
    assert error["rule"] == "power_ops"
    assert error["rules"] == ["power_ops"]
    assert error["message"] and error["message_zh"] and error["message"] != error["message_zh"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in error["message_zh"])
    assert error["denials"][0]["clause"] == "plan 二(二)4"

    assert operations(world.vm.id or 0) == []  # nothing half-written
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.RUNNING
    denied = audit_rows("vm.power.request", world.vm.id)
    assert len(denied) == 1
    assert denied[0].result == "denied"
    assert "power_ops" in denied[0].detail
    assert denied[0].after == {"action": "stop", "reason": "trying"}


def test_other_units_lead_gets_404_not_403(world: World) -> None:
    assert world.power("b_lead", "start").status_code == 404


def test_unit_admin_powers_own_vm_and_it_is_recorded(world: World) -> None:
    vm_id = world.vm.id
    version = vm_row(vm_id or 0).version
    r = world.power("a_admin", "stop", reason="maintenance window")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["state"] == "pending"
    assert body["action"] == "stop"
    assert body["vm_id"] == vm_id
    assert body["links"]["self"] == f"{API}/operations/{body['id']}"
    assert r.headers["Location"] == body["links"]["self"]

    done = world.get("a_admin", f"/operations/{body['id']}").json()
    assert done["state"] == "succeeded", done
    assert (done["power_before"], done["power_after"]) == ("running", "stopped")
    assert (
        done["requested_by_username"]
        == world.client.get(f"{API}/auth/me", headers=world.headers["a_admin"]).json()["username"]
    )
    assert done["started_at"] and done["finished_at"] and done["error"] == ""

    # The hypervisor really did it, and the portal's row agrees.
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.STOPPED
    got = world.get("a_admin", f"/vms/{vm_id}").json()
    assert got["power_state"] == "stopped"
    assert got["version"] == version + 1

    # Start it again; the history lists both, newest first, with who/what/when/result.
    r = world.power("a_admin", "start")
    assert r.status_code == 202
    history = world.get("a_lead", f"/vms/{vm_id}/operations").json()
    assert history["total"] == 2
    assert [(o["action"], o["state"], o["reason"]) for o in history["items"]] == [
        ("start", "succeeded", ""),
        ("stop", "succeeded", "maintenance window"),
    ]
    assert all(o["requested_by_username"] == done["requested_by_username"] for o in history["items"])
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.RUNNING

    # Audited: the request and the outcome, by the unit admin, and the chain holds.
    requested = audit_rows("vm.power.request", vm_id)
    applied = audit_rows("vm.power", vm_id)
    assert [(a.actor_role, a.result, (a.after or {})["action"]) for a in requested] == [
        ("unit_admin", "ok", "stop"),
        ("unit_admin", "ok", "start"),
    ]
    assert [(a.result, (a.before or {})["power_state"], (a.after or {})["power_state"]) for a in applied] == [
        ("ok", "running", "stopped"),
        ("ok", "stopped", "running"),
    ]
    assert all(a.unit_id == world.unit_a.id for a in requested + applied)
    with db.transaction() as s:
        assert verify(s).ok


def test_every_action_through_the_adapter(world: World) -> None:
    ref = world.vm.hypervisor_ref
    adapter = simulator(world)
    for action, expected in [
        ("reboot", PowerState.RUNNING),
        ("restart", PowerState.RUNNING),
        ("shutdown", PowerState.STOPPED),
        ("start", PowerState.RUNNING),
        ("stop", PowerState.STOPPED),
        ("stop", PowerState.STOPPED),  # stopping a stopped VM is accepted and does nothing
    ]:
        r = world.power("operator", action)
        assert r.status_code == 202, (action, r.text)
        op = world.get("operator", r.json()["links"]["self"].removeprefix(API)).json()
        assert op["state"] == "succeeded", op
        assert adapter.get_vm(ref).power_state is expected
    assert [o.state for o in operations(world.vm.id or 0)] == [PowerOpState.SUCCEEDED] * 6


def test_center_staff_may_power_any_units_vm(world: World) -> None:
    for who, action in [("operator", "stop"), ("center_admin", "start")]:
        r = world.power(who, action)
        assert r.status_code == 202, r.text
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.RUNNING


# ---- states that refuse --------------------------------------------------------------------------


def test_restart_of_a_stopped_vm_is_409_naming_the_state(world: World) -> None:
    assert world.power("a_admin", "stop").status_code == 202
    for action in ("restart", "reboot"):
        r = world.power("a_admin", action)
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "state_conflict"
        assert error["state"] == "stopped"
        assert error["action"] == action
        assert "stopped" in error["message"] and "stopped" in error["message_zh"]
    assert [o.action for o in operations(world.vm.id or 0)] == ["stop"]


def test_suspended_vm_refuses_start_by_its_unit_but_not_the_center(world: World) -> None:
    vm_id = world.vm.id or 0
    assert world.power("a_admin", "stop").status_code == 202
    set_vm(vm_id, security_state="suspended")

    r = world.power("a_admin", "start")
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["rule"] == "suspended_lock"
    assert error["message"] and error["message_zh"]
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.STOPPED
    assert audit_rows("vm.power.request", vm_id)[-1].result == "denied"

    # The unit may still power it down (only reduces harm); it is already stopped: a no-op.
    assert world.power("a_admin", "stop").status_code == 202

    # The center may bring it back.
    r = world.power("operator", "start", reason="rectification verified")
    assert r.status_code == 202, r.text
    assert world.get("operator", f"/operations/{r.json()['id']}").json()["state"] == "succeeded"
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.RUNNING

    # Running but still suspended: a unit restart is refused too.
    r = world.power("a_admin", "restart")
    assert r.status_code == 403
    assert r.json()["error"]["rule"] == "suspended_lock"


def test_suspension_after_the_request_is_enforced_when_the_task_runs(world: World, factory: Factory) -> None:
    """A start accepted just before the center suspended the VM must not power it on."""
    vm_id = world.vm.id or 0
    set_vm(vm_id, power_state="stopped")
    simulator(world).power(world.vm.hypervisor_ref, "stop")  # type: ignore[arg-type]
    admin_id = world.client.get(f"{API}/auth/me", headers=world.headers["a_admin"]).json()["id"]
    with db.transaction() as s:
        op = PowerOperation(vm_id=vm_id, action="start", requested_by=admin_id, power_before="stopped")
        s.add(op)
        s.flush()
        op_id = op.id or 0
        service.set_security_state(s, vm_id, "suspended", who=Who.system("alert"), reason="webshell")  # type: ignore[arg-type]
    assert service.execute_power(op_id) == "failed"
    done = operations(vm_id)[-1]
    assert done.state == PowerOpState.FAILED
    assert "suspended_lock" in done.error
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.STOPPED
    assert audit_rows("vm.power", vm_id)[-1].result == "denied"
    assert audit_rows("vm.security_state", vm_id)[-1].after == {
        "security_state": "suspended",
        "reason": "webshell",
        "version": vm_row(vm_id).version,
    }


def test_hypervisor_failure_is_recorded_on_the_operation(world: World) -> None:
    simulator(world).inject_fault("power", TaskFailed("Host sim-esx-01 is in maintenance mode"))
    r = world.power("a_admin", "stop")
    assert r.status_code == 202
    op = world.get("a_admin", f"/operations/{r.json()['id']}").json()
    assert op["state"] == "failed"
    assert op["error"] == "Host sim-esx-01 is in maintenance mode"
    assert op["power_after"] == "running"
    assert world.get("a_admin", f"/vms/{world.vm.id}").json()["power_state"] == "running"
    assert audit_rows("vm.power", world.vm.id)[-1].result == "failed"


def test_retriable_hypervisor_error_is_retried(world: World) -> None:
    simulator(world).inject_fault("power", Retriable("vCenter busy", defer=0.01), times=2)
    r = world.power("a_admin", "stop")
    assert r.status_code == 202
    op = world.get("a_admin", f"/operations/{r.json()['id']}").json()
    assert op["state"] == "succeeded", op
    assert op["error"] == ""
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.STOPPED


# ---- the task: idempotent and ordered -------------------------------------------------------------


def test_redelivered_task_does_nothing_for_a_finished_operation(world: World) -> None:
    r = world.power("a_admin", "restart")
    op_id = r.json()["id"]
    adapter = simulator(world)
    tasks_before = len(adapter.task_log(world.vm.hypervisor_ref))
    version = vm_row(world.vm.id or 0).version
    assert service.execute_power(op_id) == "already succeeded"
    assert len(adapter.task_log(world.vm.hypervisor_ref)) == tasks_before
    assert vm_row(world.vm.id or 0).version == version


def test_a_running_operation_left_by_a_dead_worker_is_reapplied(world: World) -> None:
    vm_id = world.vm.id or 0
    with db.transaction() as s:
        op = PowerOperation(vm_id=vm_id, action="stop", state=PowerOpState.RUNNING, power_before="running")
        s.add(op)
        s.flush()
        op_id = op.id or 0
    assert service.execute_power(op_id) == "succeeded"
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.STOPPED


def test_operations_of_one_vm_run_in_id_order_whatever_order_tasks_arrive(world: World) -> None:
    vm_id = world.vm.id or 0
    ids = []
    with db.transaction() as s:
        for action in ("stop", "start", "restart", "shutdown"):
            op = PowerOperation(vm_id=vm_id, action=action, power_before="")
            s.add(op)
            s.flush()
            ids.append(op.id or 0)
    # The last task is delivered first: it runs the earlier ones first, in order.
    assert service.execute_power(ids[-1]) == "succeeded"
    for op_id in ids[:-1]:
        assert service.execute_power(op_id).startswith("already")
    ops = operations(vm_id)
    assert [o.state for o in ops] == [PowerOpState.SUCCEEDED] * 4
    assert [(o.power_before, o.power_after) for o in ops] == [
        ("running", "stopped"),
        ("stopped", "running"),
        ("running", "running"),
        ("running", "stopped"),
    ]
    finished = [o.finished_at for o in ops]
    assert finished == sorted(finished)  # type: ignore[type-var]
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.STOPPED
    assert vm_row(vm_id).power_state == "stopped"


def test_apply_power_for_the_security_workflow(world: World) -> None:
    vm_id = world.vm.id or 0
    with db.transaction() as s:
        op = service.apply_power(s, vm_id, "stop", who=Who.system("containment"), reason="trojan")  # type: ignore[arg-type]
        assert op.state == PowerOpState.SUCCEEDED
        assert op.requested_by is None
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.STOPPED
    history = world.get("operator", f"/vms/{vm_id}/operations").json()["items"]
    assert history[0]["requested_by"] is None and history[0]["reason"] == "trojan"


# ---- decommission ----------------------------------------------------------------------------------


def test_decommission_deletes_the_vm_releases_its_ip_and_closes_power(world: World, factory: Factory) -> None:
    vm_id = world.vm.id or 0
    pool = factory.pool()
    with db.transaction() as s:
        s.add(IPAllocation(pool_id=pool.id or 0, address=world.vm.ip_address or "", vm_id=vm_id))

    assert (
        world.client.post(
            f"{API}/vms/{vm_id}/decommission", json={"reason": "x"}, headers=world.headers["a_admin"]
        ).status_code
        == 403
    )
    r = world.client.post(
        f"{API}/vms/{vm_id}/decommission", json={"reason": ""}, headers=world.headers["operator"]
    )
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "reason"

    r = world.client.post(
        f"{API}/vms/{vm_id}/decommission",
        json={"reason": "system retired"},
        headers=world.headers["operator"],
    )
    assert r.status_code == 202, r.text
    assert r.json()["lifecycle"] == "decommissioned"

    with pytest.raises(HypervisorNotFound):
        simulator(world).get_vm(world.vm.hypervisor_ref)
    with db.transaction() as s:
        allocation = s.exec(select(IPAllocation).where(IPAllocation.vm_id == vm_id)).one()
        assert allocation.released_at is not None
    got = world.get("operator", f"/vms/{vm_id}").json()
    assert got["lifecycle"] == "decommissioned" and got["decommissioned_at"]

    r = world.power("a_admin", "start")
    assert r.status_code == 409, r.text
    assert r.json()["error"]["state"] == "decommissioned"
    assert world.power("operator", "stop").status_code == 409

    assert (
        world.client.post(
            f"{API}/vms/{vm_id}/decommission", json={"reason": "again"}, headers=world.headers["operator"]
        ).status_code
        == 409
    )
    assert [a.result for a in audit_rows("vm.decommission.request", vm_id)] == ["ok"]
    assert [a.result for a in audit_rows("vm.decommission", vm_id)] == ["ok"]
    assert service.execute_decommission(vm_id) == "already done"


def test_failed_hypervisor_delete_can_be_asked_again(world: World) -> None:
    vm_id = world.vm.id or 0
    simulator(world).inject_fault("delete", TaskFailed("datastore locked"))
    r = world.client.post(
        f"{API}/vms/{vm_id}/decommission", json={"reason": "retire"}, headers=world.headers["operator"]
    )
    assert r.status_code == 202
    assert vm_row(vm_id).decommissioned_at is None
    assert audit_rows("vm.decommission", vm_id)[-1].result == "failed"
    assert world.power("a_admin", "stop").status_code == 409  # closed to power at once

    r = world.client.post(
        f"{API}/vms/{vm_id}/decommission", json={"reason": "retry"}, headers=world.headers["operator"]
    )
    assert r.status_code == 202
    assert vm_row(vm_id).decommissioned_at is not None
    with pytest.raises(HypervisorNotFound):
        simulator(world).get_vm(world.vm.hypervisor_ref)


# ---- bad input ---------------------------------------------------------------------------------------


def test_unknown_action_is_422_naming_action(world: World) -> None:
    r = world.power("a_admin", "explode")
    assert r.status_code == 422, r.text
    fields = r.json()["error"]["fields"]
    assert [f["field"] for f in fields] == ["action"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "action"),
        ({"action": "start", "reason": "x" * 501}, "reason"),
        ({"action": "start", "force": True}, "force"),
        ({"action": 3}, "action"),
    ],
)
def test_bad_power_bodies_name_the_field(world: World, body: dict[str, Any], field: str) -> None:
    r = world.client.post(f"{API}/vms/{world.vm.id}/power", json=body, headers=world.headers["a_admin"])
    assert r.status_code == 422, r.text
    assert field in [f["field"] for f in r.json()["error"]["fields"]]
    assert operations(world.vm.id or 0) == []


def test_malformed_json_is_400(world: World) -> None:
    r = world.client.post(
        f"{API}/vms/{world.vm.id}/power",
        content=b'{"action": "start",',
        headers={**world.headers["a_admin"], "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize("vm_id", ["abc", "0", "-1", str(2**40)])
def test_bad_vm_ids_are_422(world: World, vm_id: str) -> None:
    r = world.client.post(
        f"{API}/vms/{vm_id}/power", json={"action": "start"}, headers=world.headers["a_admin"]
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["fields"][0]["field"] == "vm_id"


def test_power_needs_a_login(world: World) -> None:
    r = world.client.post(f"{API}/vms/{world.vm.id}/power", json={"action": "start"})
    assert r.status_code == 401


def test_a_vm_being_delivered_takes_no_power_or_decommission(world: World) -> None:
    vm_id = world.vm.id or 0
    set_vm(vm_id, lifecycle="provisioning")
    r = world.power("operator", "stop")
    assert r.status_code == 409 and r.json()["error"]["state"] == "provisioning"
    r = world.client.post(
        f"{API}/vms/{vm_id}/decommission", json={"reason": "x"}, headers=world.headers["operator"]
    )
    assert r.status_code == 409, r.text
    assert r.json()["error"]["state"] == "provisioning"
    assert simulator(world).get_vm(world.vm.hypervisor_ref).power_state is PowerState.RUNNING


def test_a_vm_missing_on_the_hypervisor_can_be_decommissioned(world: World) -> None:
    vm_id = world.vm.id or 0
    simulator(world).delete(world.vm.hypervisor_ref)
    set_vm(vm_id, lifecycle="missing")
    r = world.client.post(
        f"{API}/vms/{vm_id}/decommission", json={"reason": "gone"}, headers=world.headers["operator"]
    )
    assert r.status_code == 202, r.text
    assert vm_row(vm_id).decommissioned_at is not None


def test_unknown_power_state_refuses_until_the_next_sync(world: World) -> None:
    set_vm(world.vm.id or 0, power_state="unknown")
    r = world.power("a_admin", "start")
    assert r.status_code == 409
    assert r.json()["error"]["state"] == "unknown"
