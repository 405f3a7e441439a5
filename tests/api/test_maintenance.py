"""Planned outages (issue 14 point 5, agreement §9) through the API: the rule maintenance_notice
refuses an announcement inside the center's notice period unless an emergency reason is recorded;
the affected VMs and units are worked out from the inventory (a connection, its hosts, or VMs by
id) and mailed (an unaffected unit is not); units see the outages touching them and not another
unit's; a power request during an outage is accepted with a warning naming it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from hypervisors import CloneSpec, ConnectionConfig, HypervisorKind, create
from tests.factories import Factory
from tests.security_reports.conftest import CENTER_MAILBOX, MailServer, free_port
from vmportal.audit.models import AuditEntry
from vmportal.kit import db
from vmportal.kit.settings import Settings
from vmportal.mail import service as mail
from vmportal.maintenance.models import MaintenanceWindow
from vmportal.unit.models import Contact, Unit
from vmportal.vm.models import VM

API = "/api/v1"
H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.fixture
def mail_server(settings: Settings) -> Iterator[MailServer]:
    server = MailServer(settings, free_port())
    settings.smtp_host = "127.0.0.1"
    settings.smtp_port = server.port
    settings.smtp_timeout = 5.0
    settings.mail_from = "vmportal@nic.example.edu.cn"
    settings.center_mailbox = CENTER_MAILBOX
    server.start()
    yield server
    server.stop()


def _window(**fields: Any) -> dict[str, Any]:
    start = db.utcnow() + 4 * D
    body: dict[str, Any] = {
        "title": "存储扩容",
        "reason": "更换存储控制器",
        "scope": "vms",
        "starts_at": start.isoformat(),
        "ends_at": (start + 4 * H).isoformat(),
    }
    body.update(fields)
    return body


def _announce(client: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    r = client.post(f"{API}/maintenance", json=_window(**fields), headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _admin_email(unit: Unit) -> str:
    with db.transaction() as s:
        return (
            s.exec(select(Contact).where(Contact.unit_id == unit.id, Contact.role == "security_admin"))
            .one()
            .email
        )


def _vm_on_host(factory: Factory, unit: Unit, host: str, name: str) -> VM:
    """A VM the simulator reports on ``host`` (factory VMs run on the default host, sim-esx-01)."""
    conn = factory.connection()
    adapter = create(ConnectionConfig(kind=HypervisorKind.SIMULATOR, url=conn.url))
    template = adapter.list_templates()[0]
    info = adapter.clone(
        CloneSpec(
            name=name,
            template_ref=template.ref,
            marker=f"host:{name}",
            vcpus=2,
            memory_mib=4096,
            placement={"host": host},
        )
    )
    assert conn.id is not None
    row = VM(
        unit_id=unit.id, connection_id=conn.id, hypervisor_ref=info.ref, name=info.name, power_state="running"
    )
    with db.transaction() as s:
        s.add(row)
        s.flush()
        s.refresh(row)
        s.expunge(row)
    return row


def test_a_notice_inside_the_period_is_refused_unless_an_emergency_reason_is_recorded(
    client: TestClient, factory: Factory
) -> None:
    a = factory.unit()
    vm = factory.vm(a, name="oa-web")
    center = factory.login(client, factory.user("center_admin"))
    soon = db.utcnow() + 2 * H
    late = _window(vm_ids=[vm.id], starts_at=soon.isoformat(), ends_at=(soon + H).isoformat())

    r = client.post(f"{API}/maintenance", json=late, headers=center)
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["rule"] == "maintenance_notice"
    assert "72 小时" in error["message_zh"] and "第9条" in error["message_zh"]
    assert "72 h" in error["message"] and "§9" in error["message"] and "emergency_reason" in error["message"]
    with db.transaction() as s:
        assert s.exec(select(MaintenanceWindow)).first() is None  # nothing half-written

    accepted = _announce(client, center, **{**late, "emergency_reason": "存储控制器告警，须立即更换"})
    assert accepted["emergency"] is True and accepted["emergency_reason"] == "存储控制器告警，须立即更换"
    assert accepted["notice_hours"] == 72 and [v["vm_id"] for v in accepted["vms"]] == [vm.id]
    with db.transaction() as s:
        entry = s.exec(
            select(AuditEntry).where(AuditEntry.action == "maintenance.announce", AuditEntry.result == "ok")
        ).one()
        assert entry.after is not None and entry.after["emergency_reason"] == "存储控制器告警，须立即更换"
        assert entry.after["unit_ids"] == [a.id]

    # The notice period is the center's setting: at 1 hour the same lead needs no emergency.
    r = client.put(f"{API}/settings", json={"maintenance_notice_hours": 1}, headers=center)
    assert r.status_code == 200 and r.json()["maintenance_notice_hours"] == 1
    assert client.post(f"{API}/maintenance", json=late, headers=center).status_code == 201
    r = client.put(f"{API}/settings", json={"maintenance_notice_hours": 0}, headers=center)
    assert r.status_code == 422 and "maintenance_notice_hours" in r.text


def test_bad_input_is_a_422_naming_the_field(client: TestClient, factory: Factory) -> None:
    a = factory.unit()
    vm = factory.vm(a)
    center = factory.login(client, factory.user("center_admin"))
    admin = factory.login(client, factory.user("unit_admin", a))

    def error(body: dict[str, Any]) -> dict[str, Any]:
        r = client.post(f"{API}/maintenance", json=body, headers=center)
        assert r.status_code == 422, r.text
        return dict(r.json()["error"])

    start = db.utcnow() + 5 * D
    e = error(_window(vm_ids=[vm.id], starts_at=start.isoformat(), ends_at=(start - H).isoformat()))
    assert e["fields"][0]["field"] == "ends_at" and e["fields"][0]["rule"] == "after_start"
    assert e["message_zh"].startswith("结束时间：") and "ends_at" in e["message"]
    e = error(_window(scope="connection", connection_id=999_999))
    assert e["fields"][0]["field"] == "connection_id" and "999999" in e["message_zh"]
    e = error(_window(scope="host", connection_id=factory.connection().id, names=["no-such-esx"]))
    assert e["fields"][0]["field"] == "names" and "no-such-esx" in e["message_zh"]
    e = error(_window(vm_ids=[vm.id, 999_999]))
    assert e["fields"][0]["field"] == "vm_ids" and "999999" in e["message"]
    e = error(_window(vm_ids=[vm.id], starts_at="2027-01-05T08:00"))  # no time zone
    assert "starts_at" in e["message"] and "开始时间" in e["message_zh"]
    e = error(_window(scope="everything"))
    assert "scope" in e["message"]
    # Only the center announces.
    assert client.post(f"{API}/maintenance", json=_window(vm_ids=[vm.id]), headers=admin).status_code == 403
    with db.transaction() as s:
        assert s.exec(select(MaintenanceWindow)).first() is None


def test_the_affected_units_are_worked_out_from_the_inventory_and_see_only_theirs(
    client: TestClient, factory: Factory
) -> None:
    a, b, c = factory.unit(), factory.unit(), factory.unit()
    vm_a = factory.vm(a, name="lab-web")
    vm_b = factory.vm(b, name="oa-db")
    vm_c = _vm_on_host(factory, c, "sim-esx-02", "library-web")
    center = factory.login(client, factory.user("center_admin"))
    admin_a = factory.login(client, factory.user("unit_admin", a))
    lead_b = factory.login(client, factory.user("unit_lead", b))
    admin_c = factory.login(client, factory.user("unit_admin", c))
    auditor = factory.login(client, factory.user("auditor"))
    conn_id = factory.connection().id

    # A host: the VMs the connection reports on it, and only those.
    host = _announce(client, center, scope="host", connection_id=conn_id, names=["sim-esx-01"])
    ids = {v["vm_id"] for v in host["vms"]}
    assert {vm_a.id, vm_b.id} <= ids and vm_c.id not in ids
    assert {u["unit_id"] for u in host["units"]} == {a.id, b.id}
    # A cluster: both hosts' VMs are in the simulator's one cluster.
    cluster = _announce(client, center, scope="cluster", connection_id=conn_id, names=["sim-cluster"])
    assert {vm_a.id, vm_b.id, vm_c.id} <= {v["vm_id"] for v in cluster["vms"]}
    r = client.post(
        f"{API}/maintenance/{cluster['id']}/cancel", json={"reason": "合并到平台升级"}, headers=center
    )
    assert r.status_code == 200
    # The whole connection: every active VM on it.
    whole = _announce(client, center, scope="connection", connection_id=conn_id, title="平台升级")
    assert {vm_a.id, vm_b.id, vm_c.id} <= {v["vm_id"] for v in whole["vms"]}

    # A unit sees the outages touching it, with its own VMs only.
    seen_a = client.get(f"{API}/maintenance", headers=admin_a).json()
    assert [w["id"] for w in seen_a] == [host["id"], whole["id"]]
    assert all({v["unit_id"] for v in w["vms"]} == {a.id} for w in seen_a)
    assert all([u["unit_id"] for u in w["units"]] == [a.id] for w in seen_a)
    assert [w["id"] for w in client.get(f"{API}/maintenance", headers=lead_b).json()] == [
        host["id"],
        whole["id"],
    ]
    # Unit C is touched by the whole connection only: the host's outage is not its business (404).
    assert [w["id"] for w in client.get(f"{API}/maintenance", headers=admin_c).json()] == [whole["id"]]
    r = client.get(f"{API}/maintenance/{host['id']}", headers=admin_c)
    assert r.status_code == 404 and r.json()["error"]["message_zh"].startswith("未找到计划停机")
    assert client.get(f"{API}/maintenance/{host['id']}", headers=admin_a).status_code == 200
    # The center and the auditor see all, with every unit.
    assert len(client.get(f"{API}/maintenance", headers=auditor).json()) == 2
    full = client.get(f"{API}/maintenance/{host['id']}", headers=center).json()
    assert {u["unit_id"] for u in full["units"]} == {a.id, b.id}

    # Cancelled outages leave the default list (current and coming) but stay readable.
    r = client.post(f"{API}/maintenance/{host['id']}/cancel", json={"reason": "推迟到寒假"}, headers=center)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert [w["id"] for w in client.get(f"{API}/maintenance", headers=admin_a).json()] == [whole["id"]]
    listed = client.get(f"{API}/maintenance", params={"include_cancelled": True}, headers=admin_a).json()
    assert [w["id"] for w in listed] == [host["id"], cluster["id"], whole["id"]]
    assert (
        client.post(
            f"{API}/maintenance/{host['id']}/cancel", json={"reason": "x"}, headers=admin_a
        ).status_code
        == 403
    )


def test_a_power_operation_during_an_outage_carries_a_warning(client: TestClient, factory: Factory) -> None:
    a = factory.unit()
    vm = factory.vm(a, name="lab-web", power_state="stopped")
    other = factory.vm(a, name="lab-db", power_state="stopped")
    center = factory.login(client, factory.user("center_admin"))
    admin = factory.login(client, factory.user("unit_admin", a))
    now = db.utcnow()
    window = _announce(
        client,
        center,
        vm_ids=[vm.id],
        starts_at=(now - 10 * 60 * timedelta(seconds=1)).isoformat(),
        ends_at=(now + 2 * H).isoformat(),
        emergency_reason="机房空调故障，须立即停机检修",
    )
    assert window["current"] is True

    r = client.post(f"{API}/vms/{vm.id}/power", json={"action": "start"}, headers=admin)
    assert r.status_code == 202, r.text  # not refused
    [warning] = r.json()["warnings"]
    assert warning["code"] == "maintenance" and warning["detail"]["maintenance_id"] == window["id"]
    assert "计划停机" in warning["message_zh"] and "存储扩容" in warning["message_zh"]
    assert "Planned outage" in warning["message"] and "may fail" in warning["message"]
    # A VM outside the outage: no warning.
    r = client.post(f"{API}/vms/{other.id}/power", json={"action": "start"}, headers=admin)
    assert r.status_code == 202 and r.json()["warnings"] == []
    # Once cancelled, the outage warns no more.
    client.post(f"{API}/maintenance/{window['id']}/cancel", json={"reason": "空调已修复"}, headers=center)
    r = client.post(f"{API}/vms/{vm.id}/power", json={"action": "stop"}, headers=admin)
    assert r.status_code == 202 and r.json()["warnings"] == []


def test_the_affected_units_and_the_center_are_mailed_and_an_unaffected_unit_is_not(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    a, b, c = factory.unit(), factory.unit(), factory.unit()
    vm_a1 = factory.vm(a, name="lab-web")
    vm_a2 = factory.vm(a, name="lab-db")
    vm_b = factory.vm(b, name="oa-db")
    factory.vm(c, name="library-web")
    center = factory.login(client, factory.user("center_admin"))
    window = _announce(client, center, vm_ids=[vm_a1.id, vm_a2.id, vm_b.id])
    mail.wait_idle()

    announced = mail_server.collector.about("计划停机通知")
    to_a = [m for m in announced if _admin_email(a) in m.rcpt_tos]
    to_b = [m for m in announced if _admin_email(b) in m.rcpt_tos]
    assert len(to_a) == 1 and len(to_b) == 1
    assert not [m for m in mail_server.messages if _admin_email(c) in m.rcpt_tos]
    body_a = to_a[0].body
    assert "lab-web" in body_a and "lab-db" in body_a and "oa-db" not in body_a
    assert "停机时间" in body_a and "Window:" in body_a and "更换存储控制器" in body_a
    assert "Planned outage" in to_a[0].subject
    assert "oa-db" in to_b[0].body and "lab-web" not in to_b[0].body
    [summary] = [m for m in announced if m.rcpt_tos == [CENTER_MAILBOX]]
    assert "已通知 2 个单位" in summary.subject and "受影响虚拟机 3 台" in summary.body

    # A change mails the same units again, with the new window.
    later = db.utcnow() + 6 * D
    r = client.patch(
        f"{API}/maintenance/{window['id']}",
        json={"starts_at": later.isoformat(), "ends_at": (later + 2 * H).isoformat()},
        headers=center,
    )
    assert r.status_code == 200, r.text
    mail.wait_idle()
    changed = mail_server.collector.about("计划停机变更")
    assert {tuple(m.rcpt_tos) for m in changed} >= {(CENTER_MAILBOX,)}
    assert len([m for m in changed if _admin_email(a) in m.rcpt_tos]) == 1
    assert len([m for m in changed if _admin_email(b) in m.rcpt_tos]) == 1
    assert not [m for m in changed if _admin_email(c) in m.rcpt_tos]
    # Moving the start earlier, into the notice period, is held to the rule like a new announcement.
    soon = db.utcnow() + 3 * H
    r = client.patch(
        f"{API}/maintenance/{window['id']}", json={"starts_at": soon.isoformat()}, headers=center
    )
    assert r.status_code == 403 and r.json()["error"]["rule"] == "maintenance_notice"

    r = client.post(f"{API}/maintenance/{window['id']}/cancel", json={"reason": "推迟到寒假"}, headers=center)
    assert r.status_code == 200
    mail.wait_idle()
    cancelled = mail_server.collector.about("计划停机取消")
    assert len([m for m in cancelled if _admin_email(a) in m.rcpt_tos]) == 1
    assert "推迟到寒假" in cancelled[0].body
    with db.transaction() as s:
        actions = [(e.action, e.result) for e in s.exec(select(AuditEntry).order_by(col(AuditEntry.id)))]
    assert [x for x in actions if x[0].startswith("maintenance.")] == [
        ("maintenance.announce", "ok"),
        ("maintenance.change", "ok"),
        ("maintenance.change", "denied"),  # the start moved into the notice period, refused
        ("maintenance.cancel", "ok"),
    ]


def test_a_refused_announcement_is_audited_as_denied_and_nothing_else_is_kept(
    client: TestClient, factory: Factory
) -> None:
    a = factory.unit()
    vm = factory.vm(a, name="oa-web")
    center = factory.login(client, factory.user("center_admin"))
    soon = db.utcnow() + 2 * H
    late = _window(vm_ids=[vm.id], starts_at=soon.isoformat(), ends_at=(soon + H).isoformat())
    r = client.post(f"{API}/maintenance", json=late, headers=center)
    assert r.status_code == 403 and r.json()["error"]["rule"] == "maintenance_notice"
    with db.transaction() as s:
        assert s.exec(select(MaintenanceWindow)).first() is None  # the refusal's rollback kept nothing
        [entry] = s.exec(select(AuditEntry).where(AuditEntry.action == "maintenance.announce")).all()
        assert entry.result == "denied" and "[maintenance_notice]" in entry.detail
        assert entry.after is not None and entry.after["vm_ids"] == [vm.id]
        assert entry.after["unit_ids"] == [a.id] and entry.after["notice_hours"] == 72

    # A change that takes time inside the notice period: refused and audited on that window.
    window = _announce(client, center, vm_ids=[vm.id])
    r = client.patch(
        f"{API}/maintenance/{window['id']}", json={"starts_at": soon.isoformat()}, headers=center
    )
    assert r.status_code == 403
    with db.transaction() as s:
        entries = s.exec(select(AuditEntry).where(AuditEntry.action == "maintenance.change")).all()
        assert [(e.result, e.target_id) for e in entries] == [("denied", str(window["id"]))]
        assert entries[0].after is not None and entries[0].after["starts_at"] == soon.isoformat()
        kept = s.get(MaintenanceWindow, window["id"])
        assert kept is not None and kept.starts_at.isoformat() == window["starts_at"].replace("Z", "+00:00")
    # The denied rows are on the audit chain like any other.
    auditor = factory.login(client, factory.user("auditor"))
    verified = client.get(f"{API}/audit/verify", headers=auditor)
    assert verified.status_code == 200 and verified.json()["ok"] is True


def test_the_affected_units_are_reminded_once_before_the_start(
    client: TestClient, factory: Factory, mail_server: MailServer, settings: Settings
) -> None:
    from vmportal.maintenance import tasks

    a, b, c = factory.unit(), factory.unit(), factory.unit()
    vm_a, vm_b = factory.vm(a, name="lab-web"), factory.vm(b, name="oa-db")
    factory.vm(c, name="library-web")
    center = factory.login(client, factory.user("center_admin"))
    window = _announce(client, center, vm_ids=[vm_a.id, vm_b.id])
    start = db.utcnow() + 4 * D  # as _window sets it, give or take the request's time
    mail.wait_idle()
    assert tasks.send_reminders() == 0  # four days ahead: not yet

    # 23 hours before the start (the default is 24): one reminder to each affected unit.
    at = start - 23 * H
    assert tasks.send_reminders(at) == 2
    assert tasks.send_reminders(at) == 0  # a second run (or a late one) sends nothing again
    assert tasks.send_reminders(at + 12 * H) == 0
    mail.wait_idle()
    reminded = mail_server.collector.about("计划停机提醒")
    assert len([m for m in reminded if _admin_email(a) in m.rcpt_tos]) == 1
    assert len([m for m in reminded if _admin_email(b) in m.rcpt_tos]) == 1
    assert not [m for m in reminded if _admin_email(c) in m.rcpt_tos]
    assert not [m for m in reminded if m.rcpt_tos == [CENTER_MAILBOX]]
    to_a = next(m for m in reminded if _admin_email(a) in m.rcpt_tos)
    assert "lab-web" in to_a.body and "oa-db" not in to_a.body and "即将开始" in to_a.body
    assert "Planned outage reminder" in to_a.subject and "存储扩容" in to_a.subject

    # Moved two days later: the units are reminded again before the new start, once.
    later = start + 2 * D
    r = client.patch(
        f"{API}/maintenance/{window['id']}",
        json={"starts_at": later.isoformat(), "ends_at": (later + 2 * H).isoformat()},
        headers=center,
    )
    assert r.status_code == 200, r.text
    assert tasks.send_reminders(later - 23 * H) == 2
    assert tasks.send_reminders(later - 22 * H) == 0
    # Cancelled: no reminder; an emergency announced two hours ahead: its own mail was the reminder.
    client.post(f"{API}/maintenance/{window['id']}/cancel", json={"reason": "推迟"}, headers=center)
    soon = db.utcnow() + 2 * H
    _announce(
        client,
        center,
        vm_ids=[vm_a.id],
        starts_at=soon.isoformat(),
        ends_at=(soon + H).isoformat(),
        emergency_reason="机房空调故障，须立即停机检修",
    )
    assert tasks.send_reminders() == 0
    # The lead is a setting; 0 sends none.
    _announce(client, center, vm_ids=[vm_b.id])
    settings.maintenance_reminder_hours = 0
    assert tasks.send_reminders(db.utcnow() + 4 * D - H) == 0
    settings.maintenance_reminder_hours = 48
    assert tasks.send_reminders(db.utcnow() + 4 * D - 49 * H) == 0
    assert tasks.send_reminders(db.utcnow() + 4 * D - 47 * H) == 1
