"""``kill -9`` of a Celery worker in the middle of a provisioning (issue 5): once a worker runs again, the
request ends delivered and exactly one VM exists on the hypervisor (vcsim).

Two crashes, each stopped at a point chosen on purpose rather than by luck:

* **after the clone, before the delivery committed**, the whole worker (main process and pool) killed.
  The test holds the placeholder VM row locked, lets the clone through, waits until the worker's
  transaction is blocked on that lock (so the hypervisor has the VM and the database does not know
  yet), then kills the worker. The broker still holds the message unacknowledged (it would come back
  only after the visibility timeout); the outbox re-drive run by beat sends it again, the new worker
  finds the VM by its marker and delivers it.
* **during the hypervisor call**, the pool process killed. The hypervisor is frozen (SIGSTOP) so the
  task hangs inside the adapter after the provisioning record committed; killing the pool process
  makes Celery re-queue the message at once (``acks_late`` + ``reject_on_worker_lost``), with no
  re-drive possible in this test (re-drive age 10 minutes, no beat).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

import sqlalchemy as sa
from sqlmodel import select

from hypervisors import create
from tests.production.conftest import Portal, make_portal, vms_of_request
from tests.production.harness import Proc, Stack, wait_for
from tests.support.vcsim import VcsimServer
from vmportal.audit.models import AuditEntry
from vmportal.jobs.models import OutboxTask
from vmportal.kit import db
from vmportal.request.models import VMRequest


def on_hypervisor(vcsim: VcsimServer, request_id: int, name: str) -> list[str]:
    """Refs of the VMs on vcsim made for this request: carrying its marker, or its name."""
    marker = f"vmportal:request:{request_id}"
    return [v.ref for v in create(vcsim.config()).list_vms() if v.marker == marker or v.name == name]


def placeholder_id(request_id: int) -> int | None:
    vms = vms_of_request(request_id)
    return vms[0].id if vms else None


def blocked_on_a_lock() -> int:
    with db.engine().connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def redrives(worker: Proc) -> int:
    """Re-drive runs the worker finished so far (Celery's "Task … succeeded" log lines)."""
    return len(re.findall(r"Task vmportal\.outbox\.redrive\[[^]]+\] succeeded", worker.output()))


def outbox_row(request_id: int) -> OutboxTask:
    with db.transaction() as s:
        rows = [r for r in s.exec(select(OutboxTask)) if r.arguments.get("vm_request_id") == request_id]
    assert len(rows) == 1, rows
    return rows[0]


def assert_delivered_once(portal: Portal, vcsim: VcsimServer, request_id: int) -> None:
    req = portal.get("admin", f"/requests/{request_id}")
    assert req["state"] == "delivered", req
    [vm] = vms_of_request(request_id)
    assert vm.lifecycle == "active" and vm.id == req["vm_id"]
    refs = on_hypervisor(vcsim, request_id, vm.name)
    assert refs == [vm.hypervisor_ref], f"VMs for request {request_id} on vcsim: {refs}"
    with db.transaction() as s:
        actions = [
            e.action for e in s.exec(select(AuditEntry).where(AuditEntry.target_id == str(request_id)))
        ]
    assert actions.count("request.deliver") == 1, actions
    # The unit's admin gets the credentials of that one VM, once.
    r = portal.http.post(f"/api/v1/vms/{vm.id}/credentials", headers=portal.heads["admin"])
    assert r.status_code == 200, r.text
    assert r.json()["ip_address"] == vm.ip_address
    assert portal.get("auditor", "/audit/verify")["ok"] is True


def test_worker_killed_after_the_clone_before_delivery(stack: Stack, prod_vcsim: VcsimServer) -> None:
    api, worker, beat = stack.api(wait=False), stack.worker("w1", wait=False), stack.beat(wait=False)
    stack.up(api, worker, beat)
    portal = make_portal(stack, api, prod_vcsim)
    req = portal.submit("crash-after-clone")
    request_id = req["id"]

    lock = db.engine().connect()
    prod_vcsim.pause()  # the task stops inside its first hypervisor call, after the record committed
    try:
        r = portal.http.post(
            f"/api/v1/requests/{request_id}/approve",
            json={},
            headers={**portal.heads["operator"], "X-Request-ID": f"approve-{request_id}"},
        )
        assert r.status_code == 200, r.text
        vm_id = wait_for(
            lambda: placeholder_id(request_id),
            timeout=60,
            what="the provisioning record",
            describe=stack.logs,
        )
        lock.begin()
        lock.execute(sa.text("SELECT id FROM vm WHERE id = :id FOR UPDATE"), {"id": vm_id})
    finally:
        prod_vcsim.resume()
    name = vms_of_request(request_id)[0].name
    # The clone goes through; recording it waits behind the lock.
    wait_for(lambda: on_hypervisor(prod_vcsim, request_id, name), timeout=60, what="the clone on vcsim")
    wait_for(blocked_on_a_lock, timeout=60, what="the worker to wait on the VM row", describe=stack.logs)
    assert portal.request_state(request_id) == "provisioning"
    # The row is now older than the re-drive age (3 s) and not completed: let beat's re-drive (every
    # 1.5 s) run twice more. It sees the row claimed by the running task and leaves it alone.
    stale_at = time.monotonic() + 3
    wait_for(lambda: time.monotonic() > stale_at, timeout=10, what="the row to be re-drive age")
    done = redrives(worker)
    wait_for(
        lambda: redrives(worker) >= done + 2 or blocked_on_a_lock() > 1,
        timeout=60,
        what="two re-drives",
        describe=stack.logs,
    )
    assert blocked_on_a_lock() == 1, "a second run of the task is waiting beside the first"
    assert outbox_row(request_id).attempts == 1

    worker.kill9()
    lock.rollback()
    lock.close()
    wait_for(lambda: blocked_on_a_lock() == 0, timeout=30, what="the killed worker's transaction to end")
    assert portal.request_state(request_id) == "provisioning"  # nothing of the delivery committed
    assert len(on_hypervisor(prod_vcsim, request_id, name)) == 1

    stack.restart(worker)
    wait_for(
        lambda: portal.request_state(request_id) == "delivered",
        timeout=90,
        what="the re-driven provisioning to deliver",
        describe=stack.logs,
    )
    assert_delivered_once(portal, prod_vcsim, request_id)
    row = outbox_row(request_id)
    assert row.completed_at is not None and row.attempts >= 2  # sent again by the re-drive
    assert beat.running
    # The approval's request id travelled with the task, through the crash and the re-drive, into
    # the new worker's JSON log lines.
    lines = [
        json.loads(line) for line in worker.output(since_start=True).splitlines() if line.startswith("{")
    ]
    assert any(
        line.get("request_id") == f"approve-{request_id}" and "delivered" in line["message"] for line in lines
    ), worker.tail()


def test_pool_process_killed_during_the_hypervisor_call(stack: Stack, prod_vcsim: VcsimServer) -> None:
    stack.extra_env["VMPORTAL_OUTBOX_REDRIVE_SECONDS"] = "600"  # Celery alone must bring it back
    api, worker = stack.api(wait=False), stack.worker("w1", concurrency=1, wait=False)
    stack.up(api, worker)
    portal = make_portal(stack, api, prod_vcsim)
    req = portal.submit("crash-mid-call")
    request_id = req["id"]

    prod_vcsim.pause()
    try:
        r = portal.post("operator", f"/requests/{request_id}/approve", {})
        assert r.status_code == 200, r.text
        wait_for(lambda: placeholder_id(request_id), timeout=60, what="the provisioning record")
        [pool_process] = worker.descendants()
        os.kill(pool_process, signal.SIGKILL)  # a process of our own worker, by its id
        wait_for(
            lambda: "signal 9" in worker.output(), timeout=30, what="the worker to see its pool process die"
        )
        with db.transaction() as s:
            row = s.get(VMRequest, request_id)
            assert row is not None and row.state == "provisioning"
    finally:
        prod_vcsim.resume()
    wait_for(
        lambda: portal.request_state(request_id) == "delivered",
        timeout=90,
        what="the re-queued provisioning to deliver",
        describe=stack.logs,
    )
    assert_delivered_once(portal, prod_vcsim, request_id)
    assert worker.running  # the worker itself lived on and replaced its pool process
