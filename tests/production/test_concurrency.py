"""Concurrency on the production path (issue 5): two center users approving the same request at the same
moment through two API processes make one provisioning; 200 concurrent power requests over 20 VMs are
all recorded and applied one at a time per VM, in order, with no lost update, and the portal ends
agreeing with vcsim."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from sqlmodel import col, select

from hypervisors import create
from tests.production.conftest import API, make_portal, register_fleet, vms_of_request
from tests.production.harness import Stack, wait_for
from tests.support.vcsim import VcsimServer
from vmportal.audit.models import AuditEntry
from vmportal.jobs.models import OutboxTask
from vmportal.kit import db
from vmportal.vm.models import VM, PowerOperation

RACES = 6
VMS = 20
POWER_REQUESTS = 200
CLIENTS = 40


def test_two_operators_approve_the_same_request_at_once(stack: Stack, prod_vcsim: VcsimServer) -> None:
    api = stack.api(workers=2, wait=False)  # two API processes: the race is between processes
    stack.up(api, stack.worker("w1", concurrency=2, wait=False))
    portal = make_portal(stack, api, prod_vcsim)
    requests = [portal.submit(f"race-{i}")["id"] for i in range(RACES)]

    answers: dict[int, list[tuple[str, int, dict[str, Any]]]] = defaultdict(list)
    lock = threading.Lock()

    def approve(who: str, request_id: int, start: threading.Barrier) -> None:
        with httpx.Client(base_url=api.base_url, timeout=30) as http:  # a connection of its own
            http.get("/healthz")  # connected before the barrier: both calls leave together
            start.wait(timeout=30)
            r = http.post(f"{API}/requests/{request_id}/approve", json={}, headers=portal.heads[who])
        with lock:
            answers[request_id].append((who, r.status_code, r.json()))

    for request_id in requests:
        start = threading.Barrier(2)
        threads = [
            threading.Thread(target=approve, args=(who, request_id, start))
            for who in ("operator", "operator2")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)

    for request_id in requests:
        codes = sorted(code for _, code, _ in answers[request_id])
        assert codes == [200, 409], answers[request_id]
        [(_, _, conflict)] = [a for a in answers[request_id] if a[1] == 409]
        assert conflict["error"]["code"] == "state_conflict", conflict

    wait_for(
        lambda: all(portal.request_state(r) == "delivered" for r in requests),
        timeout=90,
        what="every raced request delivered",
        describe=stack.logs,
    )
    on_vcsim = create(prod_vcsim.config()).list_vms()
    with db.transaction() as s:
        outbox = [r.arguments["vm_request_id"] for r in s.exec(select(OutboxTask))]
        approvals = [
            int(e.target_id) for e in s.exec(select(AuditEntry).where(AuditEntry.action == "request.approve"))
        ]
    for request_id in requests:
        assert outbox.count(request_id) == 1  # one provisioning task
        assert approvals.count(request_id) == 1  # one recorded decision
        [vm] = vms_of_request(request_id)
        assert [v.ref for v in on_vcsim if v.name == vm.name] == [vm.hypervisor_ref]
    [usage] = portal.get("center_admin", "/reports/quota", unit_id=portal.unit_id)["units"]
    assert usage["vms"]["used"] == RACES and usage["vms"]["requested"] == 0, usage  # each counted once


def test_200_concurrent_power_requests_over_20_vms(stack: Stack, prod_vcsim: VcsimServer) -> None:
    api = stack.api(workers=2, wait=False)
    stack.up(api, stack.worker("w1", concurrency=8, wait=False))
    portal = make_portal(stack, api, prod_vcsim)
    fleet = register_fleet(portal, prod_vcsim, first=0, count=VMS)
    rng = random.Random(20260316)
    plan = [(vm.id, rng.choice(["start", "stop"])) for vm in fleet for _ in range(POWER_REQUESTS // VMS)]
    rng.shuffle(plan)

    local = threading.local()

    def request(item: tuple[int | None, str]) -> tuple[int | None, str, int, Any]:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=api.base_url, timeout=60)
        vm_id, action = item
        r = local.http.post(
            f"{API}/vms/{vm_id}/power", json={"action": action}, headers=portal.heads["admin"]
        )
        return vm_id, action, r.status_code, r.json()

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(request, plan))
    assert [code for _, _, code, _ in answers] == [202] * POWER_REQUESTS, [a for a in answers if a[2] != 202]
    accepted = {body["id"]: (vm_id, action) for vm_id, action, _, body in answers}
    assert len(accepted) == POWER_REQUESTS  # every request its own operation

    def finished() -> bool:
        with db.transaction() as s:
            states = s.exec(select(PowerOperation.state).where(col(PowerOperation.id).in_(accepted))).all()
        return len(states) == POWER_REQUESTS and all(st in ("succeeded", "failed") for st in states)

    wait_for(finished, timeout=240, what="all 200 power operations to finish", describe=stack.logs)

    adapter = create(prod_vcsim.config())
    with db.transaction() as s:
        ops = list(s.exec(select(PowerOperation).where(col(PowerOperation.id).in_(accepted))))
        vms = {vm.id: vm for vm in s.exec(select(VM).where(col(VM.id).in_([v.id for v in fleet])))}
        audit = list(
            s.exec(select(AuditEntry).where(AuditEntry.action == "vm.power").order_by(col(AuditEntry.id)))
        )
        # The power rule: a start or stop asked while nothing is queued for the VM and its state
        # already holds succeeds at once, without a hypervisor call (recorded on its request row).
        noops = {
            e.after["operation_id"]
            for e in s.exec(select(AuditEntry).where(AuditEntry.action == "vm.power.request"))
            if e.after.get("noop")
        }
    assert sorted(op.state for op in ops) == ["succeeded"] * POWER_REQUESTS, [
        op.error for op in ops if op.error
    ]
    by_vm: dict[int, list[PowerOperation]] = defaultdict(list)
    for op in sorted(ops, key=lambda o: o.id or 0):
        by_vm[op.vm_id].append(op)
    applied_order: dict[int, list[int]] = defaultdict(list)
    for entry in audit:
        applied_order[int(entry.target_id)].append(entry.after["operation_id"])
    initial = {vm.id: vm.power_state for vm in fleet}
    for vm_id, vm_ops in by_vm.items():
        ids = [op.id for op in vm_ops]
        assert [accepted[i] for i in ids] == [(vm_id, op.action) for op in vm_ops]
        # Applied one at a time, in id order: each saw the state the previous one left.
        applied = [i for i in ids if i not in noops]
        assert applied_order[vm_id] == applied, (vm_id, applied_order[vm_id], applied)
        finished_at = [op.finished_at for op in vm_ops]
        assert finished_at == sorted(finished_at)  # type: ignore[type-var]
        expected_before = initial[vm_id]
        for op in vm_ops:
            assert op.power_before == expected_before, (vm_id, op.id, op.power_before, expected_before)
            expected_before = "running" if op.action == "start" else "stopped"
            assert op.power_after == expected_before, (vm_id, op.id, op.action, op.power_after)
        vm = vms[vm_id]
        # No lost update: one version bump per applied operation, and the last one decides the state.
        assert vm.version == len(applied), (vm_id, vm.version)
        assert vm.power_state == expected_before
        assert str(adapter.get_vm(vm.hypervisor_ref).power_state) == vm.power_state, vm.name
    assert len(by_vm) == VMS
    assert portal.get("auditor", "/audit/verify")["ok"] is True
