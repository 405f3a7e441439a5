"""Redis dies (``kill -9``, no persistence: every queued and unacknowledged message is gone) and comes back
empty while approvals, alerts and power requests flow through the API (issue 5): nothing is
lost, everything completes once after it returns, and ``/readyz`` and ``/metrics`` tell the truth
throughout.

The flow runs in three phases, switched by the test rather than by timing:

1. **Before**: work is accepted and sent to Redis while the hypervisor is frozen (SIGSTOP), so the
   workers are busy and messages wait in the queue: the outage is sure to destroy some.
2. **During**: Redis is dead. The API still accepts work (the change and its outbox row commit; the
   dispatch fails and is kept as ``last_error``), ``/readyz`` answers 503 naming the broker.
3. **After**: Redis is back, empty. Beat's outbox re-drive sends again both what was never
   dispatched and what Redis lost; the workers reconnect and finish it all.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import httpx
from sqlmodel import col, select

from hypervisors import create
from tests.production.conftest import API, make_portal, register_fleet, vms_of_request
from tests.production.harness import Stack, wait_for
from tests.security.helpers import post, suricata_c2
from tests.support.vcsim import VcsimServer
from vmportal.audit.models import AuditEntry
from vmportal.incidents.models import Incident
from vmportal.jobs.models import OutboxTask
from vmportal.kit import db
from vmportal.request.models import VMRequest
from vmportal.vm.models import VM, PowerOperation

REQUESTS = 9  # three per phase
ALERTED = 6  # vcsim VMs accused by an alert, two per phase
POWERED = 6  # vcsim VMs stopped or started, two per phase


def metric(text: str, name: str) -> float | None:
    found = re.search(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def outbox_summary() -> dict[str, int]:
    with db.transaction() as s:
        rows = list(s.exec(select(OutboxTask)))
    return {
        "total": len(rows),
        "completed": sum(1 for r in rows if r.completed_at is not None),
        "never_dispatched": sum(1 for r in rows if r.dispatched_at is None),
        "with_error": sum(1 for r in rows if r.last_error),
    }


def everything_done(request_ids: list[int], alerted: list[VM], op_ids: list[int]) -> bool:
    with db.transaction() as s:
        states = s.exec(select(VMRequest.state).where(col(VMRequest.id).in_(request_ids))).all()
        contained = s.exec(
            select(Incident.containment_state).where(col(Incident.vm_id).in_([v.id for v in alerted]))
        ).all()
        ops = s.exec(select(PowerOperation.state).where(col(PowerOperation.id).in_(op_ids))).all()
        pending = s.exec(select(OutboxTask.id).where(col(OutboxTask.completed_at).is_(None))).all()
    return (
        list(states) == ["delivered"] * len(request_ids)
        and sorted(contained) == ["confirmed"] * len(alerted)
        and sorted(ops) == ["succeeded"] * len(op_ids)
        and not pending
    )


def test_redis_restart_while_work_flows(stack: Stack, prod_vcsim: VcsimServer) -> None:
    api = stack.api(wait=False)
    stack.up(api, stack.worker("w1", concurrency=3, wait=False), stack.beat(wait=False))
    portal = make_portal(stack, api, prod_vcsim)
    alerted = register_fleet(portal, prod_vcsim, first=0, count=ALERTED)
    powered = register_fleet(portal, prod_vcsim, first=ALERTED, count=POWERED)
    source = portal.post("center_admin", "/alert-sources", {"name": "campus-ids", "kind": "suricata"})
    assert source.status_code == 201, source.text
    ids = source.json()
    requests = [portal.submit(f"flow-{i}")["id"] for i in range(REQUESTS)]

    op_ids: list[int] = []
    answers: list[tuple[str, int]] = []

    def run_phase(phase: int, http: httpx.Client) -> None:
        for i in range(phase * 3, phase * 3 + 3):
            r = http.post(f"{API}/requests/{requests[i]}/approve", json={}, headers=portal.heads["operator"])
            answers.append(("approve", r.status_code))
        for vm in alerted[phase * 2 : phase * 2 + 2]:
            assert vm.ip_address is not None
            r = post(http, ids, suricata_c2(vm.ip_address))  # type: ignore[arg-type]
            answers.append(("alert", r.status_code))
        for vm in powered[phase * 2 : phase * 2 + 2]:
            action = "stop" if vm.power_state == "running" else "start"
            r = http.post(f"{API}/vms/{vm.id}/power", json={"action": action}, headers=portal.heads["admin"])
            answers.append(("power", r.status_code))
            if r.status_code == 202:
                op_ids.append(int(r.json()["id"]))

    def in_background(phase: int) -> threading.Thread:
        # Each phase's calls go in parallel from a thread of their own: the API is busy while the
        # test watches readiness and metrics.
        def go() -> None:
            with api.client() as http:
                run_phase(phase, http)

        thread = threading.Thread(target=go, name=f"phase-{phase}")
        thread.start()
        return thread

    # 1. Before: the hypervisor frozen, work piles up in Redis.
    prod_vcsim.pause()
    try:
        in_background(0).join(timeout=120)
        wait_for(lambda: stack.redis.queue_length() >= 1, timeout=30, what="messages waiting in Redis")
        queued_when_killed = stack.redis.queue_length()
        # 2. During: Redis is killed with messages in it; the API keeps accepting work.
        stack.redis.kill()
    finally:
        prod_vcsim.resume()
    ready = portal.http.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"]["broker"].startswith("unavailable")
    assert ready.json()["checks"]["database"] == "ok"
    during = in_background(1)
    during.join(timeout=120)
    assert not during.is_alive()
    undispatched = outbox_summary()
    assert undispatched["never_dispatched"] >= 3 + 2 + 2  # phase 2's tasks, kept with their error
    assert undispatched["with_error"] >= 3 + 2 + 2
    scrape = portal.http.get("/metrics").text
    assert metric(scrape, "vmportal_broker_up") == 0
    assert metric(scrape, "vmportal_queue_depth") is None  # no made-up depth while Redis is away
    pending = metric(scrape, "vmportal_outbox_pending")
    assert pending is not None and pending >= 7
    assert portal.http.get("/readyz").status_code == 503

    # 3. After: Redis back, empty. Nothing of phase 1 or 2 is in it; the re-drive must send it all.
    stack.redis.start()  # a new, empty Redis: phase 1's messages are gone for good
    wait_for(lambda: portal.http.get("/readyz").status_code == 200, timeout=30, what="/readyz to recover")
    # Beat re-drives within 1.5 s; an operator need not wait for it (a second send is harmless).
    redriven = stack.cli("redrive", "--older-than", "0")
    assert redriven.returncode == 0 and re.search(r"re-sent \d+ task", redriven.stdout), redriven
    in_background(2).join(timeout=120)
    assert sorted(set(answers)) == [("alert", 202), ("approve", 200), ("power", 202)], answers
    assert len(answers) == 3 * (3 + 2 + 2)

    wait_for(
        lambda: everything_done(requests, alerted, op_ids),
        timeout=150,
        what="every request delivered, every alerted VM contained, every power operation applied",
        describe=lambda: f"{outbox_summary()}\n{stack.logs()}",
    )

    # Once each: one VM per request on the hypervisor, one containment per VM.
    adapter = create(prod_vcsim.config())
    on_vcsim = adapter.list_vms()
    for request_id in requests:
        [vm] = vms_of_request(request_id)
        made = [v.ref for v in on_vcsim if v.marker == f"vmportal:request:{request_id}" or v.name == vm.name]
        assert made == [vm.hypervisor_ref], (request_id, made)
    with db.transaction() as s:
        incidents = list(s.exec(select(Incident).where(col(Incident.vm_id).in_([v.id for v in alerted]))))
        containments = [
            e.after
            for e in s.exec(select(AuditEntry).where(AuditEntry.action == "security.containment"))
            if e.result == "ok"
        ]
        delivered = s.exec(select(AuditEntry).where(AuditEntry.action == "request.deliver")).all()
    assert sorted(i.vm_id for i in incidents) == sorted(v.id for v in alerted)  # one incident per VM
    assert sorted(c["vm_id"] for c in containments if c["adapter_call"]) == sorted(v.id for v in alerted)
    for vm in alerted:
        info = adapter.get_vm(vm.hypervisor_ref)
        assert info.nics and not any(n.connected for n in info.nics), vm.name
    assert len(delivered) == REQUESTS
    with db.transaction() as s:
        for vm in powered:
            row = s.get(VM, vm.id)
            assert row is not None
            assert row.power_state == str(adapter.get_vm(vm.hypervisor_ref).power_state)
            assert row.power_state != vm.power_state  # each was switched once

    scrape = portal.http.get("/metrics").text
    assert metric(scrape, "vmportal_outbox_pending") == 0
    assert metric(scrape, "vmportal_broker_up") == 1
    assert metric(scrape, "vmportal_queue_depth") == 0
    approvals = re.findall(
        r'^vmportal_http_request_seconds_count\{method="POST",route="[^"]*/approve",status="200"\} (\S+)$',
        scrape,
        re.MULTILINE,
    )
    assert [float(n) for n in approvals] == [REQUESTS]  # every answer timed, outage or not
    assert portal.get("auditor", "/audit/verify")["ok"] is True
    report: dict[str, Any] = {"queued_when_killed": queued_when_killed, **outbox_summary()}
    print("broker outage:", report)
