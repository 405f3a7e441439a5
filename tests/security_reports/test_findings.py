"""Findings through the HTTP API: open → notified (the mail delivered) → fixed by the unit → retested →
closed, or back to open with a new deadline; deadlines by severity; 409 naming the state; overdue
lists per unit; unit scoping; the 48-hour and overdue reminders, once each."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import col, select

from tests.factories import Factory
from tests.security.helpers import center_admin
from tests.security_reports.conftest import CENTER_MAILBOX, MailServer
from tests.security_reports.helpers import contacts
from vmportal.audit.models import AuditEntry
from vmportal.compliance import tasks as findings
from vmportal.incidents.models import Finding
from vmportal.kit import db


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _finding(client: TestClient, headers: dict[str, str], vm_id: int | None, **fields: Any) -> dict[str, Any]:
    body = {
        "vm_id": vm_id,
        "category": "vulnerability",
        "severity": "high",
        "title": "Apache Struts2 远程代码执行漏洞（S2-045）",
        "target": "http://10.20.0.5:8080/login.action",
        **fields,
    }
    r = client.post("/api/v1/findings", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _set_deadline(finding_id: int, deadline: datetime) -> None:
    """Time passes: move the deadline instead of the clock."""
    with db.transaction() as s:
        row = s.get(Finding, finding_id)
        assert row is not None
        row.deadline_at = deadline
        s.add(row)


def test_a_finding_goes_from_open_to_closed_through_fix_and_retest(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = factory.vm(unit)
    admin = factory.login(client, factory.user("unit_admin", unit))
    before = db.utcnow()
    created = _finding(client, h, vm.id)

    # The opening mail reached the unit, so the finding is "notified".
    assert created["unit_id"] == unit.id and created["origin"] == "manual"
    deadline = _at(created["deadline_at"])
    assert before + timedelta(hours=72) <= deadline <= db.utcnow() + timedelta(hours=72)
    mine = client.get(f"/api/v1/findings/{created['id']}", headers=admin).json()
    assert mine["state"] == "notified" and mine["notified_at"] and mine["actions"] == ["fix"]
    [opened] = mail_server.collector.about(f"安全隐患待整改 #{created['id']}")
    registry = contacts(unit)
    assert opened.message["To"] == f"{registry['security_admin']}, {registry['security_lead']}"
    assert opened.message["Cc"] == CENTER_MAILBOX
    assert opened.subject.startswith("【网络与信息中心】安全隐患待整改")
    assert "整改期限" in opened.body and "Deadline" in opened.body
    assert opened.body.index("整改期限") < opened.body.index("Deadline")  # Chinese first

    # 409 naming the state for actions the state does not allow.
    early = client.post(f"/api/v1/findings/{created['id']}/retest", json={"passed": True}, headers=h)
    assert early.status_code == 409 and early.json()["error"]["state"] == "notified"
    assert "only from: fixed" in early.json()["error"]["message"]

    empty = client.post(f"/api/v1/findings/{created['id']}/fix", json={"note": ""}, headers=admin)
    assert empty.status_code == 422 and empty.json()["error"]["fields"][0]["field"] == "note"
    fixed = client.post(
        f"/api/v1/findings/{created['id']}/fix", json={"note": "已升级 Struts 至 2.5.33"}, headers=admin
    )
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["state"] == "fixed" and fixed.json()["fix_note"] == "已升级 Struts 至 2.5.33"
    twice = client.post(f"/api/v1/findings/{created['id']}/fix", json={"note": "again"}, headers=admin)
    assert twice.status_code == 409 and twice.json()["error"]["state"] == "fixed"

    # The retest fails: open again, a new deadline by severity from now, the unit told again.
    failed = client.post(
        f"/api/v1/findings/{created['id']}/retest",
        json={"passed": False, "note": "8080 端口仍可利用"},
        headers=h,
    ).json()
    assert failed["state"] in ("open", "notified") and failed["retest_passed"] is False
    assert _at(failed["deadline_at"]) > deadline
    assert mail_server.collector.about(f"复测未通过，请继续整改 #{created['id']}")
    assert client.get(f"/api/v1/findings/{created['id']}", headers=h).json()["state"] == "notified"

    client.post(f"/api/v1/findings/{created['id']}/fix", json={"note": "已关闭 8080"}, headers=admin)
    passed = client.post(
        f"/api/v1/findings/{created['id']}/retest", json={"passed": True, "note": "复测通过"}, headers=h
    ).json()
    assert passed["state"] == "closed" and passed["retest_passed"] is True and passed["closed_at"]
    late = client.post(f"/api/v1/findings/{created['id']}/fix", json={"note": "x"}, headers=admin)
    assert late.status_code == 409 and late.json()["error"]["state"] == "closed"
    assert "安全隐患当前状态为“已关闭”" in late.json()["error"]["message_zh"]

    with db.transaction() as s:
        actions = s.exec(
            select(AuditEntry.action)
            .where(AuditEntry.target_type == "finding", AuditEntry.target_id == str(created["id"]))
            .order_by(col(AuditEntry.id))
        ).all()
    assert list(actions) == [
        "security.finding.create",
        "security.finding.notify",
        "security.finding.fix",
        "security.finding.retest",
        "security.finding.notify",
        "security.finding.fix",
        "security.finding.retest",
    ]


def test_deadlines_follow_severity_and_who_may_do_what(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = factory.vm(unit)
    for severity, hours in (("critical", 24), ("high", 72), ("medium", 7 * 24), ("low", 30 * 24)):
        before = db.utcnow()
        f = _finding(client, h, vm.id, severity=severity)
        assert (
            before + timedelta(hours=hours) <= _at(f["deadline_at"]) <= db.utcnow() + timedelta(hours=hours)
        )
        # No SMTP server configured: the mail waits, the finding stays open.
        assert f["state"] == "open"
    own = _finding(client, h, vm.id, deadline_at="2099-01-01T00:00:00+08:00")
    assert _at(own["deadline_at"]) == _at("2099-01-01T00:00:00+08:00")

    lead = factory.login(client, factory.user("unit_lead", unit))
    auditor = factory.login(client, factory.user("auditor"))
    stranger = factory.login(client, factory.user("unit_admin", factory.unit()))
    url = f"/api/v1/findings/{own['id']}"
    assert client.post(f"{url}/fix", json={"note": "x"}, headers=lead).status_code == 403
    assert client.post(f"{url}/fix", json={"note": "x"}, headers=auditor).status_code == 403
    assert client.post(f"{url}/fix", json={"note": "x"}, headers=stranger).status_code == 404
    assert client.get(url, headers=stranger).status_code == 404
    assert client.get(url, headers=lead).status_code == 200
    assert client.get("/api/v1/findings", headers=stranger).json()["total"] == 0
    assert client.post("/api/v1/findings", json={"vm_id": vm.id}, headers=lead).status_code == 403
    assert client.post(f"{url}/retest", json={"passed": True}, headers=lead).status_code == 403

    bad = client.post(
        "/api/v1/findings",
        json={"vm_id": vm.id, "category": "nonsense", "severity": "high", "title": "x"},
        headers=h,
    )
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "category"
    past = client.post(
        "/api/v1/findings",
        json={
            "vm_id": vm.id,
            "category": "weak_password",
            "severity": "high",
            "title": "x",
            "deadline_at": "2020-01-01T00:00:00Z",
        },
        headers=h,
    )
    assert past.status_code == 422 and past.json()["error"]["fields"][0]["field"] == "deadline_at"
    naive = client.post(
        "/api/v1/findings",
        json={
            "vm_id": vm.id,
            "category": "dark_link",
            "severity": "high",
            "title": "x",
            "deadline_at": "2099-01-01T00:00",
        },
        headers=h,
    )
    assert naive.status_code == 422
    assert (
        client.post(
            "/api/v1/findings", json={"category": "dark_link", "severity": "low", "title": "x"}, headers=h
        ).json()["error"]["fields"][0]["field"]
        == "vm_id"
    )

    closed = client.post(f"{url}/close", json={"reason": "重复录入"}, headers=h)
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    assert client.post(f"{url}/close", json={"reason": "x"}, headers=h).json()["error"]["state"] == "closed"


def test_overdue_findings_per_unit(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    unit_a, unit_b = factory.unit(), factory.unit()
    vm_a, vm_b = factory.vm(unit_a), factory.vm(unit_b)
    late_a1 = _finding(client, h, vm_a.id, title="弱口令 admin/admin", category="weak_password")
    late_a2 = _finding(client, h, vm_a.id, title="暗链", category="dark_link", severity="critical")
    on_time_a = _finding(client, h, vm_a.id, title="信息泄露", severity="low")
    late_b = _finding(client, h, vm_b.id, title="phpMyAdmin 对外开放", severity="medium")
    fixed_b = _finding(client, h, vm_b.id, title="目录遍历")
    now = db.utcnow()
    _set_deadline(late_a1["id"], now - timedelta(days=3))
    _set_deadline(late_a2["id"], now - timedelta(hours=1))
    _set_deadline(late_b["id"], now - timedelta(days=10))
    _set_deadline(fixed_b["id"], now - timedelta(days=1))
    admin_b = factory.login(client, factory.user("unit_admin", unit_b))
    client.post(f"/api/v1/findings/{fixed_b['id']}/fix", json={"note": "已修复"}, headers=admin_b)

    overdue = client.get("/api/v1/findings", params={"overdue": True}, headers=h).json()
    assert {f["id"] for f in overdue["items"]} == {late_a1["id"], late_a2["id"], late_b["id"]}
    assert all(f["overdue"] for f in overdue["items"])
    only_a = client.get("/api/v1/findings", params={"overdue": True, "unit_id": unit_a.id}, headers=h).json()
    assert {f["id"] for f in only_a["items"]} == {late_a1["id"], late_a2["id"]}
    not_late = client.get(
        "/api/v1/findings", params={"overdue": False, "unit_id": unit_a.id}, headers=h
    ).json()
    assert [f["id"] for f in not_late["items"]] == [on_time_a["id"]]
    by_state = client.get("/api/v1/findings", params={"state": "fixed"}, headers=h).json()
    assert [f["id"] for f in by_state["items"]] == [fixed_b["id"]]

    report = client.get("/api/v1/reports/findings/overdue", headers=h).json()
    assert report["total"] == 3
    assert [(u["unit_id"], u["count"]) for u in report["units"]] == [(unit_a.id, 2), (unit_b.id, 1)]
    assert [f["id"] for f in report["units"][0]["findings"]] == [late_a1["id"], late_a2["id"]]  # oldest first
    assert report["units"][0]["unit_code"] == unit_a.code
    assert _at(report["units"][1]["oldest_deadline"]) < now - timedelta(days=9)

    # A unit sees its own overdue list only.
    mine = client.get("/api/v1/reports/findings/overdue", headers=admin_b).json()
    assert [(u["unit_id"], u["count"]) for u in mine["units"]] == [(unit_b.id, 1)]
    assert (
        client.get(
            "/api/v1/findings", params={"overdue": True, "unit_id": unit_a.id}, headers=admin_b
        ).json()["items"]
        == []
    )
    auditor = factory.login(client, factory.user("auditor"))
    assert client.get("/api/v1/reports/findings/overdue", headers=auditor).json()["total"] == 3


def test_deadline_reminders_go_out_48_hours_before_and_when_overdue_once_each(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = factory.vm(unit)
    week = _finding(client, h, vm.id, severity="medium", title="SSL 弱加密套件")
    day = _finding(client, h, vm.id, severity="critical", title="webshell 残留")
    admin_mail = contacts(unit)["security_admin"]
    assert len(mail_server.collector.to(admin_mail)) == 2  # the two opening mails

    # Nothing is due yet; the critical one never gets a 48-hour reminder (it was set 24 h ahead, and
    # its opening mail said so).
    assert findings.finding_reminders() == {"due_soon": 0, "overdue": 0}
    in_5_days = db.utcnow() + timedelta(days=5, hours=1)  # the medium one is due in 47 hours then
    assert findings.send_reminders(in_5_days) == {"due_soon": 1, "overdue": 1}
    assert findings.send_reminders(in_5_days) == {"due_soon": 0, "overdue": 0}  # once
    [soon] = mail_server.collector.about("整改期限将至")
    assert f"#{week['id']}" in soon.subject and admin_mail in soon.rcpt_tos
    [late] = mail_server.collector.about("已超过整改期限")
    assert f"#{day['id']}" in late.subject

    in_8_days = db.utcnow() + timedelta(days=8)
    assert findings.send_reminders(in_8_days) == {"due_soon": 0, "overdue": 1}
    assert findings.send_reminders(in_8_days) == {"due_soon": 0, "overdue": 0}
    assert len(mail_server.collector.about("已超过整改期限")) == 2

    # A finding reopened with a new deadline is reminded again for that deadline; a fixed one is the
    # center's to retest and gets no reminder.
    admin = factory.login(client, factory.user("unit_admin", unit))
    for f in (week, day):
        client.post(f"/api/v1/findings/{f['id']}/fix", json={"note": "已处理"}, headers=admin)
    assert findings.send_reminders(in_8_days) == {"due_soon": 0, "overdue": 0}
    r = client.post(f"/api/v1/findings/{week['id']}/retest", json={"passed": False}, headers=h)
    assert r.status_code == 200, r.text
    in_9_days = db.utcnow() + timedelta(days=9)
    assert findings.send_reminders(in_9_days) == {"due_soon": 0, "overdue": 1}
