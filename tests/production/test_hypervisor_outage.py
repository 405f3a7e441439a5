"""vCenter (vcsim) stops during a containment (issue 5): the incident stays ``pending`` and is retried with
backoff by the worker; once vcsim is back the containment is carried out once and confirmed by the
hypervisor. The worker's own metrics (served by its main process for all its pool processes) count the
retries and the containment latency; the API's readiness does not depend on the hypervisor."""

from __future__ import annotations

import re
import time

import httpx
from sqlmodel import select

from hypervisors import create
from tests.production.conftest import API, make_portal, register_fleet
from tests.production.harness import Stack, free_port, wait_for
from tests.security.helpers import post, suricata_c2
from tests.support.vcsim import VcsimServer
from vmportal.audit.models import AuditEntry
from vmportal.kit import db
from vmportal.vm.models import VM

POWER_OFF = [{"category": "trojan", "min_severity": "medium", "confidence": "high", "action": "power_off"}]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{([^}}]*)\}})? ([0-9.e+-]+)$", line)
        if match and all(part in (match.group(1) or "") for part in want.split(",") if part):
            return float(match.group(2))
    return 0.0


def test_containment_waits_for_vcenter_and_is_confirmed_once(stack: Stack, prod_vcsim: VcsimServer) -> None:
    metrics_port = free_port()
    api = stack.api(wait=False)
    worker = stack.worker(
        "w1",
        concurrency=2,
        wait=False,
        VMPORTAL_METRICS_PORT=str(metrics_port),
        VMPORTAL_TASK_MAX_RETRIES="12",
    )
    stack.up(api, worker, stack.beat(wait=False))
    portal = make_portal(stack, api, prod_vcsim)
    # vcsim's own VMs: they come back (same instance UUIDs, running) when vcsim restarts.
    [vm, bystander] = register_fleet(portal, prod_vcsim, first=0, count=2)
    assert vm.power_state == "running" and vm.ip_address
    r = portal.http.put(
        f"{API}/security/containment-policy", json={"rules": POWER_OFF}, headers=portal.heads["center_admin"]
    )
    assert r.status_code == 200, r.text
    source = portal.post("center_admin", "/alert-sources", {"name": "campus-ids", "kind": "suricata"}).json()

    def incident() -> dict[str, object] | None:
        found = portal.get("center_admin", "/incidents", vm_id=vm.id)["items"]
        assert len(found) <= 1, found
        return found[0] if found else None

    prod_vcsim.stop()
    alerted_at = time.monotonic()
    try:
        r = post(portal.http, source, suricata_c2(vm.ip_address))  # type: ignore[arg-type]
        assert r.status_code == 202, r.text
        # Pending, and retried: the worker keeps trying while vCenter is away.
        pending = wait_for(
            lambda: (
                (i := incident())
                and i["containment_state"] == "pending"
                and int(str(i["attempts"])) >= 2
                and i
            ),
            timeout=60,
            what="the containment to be pending and retried",
            describe=stack.logs,
        )
        assert pending["state"] == "containing" and "unavailable" in str(pending["last_error"]), pending
        assert portal.http.get("/readyz").status_code == 200  # the portal itself is fine
        # A second alert on the same VM joins the incident: still one containment to do.
        r = post(portal.http, source, suricata_c2(vm.ip_address))  # type: ignore[arg-type]
        assert r.status_code == 202, r.text
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert sample(scrape, "vmportal_tasks_total", task="vmportal.security.contain", outcome="retry") >= 1
        assert sample(scrape, "vmportal_containment_seconds_count") == 0
    finally:
        prod_vcsim.start()
    outage = time.monotonic() - alerted_at

    contained = wait_for(
        lambda: (i := incident()) and i["containment_state"] == "confirmed" and i,
        timeout=120,
        what="the containment to be confirmed after vcsim returned",
        describe=stack.logs,
    )
    assert contained["state"] == "contained" and contained["executed_action"] == "power_off"
    assert contained["alert_count"] == 2
    adapter = create(prod_vcsim.config())
    assert str(adapter.get_vm(vm.hypervisor_ref).power_state) == "stopped"
    assert str(adapter.get_vm(bystander.hypervisor_ref).power_state) == "running"
    with db.transaction() as s:
        row = s.get(VM, vm.id)
        assert row is not None and (row.power_state, row.security_state) == ("stopped", "suspended")
        entries = list(s.exec(select(AuditEntry).where(AuditEntry.action == "security.containment")))
    results = [e.result for e in entries]
    assert results.count("ok") == 1 and results.count("pending") >= 1, results  # done once, after waiting
    ops = portal.get("center_admin", f"/vms/{vm.id}/operations")["items"]
    assert [(o["action"], o["state"]) for o in ops] == [("stop", "succeeded")]  # one power-off, no repeat
    timeline = [i["kind"] for i in portal.get("center_admin", f"/incidents/{contained['id']}/timeline")]
    assert "containment_pending" in timeline and timeline.count("contained") == 1, timeline

    scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert sample(scrape, "vmportal_tasks_total", task="vmportal.security.contain", outcome="ok") >= 1
    assert sample(scrape, "vmportal_containment_seconds_count") == 1
    # The time spent waiting for vCenter is in the latency, not hidden.
    assert sample(scrape, "vmportal_containment_seconds_sum") >= outage - 0.5
    assert float(str(contained["containment_latency_seconds"])) >= outage - 0.5
    assert worker.running
