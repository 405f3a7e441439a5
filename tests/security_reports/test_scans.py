"""Forbidden services through the HTTP API, with the real Nmap report in ``nmap_sample.xml`` (25/tcp
Postfix → mail; 8080 tcpwrapped is not a proxy): raised once per appearance across identical scans,
resolved when gone, raised anew when back; exemptions; the center's shutdown through the power
service; unsafe or malformed reports refused."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import col, select

from tests.factories import Factory
from tests.security.helpers import center_admin, vm_state
from tests.security_reports.conftest import CENTER_MAILBOX, MailServer
from tests.security_reports.helpers import (
    NMAP_SAMPLE,
    NMAP_WITHOUT_MAIL,
    SAMPLE_HOST,
    contacts,
    upload,
    vm_at,
)
from vmportal.audit.models import AuditEntry
from vmportal.kit import db
from vmportal.vm.models import PowerOperation


def test_mail_service_is_raised_once_resolved_when_gone_and_new_when_back(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = vm_at(factory, unit, SAMPLE_HOST)

    first = upload(client, h, NMAP_SAMPLE, "nmap_sample.xml")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["scan"]["hosts_up"] == 1 and body["scan"]["open_ports"] == 8
    assert body["scan"]["scanner"].startswith("nmap 5.51") and body["scan"]["violations_raised"] == 1
    [raised] = body["raised"]
    assert (raised["vm_id"], raised["ip"], raised["protocol"], raised["port"], raised["service"]) == (
        vm.id,
        SAMPLE_HOST,
        "tcp",
        25,
        "mail",
    )
    assert raised["product"] == "Postfix smtpd" and raised["state"] == "open" and raised["open"] is True
    assert "第6条" in raised["reasons_zh"][0] and "§6" in raised["reasons_en"][0]
    assert body["still_open"] == [] and body["resolved"] == [] and body["unmatched_hosts"] == []

    # The same report again: seen, not raised a second time.
    second = upload(client, h, NMAP_SAMPLE).json()
    assert second["raised"] == [] and second["scan"]["violations_raised"] == 0
    assert [v["id"] for v in second["still_open"]] == [raised["id"]]
    assert second["still_open"][0]["last_scan_id"] == second["scan"]["id"]
    listed = client.get("/api/v1/violations", params={"vm_id": vm.id}, headers=h).json()
    assert listed["total"] == 1 and listed["items"][0]["state"] == "open"

    # The unit heard of it once (one mail for the first scan, none for the second).
    admin_mail = contacts(unit)["security_admin"]
    mails = mail_server.collector.to(admin_mail)
    assert len(mails) == 1 and "违规服务" in mails[0].subject
    assert CENTER_MAILBOX in mails[0].rcpt_tos and "25/tcp" in mails[0].body

    # Gone in a later scan (the host is up, port 25 was scanned and is closed): resolved.
    gone = upload(client, h, NMAP_WITHOUT_MAIL).json()
    assert gone["raised"] == [] and [v["id"] for v in gone["resolved"]] == [raised["id"]]
    resolved = client.get(f"/api/v1/violations/{raised['id']}", headers=h).json()
    assert resolved["state"] == "resolved" and resolved["open"] is False and resolved["resolved_at"]

    # Back again: a new appearance, a new violation.
    back = upload(client, h, NMAP_SAMPLE).json()
    assert len(back["raised"]) == 1 and back["raised"][0]["id"] != raised["id"]
    states = client.get("/api/v1/violations", params={"vm_id": vm.id}, headers=h).json()["items"]
    assert sorted(v["state"] for v in states) == ["open", "resolved"]
    assert client.get("/api/v1/violations", params={"open": True}, headers=h).json()["total"] == 1

    scans = client.get("/api/v1/scans", headers=h).json()
    assert scans["total"] == 4


def test_a_host_of_no_vm_is_reported_and_a_down_host_resolves_nothing(
    client: TestClient, factory: Factory
) -> None:
    h = center_admin(client, factory)
    first = upload(client, h, NMAP_SAMPLE).json()
    assert first["raised"] == [] and first["unmatched_hosts"] == [SAMPLE_HOST]

    vm = vm_at(factory, factory.unit(), SAMPLE_HOST)
    raised = upload(client, h, NMAP_SAMPLE).json()["raised"]
    assert len(raised) == 1
    down = NMAP_SAMPLE.replace(b'<status state="up"', b'<status state="down"')
    after = upload(client, h, down).json()
    assert after["resolved"] == [] and after["still_open"] == []
    assert client.get(f"/api/v1/violations/{raised[0]['id']}", headers=h).json()["state"] == "open"
    assert vm.id == raised[0]["vm_id"]


def test_an_exemption_closes_the_violation_and_suppresses_it_until_revoked(
    client: TestClient, factory: Factory
) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = vm_at(factory, unit, SAMPLE_HOST)
    raised = upload(client, h, NMAP_SAMPLE).json()["raised"][0]

    granted = client.post(
        "/api/v1/exemptions",
        json={
            "vm_id": vm.id,
            "kind": "mail",
            "port": 25,
            "reason": "学院邮件服务，经网信办批准（2026-12号）",
        },
        headers=h,
    )
    assert granted.status_code == 201, granted.text
    exemption = granted.json()
    assert exemption["active"] is True and exemption["closed_violations"] == [raised["id"]]
    closed = client.get(f"/api/v1/violations/{raised['id']}", headers=h).json()
    assert closed["state"] == "exempted" and closed["open"] is False

    again = upload(client, h, NMAP_SAMPLE).json()
    assert again["raised"] == [] and again["still_open"] == []
    assert again["exempted"] == [{"vm_id": vm.id, "protocol": "tcp", "port": 25, "service": "mail"}]

    # An exemption for another port does not cover 25; a revoked one exempts nothing.
    assert client.delete(f"/api/v1/exemptions/{exemption['id']}", headers=h).json()["active"] is False
    assert client.delete(f"/api/v1/exemptions/{exemption['id']}", headers=h).status_code == 409
    other = client.post(
        "/api/v1/exemptions",
        json={"vm_id": vm.id, "kind": "mail", "port": 587, "reason": "submission only"},
        headers=h,
    )
    assert other.status_code == 201 and other.json()["closed_violations"] == []
    back = upload(client, h, NMAP_SAMPLE).json()
    assert len(back["raised"]) == 1

    admin = factory.login(client, factory.user("unit_admin", unit))
    mine = client.get("/api/v1/exemptions", headers=admin).json()
    assert {e["id"] for e in mine} == {exemption["id"], other.json()["id"]}
    stranger = factory.login(client, factory.user("unit_admin", factory.unit()))
    assert client.get("/api/v1/exemptions", headers=stranger).json() == []
    assert client.get(f"/api/v1/violations/{raised['id']}", headers=stranger).status_code == 404

    bad = client.post(
        "/api/v1/exemptions",
        json={"vm_id": vm.id, "kind": "ftp", "reason": "x"},
        headers=h,
    )
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "kind"
    past = client.post(
        "/api/v1/exemptions",
        json={"vm_id": vm.id, "kind": "dns", "reason": "x", "expires_at": "2020-01-01T00:00:00Z"},
        headers=h,
    )
    assert past.status_code == 422 and past.json()["error"]["fields"][0]["field"] == "expires_at"
    assert (
        client.post(
            "/api/v1/exemptions", json={"vm_id": vm.id, "kind": "dns", "reason": "x"}, headers=admin
        ).status_code
        == 403
    )


def test_the_center_shuts_a_violating_vm_down_through_the_power_service(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = vm_at(factory, unit, SAMPLE_HOST)
    violation = upload(client, h, NMAP_SAMPLE).json()["raised"][0]
    admin = factory.login(client, factory.user("unit_admin", unit))
    assert vm_state(client, admin, vm)["power_state"] == "running"

    refused = client.post(f"/api/v1/violations/{violation['id']}/shutdown", json={}, headers=admin)
    assert refused.status_code == 403

    done = client.post(
        f"/api/v1/violations/{violation['id']}/shutdown",
        json={"reason": "私设邮件服务，多次提醒未关闭"},
        headers=h,
    )
    assert done.status_code == 202, done.text
    answer = done.json()
    assert answer["violation"]["state"] == "shut_down" and answer["operation_id"] is not None
    assert answer["violation"]["evidence"]["shutdown"]["operation_id"] == answer["operation_id"]
    assert vm_state(client, admin, vm)["power_state"] == "stopped"
    with db.transaction() as s:
        op = s.get(PowerOperation, answer["operation_id"])
        assert op is not None and (op.action, op.state) == ("stop", "succeeded")
        assert "violation" in op.reason
        audit = s.exec(
            select(AuditEntry.action).where(
                AuditEntry.target_type == "service_violation", AuditEntry.target_id == str(violation["id"])
            )
        ).all()
        assert list(audit) == ["security.violation.shutdown"]
        power = s.exec(
            select(AuditEntry.action, AuditEntry.result)
            .where(AuditEntry.action == "vm.power", AuditEntry.target_id == str(vm.id))
            .order_by(col(AuditEntry.id))
        ).all()
        assert list(power) == [("vm.power", "ok")]

    again = client.post(f"/api/v1/violations/{violation['id']}/shutdown", json={}, headers=h)
    assert again.status_code == 409 and again.json()["error"]["state"] == "shut_down"
    # The VM is off: the next scan sees the host down, which proves nothing; the violation stays.
    assert upload(client, h, NMAP_SAMPLE.replace(b'state="up"', b'state="down"')).json()["resolved"] == []

    [mail] = mail_server.collector.about("已被信息中心关闭")
    assert contacts(unit)["security_admin"] in mail.rcpt_tos


def test_unsafe_malformed_and_unauthorised_uploads_are_refused(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE nmaprun [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<nmaprun>&xxe;</nmaprun>"
    )
    r = upload(client, h, xxe)
    assert r.status_code == 422 and "refused for safety" in r.json()["error"]["message"]
    assert r.json()["error"]["fields"][0]["field"] == "file"
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b"<nmaprun>&lol2;</nmaprun>"
    )
    assert upload(client, h, bomb).status_code == 422
    assert upload(client, h, b"<nmaprun><host>").status_code == 400
    not_nmap = upload(client, h, b"<?xml version='1.0'?><html><body/></html>")
    assert not_nmap.status_code == 422 and "not an Nmap XML report" in not_nmap.json()["error"]["message"]
    assert upload(client, h, b"").status_code == 422
    json_body = client.post("/api/v1/scans", json={"file": "x"}, headers=h)
    assert json_body.status_code == 415
    missing = client.post("/api/v1/scans", files={"other": ("x.xml", b"<nmaprun/>")}, headers=h)
    assert missing.status_code == 422 and missing.json()["error"]["fields"][0]["field"] == "file"
    huge = client.post(
        "/api/v1/scans",
        files={"file": ("x.xml", b"<nmaprun/>", "application/xml")},
        headers={**h, "Content-Length": str(64 * 1024 * 1024)},
    )
    assert huge.status_code == 413
    unit_admin = factory.login(client, factory.user("unit_admin", factory.unit()))
    assert upload(client, unit_admin, NMAP_SAMPLE).status_code == 403
    assert client.get("/api/v1/scans", headers=unit_admin).status_code == 403
    with db.transaction() as s:
        assert s.exec(select(AuditEntry).where(AuditEntry.action == "security.scan.upload")).all() == []
