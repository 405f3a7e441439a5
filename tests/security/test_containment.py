"""Containment through the simulator: once per VM however many alerts, pending while the hypervisor is
unreachable, the center's policy table (power off, block web and its fallback), weak signals left to a
human until confirmed, and the unit locked out of a suspended VM."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import select

from hypervisors.base import NotSupported, Unreachable
from tests.factories import Factory
from tests.security.helpers import (
    alertmanager,
    calls,
    center_admin,
    incidents,
    nics,
    post,
    register,
    simulator,
    suricata_c2,
    vm_state,
    wazuh_rule_510,
)
from vmportal.audit.models import AuditEntry
from vmportal.incidents import tasks
from vmportal.jobs import outbox
from vmportal.kit import db


def test_a_burst_of_alerts_for_one_vm_makes_one_incident_and_one_adapter_call(
    client: TestClient, factory: Factory
) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata")
    records = [suricata_c2(vm.ip_address) for _ in range(20)]

    with ThreadPoolExecutor(max_workers=8) as pool:  # concurrent posts, each its own alert
        answers = list(pool.map(lambda r: post(client, source, r), records[:10]))
    assert [a.status_code for a in answers] == [202] * 10
    batch = post(client, source, records[10:])  # and the rest in one array
    assert batch.status_code == 202 and batch.json()["accepted"] == 10

    found = incidents(client, h, vm_id=vm.id)
    assert len(found) == 1
    assert found[0]["alert_count"] == 20 and found[0]["state"] == "contained"
    assert calls(factory, vm, "set_network") == 1
    assert not any(nics(factory, vm))
    # A redelivered task finds nothing left to do, and still no second call.
    assert tasks.contain(found[0]["id"]).startswith("nothing to do")
    assert calls(factory, vm, "set_network") == 1


def _wait_for(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_unreachable_hypervisor_leaves_containment_pending_until_a_retry_gets_through(
    client: TestClient, factory: Factory
) -> None:
    factory.settings.task_mode = "thread"  # tasks in the background pool, as in the embedded portal
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata")
    sim = simulator(factory)
    sim.inject_fault("*", Unreachable("vCenter did not answer", defer=0.2), times=None)

    assert post(client, source, suricata_c2(vm.ip_address)).status_code == 202  # answered at once

    def pending() -> dict[str, Any] | None:
        found = incidents(client, h, vm_id=vm.id)
        ok = found and found[0]["containment_state"] == "pending" and found[0]["last_error"]
        return found[0] if ok else None

    incident = _wait_for(pending)
    assert incident["state"] == "containing"
    assert "vCenter did not answer" in incident["last_error"]
    assert vm_state(client, h, vm)["security_state"] == "normal"  # not suspended before it is confirmed

    sim.clear_faults()
    outbox.wait_idle(30)
    incident = incidents(client, h, vm_id=vm.id)[0]
    assert (incident["state"], incident["containment_state"], incident["last_error"]) == (
        "contained",
        "confirmed",
        "",
    )
    assert incident["attempts"] >= 2
    assert not any(nics(factory, vm)) and calls(factory, vm, "set_network") == 1
    assert vm_state(client, h, vm)["security_state"] == "suspended"
    kinds = [e["kind"] for e in client.get(f"/api/v1/incidents/{incident['id']}/timeline", headers=h).json()]
    assert "containment_pending" in kinds and kinds[-1] == "contained"


def test_out_of_retries_the_containment_fails_and_the_center_retries(
    client: TestClient, factory: Factory
) -> None:
    factory.settings.task_max_retries = 0
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata")
    sim = simulator(factory)
    sim.inject_fault("*", "unreachable", times=None)
    assert post(client, source, suricata_c2(vm.ip_address)).status_code == 202
    incident = incidents(client, h, vm_id=vm.id)[0]
    assert (incident["state"], incident["containment_state"]) == ("containing", "failed")
    assert "every retry" in incident["last_error"]
    assert incident["actions"] == ["retry", "dismiss"]

    sim.clear_faults()
    r = client.post(f"/api/v1/incidents/{incident['id']}/retry", json={}, headers=h)
    assert r.status_code == 202, r.text
    incident = incidents(client, h, vm_id=vm.id)[0]
    assert (incident["state"], incident["containment_state"]) == ("contained", "confirmed")
    assert not any(nics(factory, vm))


def test_the_unit_cannot_power_on_a_suspended_vm(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = factory.vm(unit)
    unit_admin = factory.login(client, factory.user("unit_admin", unit))
    source = register(client, h, "suricata")
    post(client, source, suricata_c2(vm.ip_address))
    stop = client.post(f"/api/v1/vms/{vm.id}/power", json={"action": "stop"}, headers=unit_admin)
    assert stop.status_code == 202  # powering down can only reduce harm
    start = client.post(f"/api/v1/vms/{vm.id}/power", json={"action": "start"}, headers=unit_admin)
    assert start.status_code == 403
    error = start.json()["error"]
    assert error["rule"] == "suspended_lock"
    # The unit reads which incident holds the VM and what releases it.
    [incident] = incidents(client, h, vm_id=vm.id)
    assert error["incident_id"] == incident["id"]
    assert f"安全事件 #{incident['id']}" in error["message_zh"] and "整改报告" in error["message_zh"]
    assert f"security incident #{incident['id']}" in error["message"]
    reconnect = client.post(
        f"/api/v1/vms/{vm.id}/network",
        json={"connected": True, "reason": "我们已经修好了"},
        headers=unit_admin,
    )
    assert reconnect.status_code == 403 and "suspended_lock" in reconnect.json()["error"]["rules"]
    assert reconnect.json()["error"]["incident_id"] == incident["id"]
    assert not any(nics(factory, vm))


def test_a_weak_signal_waits_for_the_center_to_confirm(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = factory.vm(unit)
    source = register(client, h, "wazuh")
    assert post(client, source, wazuh_rule_510(vm.ip_address)).status_code == 202
    incident = incidents(client, h, vm_id=vm.id)[0]
    assert (incident["state"], incident["action"], incident["confidence"]) == ("open", "notify_only", "low")
    assert any("weak signal" in r for r in incident["reasons_en"]) and incident["reasons_zh"]
    assert incident["actions"] == ["confirm", "dismiss"]
    assert any(nics(factory, vm)) and calls(factory, vm, "set_network") == 0

    unit_admin = factory.login(client, factory.user("unit_admin", unit))
    url = f"/api/v1/incidents/{incident['id']}/confirm"
    assert client.post(url, json={"action": "isolate_network"}, headers=unit_admin).status_code == 403
    bad = client.post(url, json={"action": "notify_only"}, headers=h)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "action"

    operator = factory.login(client, factory.user("center_operator"))
    r = client.post(
        url, json={"action": "isolate_network", "reason": "rootkit confirmed on the host"}, headers=operator
    )
    assert r.status_code == 202, r.text
    confirmed = incidents(client, h, vm_id=vm.id)[0]
    assert (confirmed["state"], confirmed["executed_action"]) == ("contained", "isolate_network")
    assert confirmed["decided_by"].startswith("center_operator")
    assert not any(nics(factory, vm))
    again = client.post(url, json={"action": "isolate_network"}, headers=operator)
    assert again.status_code == 409 and again.json()["error"]["state"] == "contained"


def test_a_strong_alert_escalates_the_open_incident_of_the_same_category(
    client: TestClient, factory: Factory
) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    wazuh = register(client, h, "wazuh")
    suricata = register(client, h, "suricata")
    post(client, wazuh, wazuh_rule_510(vm.ip_address))  # trojan, low confidence: notify only
    assert incidents(client, h, vm_id=vm.id)[0]["state"] == "open"
    post(client, suricata, suricata_c2(vm.ip_address))  # trojan, high confidence: contain
    found = incidents(client, h, vm_id=vm.id)
    assert len(found) == 1
    assert (found[0]["state"], found[0]["alert_count"], found[0]["confidence"]) == ("contained", 2, "high")
    assert not any(nics(factory, vm))


def _put_policy(client: TestClient, headers: dict[str, str], rules: list[dict[str, Any]]) -> Any:
    return client.put("/api/v1/security/containment-policy", json={"rules": rules}, headers=headers)


def test_the_center_edits_the_table_and_power_off_is_confirmed_stopped(
    client: TestClient, factory: Factory
) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = factory.vm(unit)
    unit_admin = factory.login(client, factory.user("unit_admin", unit))
    policy = client.get("/api/v1/security/containment-policy", headers=unit_admin)
    assert policy.status_code == 200 and policy.json()["is_default"] is True
    assert {
        "category": "trojan",
        "min_severity": "high",
        "confidence": "high",
        "action": "isolate_network",
    } in (policy.json()["rules"])

    weak_acts = [{"category": "trojan", "min_severity": "low", "confidence": "low", "action": "power_off"}]
    refused = _put_policy(client, h, weak_acts)
    assert refused.status_code == 422
    assert refused.json()["error"]["fields"][0] == {
        "field": "rules[0].action",
        "rule": "low_confidence_notify_only",
        "message": refused.json()["error"]["fields"][0]["message"],
    }
    unknown = _put_policy(client, h, [{**weak_acts[0], "action": "nuke"}])
    assert unknown.status_code == 422 and unknown.json()["error"]["fields"][0]["field"] == "rules.0.action"
    operator = factory.login(client, factory.user("center_operator"))
    assert _put_policy(client, operator, []).status_code == 403

    table = [{"category": "trojan", "min_severity": "medium", "confidence": "high", "action": "power_off"}]
    saved = _put_policy(client, h, table)
    assert saved.status_code == 200 and saved.json()["is_default"] is False and saved.json()["rules"] == table

    source = register(client, h, "suricata")
    post(client, source, suricata_c2(vm.ip_address))
    incident = incidents(client, h, vm_id=vm.id)[0]
    assert (incident["state"], incident["executed_action"]) == ("contained", "power_off")
    assert incident["decision_rule"] == table[0]
    assert simulator(factory).get_vm(vm.hypervisor_ref).power_state == "stopped"
    state = vm_state(client, h, vm)
    assert (state["power_state"], state["security_state"]) == ("stopped", "suspended")
    ops = client.get(f"/api/v1/vms/{vm.id}/operations", headers=h).json()["items"]
    assert ops[0]["action"] == "stop" and ops[0]["requested_by"] is None and ops[0]["state"] == "succeeded"
    with db.transaction() as s:
        assert (
            s.exec(
                select(AuditEntry).where(AuditEntry.action == "security.containment_policy.update")
            ).first()
            is not None
        )


def test_block_web_and_its_fallback_to_isolation(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    blocked, fallback = factory.vm(unit), factory.vm(unit)
    source = register(client, h, "alertmanager")
    dark_link = alertmanager(blocked.ip_address, fingerprint="d1")
    dark_link["alerts"][0]["labels"].update(category="dark_link", severity="high", alertname="DarkLink")
    post(client, source, dark_link)
    incident = incidents(client, h, vm_id=blocked.id)[0]
    assert (incident["state"], incident["executed_action"], incident["decision_fallback"]) == (
        "contained",
        "block_web",
        False,
    )
    info = simulator(factory).get_vm(blocked.hypervisor_ref)
    assert info.web_blocked and any(n.connected for n in info.nics)

    simulator(factory).inject_fault("set_web_block", NotSupported("no per-VM firewall here"))
    other = alertmanager(fallback.ip_address, fingerprint="d2")
    other["alerts"][0]["labels"].update(category="dark_link", severity="high", alertname="DarkLink")
    post(client, source, other)
    incident = incidents(client, h, vm_id=fallback.id)[0]
    assert (incident["state"], incident["executed_action"], incident["decision_fallback"]) == (
        "contained",
        "isolate_network",
        True,
    )
    assert "isolated instead" in incident["reasons_en"][-1] and "断开网络" in incident["reasons_zh"][-1]
    assert not any(nics(factory, fallback))


def test_a_refused_containment_fails_with_the_message_and_can_be_retried(
    client: TestClient, factory: Factory
) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata")
    simulator(factory).inject_fault("set_network", "task_failed")
    post(client, source, suricata_c2(vm.ip_address))
    incident = incidents(client, h, vm_id=vm.id)[0]
    assert (incident["state"], incident["containment_state"]) == ("containing", "failed")
    assert "simulated task_failed" in incident["last_error"]
    r = client.post(f"/api/v1/incidents/{incident['id']}/retry", json={}, headers=h)
    assert r.status_code == 202, r.text
    incident = incidents(client, h, vm_id=vm.id)[0]
    assert (incident["state"], incident["containment_state"]) == ("contained", "confirmed")
    assert not any(nics(factory, vm))
    again = client.post(f"/api/v1/incidents/{incident['id']}/retry", json={}, headers=h)
    assert again.status_code == 409 and again.json()["error"]["state"] == "contained"
