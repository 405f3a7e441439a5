"""Provisioning deadline reminders (issue 5 point 4) against a real SMTP server (aiosmtpd on loopback):
48 hours before the due time the center hears of a request it still owes, once it is overdue the
requesting unit's administrator and the center do; each once per request, however often beat runs,
whether the task is delivered twice or two runs race, and even after the sent mails were pruned.
Time is the ``now`` given to the reminder run; mails go out after each run's commits (tasks inline)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from tests.factories import Factory
from tests.security_reports.conftest import CENTER_MAILBOX, MailServer, free_port
from vmportal.app import retention
from vmportal.app.beat import beat_schedule
from vmportal.connection.service import forget_templates
from vmportal.identity.models import User
from vmportal.incidents.models import Notification
from vmportal.jobs.app import celery_app
from vmportal.kit import db
from vmportal.kit.settings import Settings
from vmportal.request import reminders
from vmportal.request.models import RequestReminder, RequestState, VMRequest
from vmportal.request.tasks import REMINDER_TASK, deadline_reminders
from vmportal.unit.models import Contact, Unit

H = timedelta(hours=1)


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


def registry(unit: Unit) -> dict[str, str]:
    with db.transaction() as s:
        return {c.role: c.email for c in s.exec(select(Contact).where(Contact.unit_id == unit.id))}


def open_request(
    factory: Factory, unit: Unit, requester: User, *, due_at: datetime, state: str = "approved"
) -> VMRequest:
    """A request as the lifecycle leaves it, with the due time the test needs."""
    conn = factory.connection()
    assert unit.id is not None and requester.id is not None and conn.id is not None
    row = VMRequest(
        unit_id=unit.id,
        requested_by=requester.id,
        state=state,
        purpose="teaching",
        system_name="本科课程实验平台",
        hostname="lab-web",
        connection_id=conn.id,
        template_ref="tpl-rocky-9",
        vcpus=2,
        memory_gib=4,
        disk_gib=40,
        submitted_at=due_at - timedelta(days=7),
        due_at=due_at,
    )
    factory._save(row)
    return row


def reminder_rows() -> list[tuple[int, str]]:
    with db.transaction() as s:
        return [
            (r.request_id, r.kind)
            for r in s.exec(select(RequestReminder).order_by(col(RequestReminder.id))).all()
        ]


def request_mails(request_id: int) -> list[Notification]:
    with db.transaction() as s:
        return list(
            s.exec(
                select(Notification)
                .where(Notification.related_type == "request", Notification.related_id == str(request_id))
                .order_by(col(Notification.id))
            ).all()
        )


def test_a_submitted_request_is_reminded_48_hours_before_due_then_when_overdue(
    client: TestClient, factory: Factory, mail_server: MailServer, settings: Settings
) -> None:
    forget_templates()
    settings.base_url = "https://vm.nic.example.edu.cn/"  # where the portal is published
    unit = factory.unit()
    conn = factory.connection()
    factory.pool(cidr="10.20.0.0/24")
    admin = factory.user("unit_admin", unit)
    r = client.post(
        "/api/v1/requests",
        json={
            "system_name": "本科课程实验平台",
            "purpose": "teaching",
            "description": "计算机学院本科生操作系统课程实验环境",
            "hostname": "lab-web",
            "connection_id": conn.id,
            "template_ref": "tpl-rocky-9",
            "vcpus": 2,
            "memory_gib": 4,
            "disk_gib": 40,
        },
        headers=factory.login(client, admin),
    )
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]
    with db.transaction() as s:
        req = s.get(VMRequest, request_id)
        assert req is not None
        due = req.due_at
    contacts = registry(unit)
    # The submission's own mail (vmportal.request.mails) told the center; the reminders come on top.
    assert [str(m.message["X-Vmportal-Notification"]) for m in mail_server.messages] == [
        f"request_submitted request:{request_id}"
    ]
    mail_server.messages.clear()

    # A week ahead, and still more than 48 hours ahead: nothing.
    assert reminders.send_reminders(now=due - timedelta(days=6)) == {"due_soon": 0, "overdue": 0}
    assert reminders.send_reminders(now=due - 49 * H) == {"due_soon": 0, "overdue": 0}
    assert mail_server.messages == []

    # 48 hours before: the center alone.
    assert reminders.send_reminders(now=due - 47 * H) == {"due_soon": 1, "overdue": 0}
    [soon] = mail_server.messages
    assert soon.rcpt_tos == [CENTER_MAILBOX]
    assert soon.message["To"] == CENTER_MAILBOX and soon.message["Cc"] is None
    assert soon.subject.startswith(f"【网络与信息中心】虚拟机申请 #{request_id} 将于 ")
    assert f"VM request #{request_id} (Test College" in soon.subject
    assert "not delivered yet" in soon.subject
    assert soon.message["X-Vmportal-Notification"] == f"request_due_soon request:{request_id}"
    body = soon.body
    assert "不足48小时" in body and "待审批" in body and "《虚拟机服务协议书》第3条" in body
    assert "less than 48 hours" in body and "waiting for the center's decision" in body
    assert body.index("待审批") < body.index("waiting for the center's decision")  # Chinese first
    # The link opens the request's page on the published address, never a JSON URL.
    assert f"https://vm.nic.example.edu.cn/requests/{request_id}）" in body
    assert f"Details: https://vm.nic.example.edu.cn/requests/{request_id})" in body
    assert "/api/v1" not in body and "127.0.0.1" not in body

    # Later runs before the deadline: nothing more.
    for hours in (46, 24, 1, 0):
        assert reminders.send_reminders(now=due - hours * H) == {"due_soon": 0, "overdue": 0}
    assert len(mail_server.messages) == 1

    # Overdue: the unit's administrator (not the lead), the center in copy.
    assert reminders.send_reminders(now=due + timedelta(minutes=1)) == {"due_soon": 0, "overdue": 1}
    [_, overdue] = mail_server.messages
    assert overdue.message["To"] == contacts["security_admin"]
    assert overdue.message["Cc"] == CENTER_MAILBOX
    assert sorted(overdue.rcpt_tos) == sorted([contacts["security_admin"], CENTER_MAILBOX])
    assert contacts["security_lead"] not in overdue.rcpt_tos
    assert overdue.subject.startswith(f"【网络与信息中心】虚拟机申请 #{request_id} 已超过开通期限")
    assert "past its provisioning deadline" in overdue.subject
    assert "尚未开通" in overdue.body and "is not delivered yet" in overdue.body

    for later in (2 * H, timedelta(days=3), timedelta(days=60)):
        assert reminders.send_reminders(now=due + later) == {"due_soon": 0, "overdue": 0}
    assert len(mail_server.messages) == 2
    assert reminder_rows() == [(request_id, "due_soon"), (request_id, "overdue")]


def test_only_requests_the_center_still_owes_are_reminded(factory: Factory, mail_server: MailServer) -> None:
    unit = factory.unit()
    admin = factory.user("unit_admin", unit)
    due = db.utcnow() + timedelta(days=1)
    owed = {
        state: open_request(factory, unit, admin, due_at=due, state=state).id
        for state in ("submitted", "endorsed", "approved", "provisioning", "failed")
    }
    for state in ("delivered", "rejected", "cancelled"):
        open_request(factory, unit, admin, due_at=due, state=state)

    assert reminders.send_reminders(now=db.utcnow()) == {"due_soon": 5, "overdue": 0}
    assert sorted(r for r, _ in reminder_rows()) == sorted(owed.values())
    assert len(mail_server.messages) == 5
    subjects = " ".join(m.subject for m in mail_server.messages)
    assert all(f"#{request_id} " in subjects for request_id in owed.values())

    # Delivered meanwhile: no overdue reminder for it.
    with db.transaction() as s:
        req = s.get(VMRequest, owed["provisioning"])
        assert req is not None
        req.state = RequestState.DELIVERED.value
        s.add(req)
    assert reminders.send_reminders(now=due + H) == {"due_soon": 0, "overdue": 4}
    assert len(mail_server.messages) == 9
    assert not [m for m in mail_server.messages[5:] if f"#{owed['provisioning']} " in m.subject]


def test_a_request_first_seen_overdue_gets_the_overdue_mail_only(
    factory: Factory, mail_server: MailServer
) -> None:
    unit = factory.unit()
    req = open_request(
        factory, unit, factory.user("unit_admin", unit), due_at=db.utcnow() - timedelta(days=2)
    )
    assert reminders.send_reminders() == {"due_soon": 0, "overdue": 1}
    [mail] = mail_server.messages
    assert "已超过开通期限" in mail.subject
    assert reminders.send_reminders() == {"due_soon": 0, "overdue": 0}
    assert reminder_rows() == [(req.id, "overdue")]


def test_the_requesters_own_address_is_added_when_it_differs_from_the_registry(
    factory: Factory, mail_server: MailServer
) -> None:
    unit = factory.unit()
    requester = factory.user("unit_admin", unit)
    with db.transaction() as s:
        user = s.get(User, requester.id)
        assert user is not None
        user.email = "deputy-admin@example.edu.cn"
        s.add(user)
    due = db.utcnow() - H
    open_request(factory, unit, requester, due_at=due)
    reminders.send_reminders()
    [mail] = mail_server.messages
    assert mail.message["To"] == f"{registry(unit)['security_admin']}, deputy-admin@example.edu.cn"
    assert mail.message["Cc"] == CENTER_MAILBOX


def test_beat_runs_and_redeliveries_send_each_reminder_once(
    factory: Factory, mail_server: MailServer
) -> None:
    unit = factory.unit()
    admin = factory.user("unit_admin", unit)
    soon = open_request(factory, unit, admin, due_at=db.utcnow() + 10 * H)
    late = open_request(factory, unit, admin, due_at=db.utcnow() - 10 * H)

    schedule = beat_schedule()
    assert schedule["request-deadline-reminders"]["task"] == REMINDER_TASK
    assert REMINDER_TASK in celery_app.tasks
    # The task as beat sends it, delivered three times (a redelivery after a lost ack, a second beat).
    for _ in range(3):
        deadline_reminders()
    assert len(mail_server.messages) == 2
    assert sorted(reminder_rows()) == sorted([(soon.id, "due_soon"), (late.id, "overdue")])
    assert [len(request_mails(r.id)) for r in (soon, late) if r.id is not None] == [1, 1]


def test_two_runs_racing_queue_each_reminder_once(factory: Factory, mail_server: MailServer) -> None:
    unit = factory.unit()
    admin = factory.user("unit_admin", unit)
    rows = [open_request(factory, unit, admin, due_at=db.utcnow() - k * H) for k in range(1, 6)]
    now = db.utcnow()
    barrier = threading.Barrier(2)
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(reminders.send_reminders(now=now))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sum(r["overdue"] for r in results) == 5
    assert len(reminder_rows()) == 5
    assert sorted(len(request_mails(r.id)) for r in rows if r.id is not None) == [1] * 5
    assert len(mail_server.messages) == 5


def test_the_database_refuses_a_second_reminder_of_a_kind(factory: Factory) -> None:
    unit = factory.unit()
    req = open_request(factory, unit, factory.user("unit_admin", unit), due_at=db.utcnow())
    assert req.id is not None
    factory._save(RequestReminder(request_id=req.id, kind="overdue", due_at=req.due_at))
    with pytest.raises(IntegrityError):
        factory._save(RequestReminder(request_id=req.id, kind="overdue", due_at=req.due_at))
    factory._save(RequestReminder(request_id=req.id, kind="due_soon", due_at=req.due_at))


def test_pruned_reminder_mails_are_not_sent_again(
    factory: Factory, mail_server: MailServer, settings: Settings
) -> None:
    unit = factory.unit()
    req = open_request(factory, unit, factory.user("unit_admin", unit), due_at=db.utcnow() - H)
    assert req.id is not None
    reminders.send_reminders()
    [mail] = request_mails(req.id)
    assert mail.state == "sent"

    # A month on, still overdue: the sent mail is gone with the retention period, the reminder stays.
    month = db.utcnow() + timedelta(days=30)
    assert retention.prune(now=month)["notifications"] >= 1
    assert request_mails(req.id) == []
    assert reminders.send_reminders(now=month) == {"due_soon": 0, "overdue": 0}
    assert len(mail_server.messages) == 1


def test_without_any_address_the_reminder_is_kept_failed_for_the_center_to_see(
    factory: Factory, settings: Settings, mail_server: MailServer
) -> None:
    settings.center_mailbox = ""
    unit = factory.unit(paperwork=False)
    req = open_request(factory, unit, factory.user("unit_admin", unit), due_at=db.utcnow() + H)
    assert req.id is not None
    assert reminders.send_reminders() == {"due_soon": 1, "overdue": 0}
    [row] = request_mails(req.id)
    assert row.state == "failed" and "no recipient" in row.last_error
    assert mail_server.messages == []


def test_the_embedded_tick_reminds_every_time_and_prunes_hourly(
    factory: Factory, mail_server: MailServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vmportal.app import beat as periodic

    pruned: list[int] = []

    def prune() -> dict[str, int]:
        pruned.append(1)
        return {}

    monkeypatch.setattr(periodic.retention, "prune", prune)
    monkeypatch.setattr(periodic, "_last_embedded_prune", None)
    unit = factory.unit()
    open_request(factory, unit, factory.user("unit_admin", unit), due_at=db.utcnow() + H)
    periodic.embedded_tick()
    periodic.embedded_tick()
    assert len(mail_server.messages) == 1
    assert pruned == [1]
    monkeypatch.setattr(periodic, "_last_embedded_prune", time.monotonic() - periodic.EMBEDDED_PRUNE_SECONDS)
    periodic.embedded_tick()
    assert pruned == [1, 1]
