"""Rectification and restore through the HTTP API: report, reject, report again, accept and see the VM
reconnected on the simulator; dismissal; the states each action needs (409 naming the state); who may
do what; attachments' type and size limits; the audit trail."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import col, select

from tests.factories import Factory
from tests.security.helpers import (
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
    wazuh_webshell,
)
from vmportal.audit.models import AuditEntry
from vmportal.kit import db

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _contained_vm(client: TestClient, factory: Factory) -> tuple[Any, Any, dict[str, str], dict[str, Any]]:
    """A unit, its contained VM, the unit admin's headers and the incident."""
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = factory.vm(unit)
    source = register(client, h, "suricata")
    assert post(client, source, suricata_c2(vm.ip_address)).status_code == 202
    incident = incidents(client, h, vm_id=vm.id)[0]
    assert incident["state"] == "contained"
    return unit, vm, h, incident


def _report(
    client: TestClient,
    headers: dict[str, str],
    incident_id: int,
    text: str,
    files: list[tuple[str, bytes, str]],
) -> Any:
    return client.post(
        f"/api/v1/incidents/{incident_id}/rectifications",
        data={"text": text},
        files=[("files", f) for f in files],
        headers=headers,
    )


def test_report_reject_report_accept_reconnects_the_vm(client: TestClient, factory: Factory) -> None:
    unit, vm, center, incident = _contained_vm(client, factory)
    admin = factory.login(client, factory.user("unit_admin", unit))
    iid = incident["id"]

    first = _report(
        client, admin, iid, "已删除 webshell，更换口令。", [("report.pdf", PDF, "application/pdf")]
    )
    assert first.status_code == 201, first.text
    assert (
        first.json()["state"] == "submitted"
        and first.json()["attachments"][0]["content_type"] == "application/pdf"
    )
    assert vm_state(client, admin, vm)["security_state"] == "rectification_submitted"
    assert incidents(client, admin)[0]["state"] == "rectification_submitted"
    # Still locked while the center reviews it.
    start = client.post(f"/api/v1/vms/{vm.id}/power", json={"action": "start"}, headers=admin)
    assert start.status_code == 403 and start.json()["error"]["rule"] == "suspended_lock"
    twice = _report(client, admin, iid, "again", [])
    assert twice.status_code == 409 and twice.json()["error"]["state"] == "rectification_submitted"

    reject = client.post(
        f"/api/v1/rectifications/{first.json()['id']}/reject",
        json={"reason": "后门进程仍在运行"},
        headers=center,
    )
    assert reject.status_code == 200, reject.text
    assert reject.json()["state"] == "rejected" and reject.json()["decision_reason"] == "后门进程仍在运行"
    assert vm_state(client, admin, vm)["security_state"] == "suspended"
    assert incidents(client, admin)[0]["state"] == "contained"
    assert not any(nics(factory, vm))

    second = _report(
        client,
        admin,
        iid,
        "重装系统并加固。",
        [("log.txt", "整改记录：已重装\n".encode("gb18030"), "text/plain")],
    )
    assert second.status_code == 201, second.text
    accept = client.post(
        f"/api/v1/rectifications/{second.json()['id']}/accept", json={"comment": "复测通过"}, headers=center
    )
    assert accept.status_code == 202, accept.text
    assert accept.json()["state"] == "accepted"

    assert all(nics(factory, vm)) and calls(factory, vm, "set_network") == 2  # cut once, restored once
    state = vm_state(client, admin, vm)
    assert (state["security_state"], state["network_connected"]) == ("restored", True)
    closed = client.get(f"/api/v1/incidents/{iid}", headers=admin).json()
    assert (closed["state"], closed["containment_state"], closed["restore_state"], closed["resolution"]) == (
        "closed",
        "released",
        "confirmed",
        "rectified",
    )
    assert closed["quarantine_seconds"] is not None and closed["quarantine_seconds"] >= 0
    assert closed["restored_at"] and closed["closed_at"]
    # The unit operates its VM again.
    assert (
        client.post(f"/api/v1/vms/{vm.id}/power", json={"action": "restart"}, headers=admin).status_code
        == 202
    )

    again = client.post(f"/api/v1/rectifications/{second.json()['id']}/accept", json={}, headers=center)
    assert again.status_code == 409 and again.json()["error"]["state"] == "accepted"
    late = _report(client, admin, iid, "late", [])
    assert late.status_code == 409 and late.json()["error"]["state"] == "closed"

    reports = client.get(f"/api/v1/incidents/{iid}/rectifications", headers=admin).json()
    assert [r["state"] for r in reports] == ["rejected", "accepted"]
    file = client.get(reports[0]["attachments"][0]["link"], headers=admin)
    assert file.status_code == 200 and file.content == PDF

    kinds = [e["kind"] for e in client.get(f"/api/v1/incidents/{iid}/timeline", headers=admin).json()]
    assert kinds == [
        "alert",
        "opened",
        "containment_queued",
        "contained",
        "rectification_submitted",
        "rectification_rejected",
        "rectification_submitted",
        "rectification_accepted",
        "restored",
    ]
    with db.transaction() as s:
        actions = s.exec(
            select(AuditEntry.action)
            .where(AuditEntry.target_type == "incident", AuditEntry.target_id == str(iid))
            .order_by(col(AuditEntry.id))
        ).all()
        assert actions == [
            "security.incident.open",
            "security.incident.contain",
            "security.containment",
            "security.rectification.submit",
            "security.rectification.reject",
            "security.rectification.submit",
            "security.rectification.accept",
            "security.restore",
        ]
        vm_changes = s.exec(
            select(AuditEntry.after)
            .where(AuditEntry.action == "vm.security_state", AuditEntry.target_id == str(vm.id))
            .order_by(col(AuditEntry.id))
        ).all()
        assert [a["security_state"] for a in vm_changes if a] == [
            "suspended",
            "rectification_submitted",
            "suspended",
            "rectification_submitted",
            "restored",
        ]


def test_who_may_report_and_decide(client: TestClient, factory: Factory) -> None:
    unit, _vm, center, incident = _contained_vm(client, factory)
    iid = incident["id"]
    lead = factory.login(client, factory.user("unit_lead", unit))
    stranger = factory.login(client, factory.user("unit_admin", factory.unit()))
    auditor = factory.login(client, factory.user("auditor"))

    assert _report(client, lead, iid, "x", []).status_code == 403
    assert _report(client, center, iid, "x", []).status_code == 403
    assert _report(client, stranger, iid, "x", []).status_code == 404
    assert client.get(f"/api/v1/incidents/{iid}", headers=stranger).status_code == 404
    assert incidents(client, stranger) == []
    assert client.get(f"/api/v1/incidents/{iid}", headers=lead).status_code == 200
    assert client.get(f"/api/v1/incidents/{iid}", headers=auditor).status_code == 200

    admin = factory.login(client, factory.user("unit_admin", unit))
    empty = _report(client, admin, iid, "   ", [])
    assert empty.status_code == 422 and empty.json()["error"]["fields"][0]["field"] == "text"
    rect = _report(client, admin, iid, "fixed", []).json()
    assert client.get(f"/api/v1/rectifications/{rect['id']}", headers=stranger).status_code == 404
    for who in (admin, lead, auditor):
        r = client.post(f"/api/v1/rectifications/{rect['id']}/accept", json={}, headers=who)
        assert r.status_code == 403
    assert (
        client.post(f"/api/v1/incidents/{iid}/dismiss", json={"reason": "x"}, headers=admin).status_code
        == 403
    )
    missing = client.post(f"/api/v1/rectifications/{rect['id']}/reject", json={}, headers=center)
    assert missing.status_code == 422 and missing.json()["error"]["fields"][0]["field"] == "reason"


def test_attachment_limits(client: TestClient, factory: Factory) -> None:
    unit, _vm, _center, incident = _contained_vm(client, factory)
    admin = factory.login(client, factory.user("unit_admin", unit))
    iid = incident["id"]
    exe = _report(client, admin, iid, "x", [("report.pdf", b"MZ\x90\x00\x03\x00\x00\x00", "application/pdf")])
    assert exe.status_code == 415 and exe.json()["error"]["rule"] == "magic_bytes"
    binary_text = _report(client, admin, iid, "x", [("notes.txt", b"MZ\x00\x00\x01", "text/plain")])
    assert binary_text.status_code == 415
    zip_file = _report(client, admin, iid, "x", [("a.zip", b"PK\x03\x04", "application/zip")])
    assert zip_file.status_code == 415 and zip_file.json()["error"]["rule"] == "content_type"
    factory.settings.upload_max_bytes = 1024
    big = _report(client, admin, iid, "x", [("big.png", PNG + b"\x00" * 2048, "image/png")])
    assert big.status_code == 413 and big.json()["error"]["field"] == "files[0]"
    # None of that was recorded: the incident still waits for a report.
    assert client.get(f"/api/v1/incidents/{iid}", headers=admin).json()["state"] == "contained"
    ok = _report(client, admin, iid, "x", [("shot.png", PNG, "image/png"), ("r.pdf", PDF, "application/pdf")])
    assert ok.status_code == 201 and len(ok.json()["attachments"]) == 2


def test_dismissal_restores_a_contained_vm_and_closes_an_open_incident(
    client: TestClient, factory: Factory
) -> None:
    unit, vm, center, incident = _contained_vm(client, factory)
    operator = factory.login(client, factory.user("center_operator"))
    r = client.post(
        f"/api/v1/incidents/{incident['id']}/dismiss",
        json={"reason": "误报：安全扫描器的测试流量"},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    dismissed = client.get(f"/api/v1/incidents/{incident['id']}", headers=center).json()
    assert (dismissed["state"], dismissed["resolution"], dismissed["containment_state"]) == (
        "dismissed",
        "false_positive",
        "released",
    )
    assert all(nics(factory, vm))
    assert vm_state(client, center, vm)["security_state"] == "normal"
    again = client.post(f"/api/v1/incidents/{incident['id']}/dismiss", json={"reason": "x"}, headers=operator)
    assert again.status_code == 409 and again.json()["error"]["state"] == "dismissed"
    assert "dismissed" in again.json()["error"]["message"]

    weak_vm = factory.vm(unit)
    wazuh = register(client, center, "wazuh")
    post(client, wazuh, wazuh_rule_510(weak_vm.ip_address))
    open_one = incidents(client, center, vm_id=weak_vm.id)[0]
    r = client.post(
        f"/api/v1/incidents/{open_one['id']}/dismiss", json={"reason": "系统升级所致"}, headers=operator
    )
    assert r.status_code == 200 and r.json()["state"] == "dismissed"
    assert calls(factory, weak_vm, "set_network") == 0
    # A new alert after the dismissal opens a new incident.
    post(client, wazuh, wazuh_rule_510(weak_vm.ip_address))
    assert [i["state"] for i in incidents(client, center, vm_id=weak_vm.id)] == ["open", "dismissed"]


def test_a_vm_held_by_two_incidents_is_restored_only_when_both_are_settled(
    client: TestClient, factory: Factory
) -> None:
    unit, vm, center, trojan = _contained_vm(client, factory)
    wazuh = register(client, center, "wazuh")
    post(client, wazuh, wazuh_webshell(vm.ip_address))
    webshell = next(i for i in incidents(client, center, vm_id=vm.id) if i["category"] == "webshell")
    assert webshell["state"] == "contained"
    assert calls(factory, vm, "set_network") == 1  # the second incident found the VM already isolated

    admin = factory.login(client, factory.user("unit_admin", unit))
    rect = _report(client, admin, trojan["id"], "木马已清除", []).json()
    assert vm_state(client, admin, vm)["security_state"] == "suspended"  # the webshell is not reported yet
    client.post(f"/api/v1/rectifications/{rect['id']}/accept", json={}, headers=center)
    first = client.get(f"/api/v1/incidents/{trojan['id']}", headers=center).json()
    assert (first["state"], first["restore_state"]) == ("closed", "held")
    assert not any(nics(factory, vm)) and vm_state(client, admin, vm)["security_state"] == "suspended"

    client.post(f"/api/v1/incidents/{webshell['id']}/dismiss", json={"reason": "误报"}, headers=center)
    assert all(nics(factory, vm))
    assert vm_state(client, admin, vm)["security_state"] == "normal"
    with db.transaction() as s:
        released = s.exec(
            select(AuditEntry).where(
                AuditEntry.action == "security.restore", col(AuditEntry.target_id).in_([str(trojan["id"])])
            )
        ).all()
        assert len(released) == 1
    assert simulator(factory).get_vm(vm.hypervisor_ref).power_state == "running"
