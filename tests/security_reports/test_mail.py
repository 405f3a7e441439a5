"""E-mail notifications against a real SMTP server (aiosmtpd on loopback): who receives what on
containment, rectification decisions and dismissal, in Chinese first; a server that is down is retried
with backoff and the mail delivered when it is back; a server that hangs never delays containment; a
permanent refusal fails the mail, which the center can send again."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import col, select

from tests.factories import Factory
from tests.security.helpers import center_admin, incidents, nics, post, register, suricata_c2
from tests.security_reports.conftest import CENTER_MAILBOX, HungServer, MailServer
from tests.security_reports.helpers import contacts
from vmportal.incidents import mails as incident_mails
from vmportal.incidents.models import Incident, IncidentEvent, Notification
from vmportal.kit import db
from vmportal.kit.settings import Settings
from vmportal.mail import service as notification
from vmportal.mail import tasks as tasks_mail


def _contained(client: TestClient, factory: Factory) -> tuple[Any, Any, dict[str, str], dict[str, Any]]:
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = factory.vm(unit)
    source = register(client, h, "suricata")
    assert post(client, source, suricata_c2(vm.ip_address or "")).status_code == 202
    [incident] = incidents(client, h, vm_id=vm.id)
    assert incident["state"] == "contained"
    return unit, vm, h, incident


def _report(client: TestClient, headers: dict[str, str], incident_id: int, text: str) -> dict[str, Any]:
    r = client.post(f"/api/v1/incidents/{incident_id}/rectifications", data={"text": text}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _rows(**where: Any) -> list[Notification]:
    with db.transaction() as s:
        query = select(Notification).order_by(col(Notification.id))
        for name, value in where.items():
            query = query.where(getattr(Notification, name) == value)
        return list(s.exec(query).all())


def test_containment_and_the_centers_decisions_are_mailed_to_the_unit_and_the_center(
    client: TestClient, factory: Factory, mail_server: MailServer, settings: Settings
) -> None:
    settings.base_url = "https://vm.nic.example.edu.cn/"  # where the portal is published
    unit, vm, h, incident = _contained(client, factory)
    iid = incident["id"]
    registry = contacts(unit)

    [contained] = mail_server.messages
    assert contained.subject.startswith(
        f"【网络与信息中心】虚拟机 {vm.name}（{vm.ip_address}）因安全事件 #{iid} 已被暂停"
    )
    assert f"VM {vm.name} ({vm.ip_address}) suspended" in contained.subject
    assert contained.message["To"] == f"{registry['security_admin']}, {registry['security_lead']}"
    assert contained.message["Cc"] == CENTER_MAILBOX
    assert sorted(contained.rcpt_tos) == sorted([*registry.values(), CENTER_MAILBOX])
    assert contained.mail_from == "vmportal@nic.example.edu.cn"
    assert contained.message["Message-ID"].startswith("<notification-")
    body = contained.body
    assert "断开网络" in body and "整改报告" in body and "rectification report" in body
    assert body.index("整改报告") < body.index("rectification report")  # Chinese first
    # The link opens the incident's page on the published address, never a JSON URL.
    assert f"详情：https://vm.nic.example.edu.cn/incidents/{iid}）" in body
    assert f"Details: https://vm.nic.example.edu.cn/incidents/{iid})" in body
    assert "/api/v1" not in body and "127.0.0.1" not in body

    admin = factory.login(client, factory.user("unit_admin", unit))
    first = _report(client, admin, iid, "已清除木马。")
    assert len(mail_server.messages) == 1  # submitting is not mailed
    rejected = client.post(
        f"/api/v1/rectifications/{first['id']}/reject", json={"reason": "C2 连接仍然存在"}, headers=h
    )
    assert rejected.status_code == 200
    [reject_mail] = mail_server.collector.about("整改报告被驳回")
    assert "C2 连接仍然存在" in reject_mail.body and registry["security_admin"] in reject_mail.rcpt_tos

    second = _report(client, admin, iid, "已重装系统。")
    client.post(f"/api/v1/rectifications/{second['id']}/accept", json={"comment": "复测通过"}, headers=h)
    [accept_mail] = mail_server.collector.about("整改报告已通过")
    assert "Rectification accepted" in accept_mail.subject and all(nics(factory, vm))

    # A dismissal (false positive) on another VM.
    vm2 = factory.vm(unit)
    source = register(client, h, "suricata")
    post(client, source, suricata_c2(vm2.ip_address or ""))
    [incident2] = incidents(client, h, vm_id=vm2.id)
    client.post(f"/api/v1/incidents/{incident2['id']}/dismiss", json={"reason": "授权渗透测试"}, headers=h)
    [dismissed] = mail_server.collector.about("已判定为误报")
    assert "授权渗透测试" in dismissed.body

    kinds = [n.kind for n in _rows(unit_id=unit.id)]
    assert kinds == [
        "containment",
        "rectification_rejected",
        "rectification_accepted",
        "containment",
        "dismissed",
    ]
    assert all(n.state == "sent" and n.attempts == 1 for n in _rows())


def test_a_mail_to_a_server_that_is_down_is_retried_and_delivered_when_it_is_back(
    client: TestClient, factory: Factory, mail_server_down: MailServer
) -> None:
    unit, _vm, h, incident = _contained(client, factory)
    [row] = _rows(kind="containment")
    assert row.state == "pending" and row.attempts == 1
    assert "ConnectionRefusedError" in row.last_error
    assert row.next_attempt_at is not None
    first_retry = row.next_attempt_at
    assert timedelta(seconds=50) < first_retry - db.utcnow() <= timedelta(minutes=1)

    # Beat's run before the backoff has passed sends nothing; still down at the retry: backoff doubles.
    assert tasks_mail.send_notifications()["retry"] == 0
    assert notification.send_due(now=first_retry + timedelta(seconds=1))["retry"] == 1
    [row] = _rows(kind="containment")
    assert row.attempts == 2 and row.next_attempt_at is not None
    assert row.next_attempt_at - first_retry >= timedelta(minutes=2)

    # The center sees it waiting.
    waiting = client.get("/api/v1/notifications", params={"state": "pending"}, headers=h).json()
    assert [n["id"] for n in waiting["items"]] == [row.id] and waiting["items"][0]["attempts"] == 2

    mail_server_down.start()
    assert notification.send_due(now=row.next_attempt_at + timedelta(seconds=1))["sent"] == 1
    [row] = _rows(kind="containment")
    assert (row.state, row.attempts, row.last_error, row.next_attempt_at) == ("sent", 3, "", None)
    [delivered] = mail_server_down.messages
    assert f"安全事件 #{incident['id']}" in delivered.subject
    assert contacts(unit)["security_admin"] in delivered.rcpt_tos
    assert notification.send_due(now=db.utcnow() + timedelta(days=1))["sent"] == 0  # once


def test_a_hung_mail_server_does_not_delay_containment(
    client: TestClient, factory: Factory, hung_mail_server: HungServer
) -> None:
    started = time.monotonic()
    _unit, vm, h, incident = _contained(client, factory)
    elapsed = time.monotonic() - started

    full = client.get(f"/api/v1/incidents/{incident['id']}", headers=h).json()
    assert full["containment_state"] == "confirmed" and not any(nics(factory, vm))
    # The hypervisor confirmed the containment before the portal even connected to the mail server,
    # and the mail server's timeout is not in the containment's latency.
    [connected_at] = hung_mail_server.connected_at
    assert datetime.fromisoformat(full["contained_at"]).timestamp() <= connected_at
    assert full["containment_latency_seconds"] < hung_mail_server.timeout
    [row] = _rows(kind="containment")
    assert row.state == "pending" and row.attempts == 1 and "timed out" in row.last_error.lower()
    assert elapsed >= hung_mail_server.timeout  # the inline mail attempt did wait (after the containment)


def test_a_permanent_refusal_fails_the_mail_and_the_center_can_send_it_again(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    mail_server.collector.refuse = True
    unit, _vm, h, _incident = _contained(client, factory)
    [row] = _rows(kind="containment")
    assert row.state == "failed" and row.attempts == 1 and "550" in row.last_error
    assert mail_server.messages == []

    admin = factory.login(client, factory.user("unit_admin", unit))
    assert client.get("/api/v1/notifications", headers=admin).status_code == 403
    assert client.post(f"/api/v1/notifications/{row.id}/resend", headers=admin).status_code == 403

    mail_server.collector.refuse = False
    again = client.post(f"/api/v1/notifications/{row.id}/resend", headers=h)
    assert again.status_code == 202 and again.json()["attempts"] == 0
    [row] = _rows(kind="containment")
    assert row.state == "sent" and len(mail_server.messages) == 1
    assert client.post(f"/api/v1/notifications/{row.id}/resend", headers=h).json()["error"]["state"] == "sent"


def test_without_any_address_the_mail_is_kept_as_failed(client: TestClient, factory: Factory) -> None:
    factory.settings.smtp_host = "127.0.0.1"
    factory.settings.center_mailbox = ""
    h = center_admin(client, factory)
    unit = factory.unit(paperwork=False)  # no contact registry
    vm = factory.vm(unit)
    finding = client.post(
        "/api/v1/findings",
        json={"vm_id": vm.id, "category": "weak_password", "severity": "low", "title": "FTP 匿名登录"},
        headers=h,
    ).json()
    [row] = _rows(kind="finding_opened")
    assert row.state == "failed" and "no recipient" in row.last_error and row.to == []
    assert client.get(f"/api/v1/findings/{finding['id']}", headers=h).json()["state"] == "open"


def test_a_broken_notification_never_rolls_back_the_containment(
    client: TestClient, factory: Factory, mail_server: MailServer, monkeypatch: Any
) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("contact registry unreadable")

    monkeypatch.setattr(notification, "recipients", broken)
    _unit, vm, _h, incident = _contained(client, factory)
    assert incident["containment_state"] == "confirmed" and not any(nics(factory, vm))
    assert _rows() == [] and mail_server.messages == []


def test_the_same_step_reported_twice_is_mailed_once(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    _unit, _vm, _h, incident = _contained(client, factory)
    with db.transaction() as s:
        row = s.get(Incident, incident["id"])
        assert row is not None
        event = s.exec(
            select(IncidentEvent).where(
                IncidentEvent.incident_id == row.id, IncidentEvent.kind == "contained"
            )
        ).one()
        incident_mails.on_event(s, row, event)  # as if a second call site reported it too
    assert len(_rows(kind="containment")) == 1 and len(mail_server.messages) == 1
