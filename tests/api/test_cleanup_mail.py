"""The clean-up's mails against a real SMTP server (aiosmtpd on loopback): the opening to each unit,
the reminders a week and a day before the deadline to the units with items still unconfirmed (each
once, however often the tick runs; none to a unit that has answered), and at the deadline the unit's
list and the center's. Time is the ``now`` given to the tick; mails go out after each commit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from tests.factories import Factory
from tests.security_reports.conftest import CENTER_MAILBOX, MailServer, free_port
from vmportal.app.beat import beat_schedule
from vmportal.cleanup import tasks
from vmportal.cleanup.models import CleanupReminder
from vmportal.kit import db
from vmportal.kit.settings import Settings
from vmportal.unit.models import Contact

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


def _reminders() -> list[tuple[int, str]]:
    with db.transaction() as s:
        return [
            (r.unit_id, r.kind) for r in s.exec(select(CleanupReminder).order_by(col(CleanupReminder.id)))
        ]


def _admin_email(unit_id: int | None) -> str:
    with db.transaction() as s:
        contact = s.exec(
            select(Contact).where(Contact.unit_id == unit_id, Contact.role == "security_admin")
        ).one()
        return contact.email


def test_reminders_before_the_deadline_and_the_lists_at_it(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    a, b, c = factory.unit(), factory.unit(), factory.unit()
    factory.vm(a, name="lab-web")
    factory.system(b, name="学院网站", purpose="management")
    factory.vm(c, name="idle")  # answers at once: never reminded
    center = factory.login(client, factory.user("center_admin"))
    r = client.post(
        f"{API}/cleanup/campaigns",
        json={
            "name": "2026年度网站域名、虚拟机清理",
            "deadline_at": (db.utcnow() + 20 * D).isoformat(),
            "grace_days": 14,
        },
        headers=center,
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    deadline = datetime.fromisoformat(r.json()["deadline_at"])

    # The opening: one mail per unit with items, to its registry's addresses, with the deadline.
    opened = [m for m in mail_server.messages if "请于" in m.subject]
    assert len(opened) == 3
    [to_a] = [m for m in opened if _admin_email(a.id) in m.rcpt_tos]
    assert "2026年度网站域名、虚拟机清理" in to_a.subject
    body = to_a.body
    assert "开展网站域名、虚拟机清理工作" in body and "附件4" in body and "Deadline:" in body
    assert "1 项" in body and "14 天" in body
    assert body.index("截止时间") < body.index("Deadline")  # Chinese first
    assert "/cleanup）" in body and "/api/v1" not in body  # the link opens the clean-up page

    unit_c = factory.login(client, factory.user("unit_admin", c))
    assert (
        client.post(f"{API}/cleanup/campaigns/{cid}/confirm-all", json={}, headers=unit_c).status_code == 200
    )
    mail_server.messages.clear()

    # More than a week ahead: nothing.
    assert tasks.tick(now=deadline - 8 * D) == {"reminders": {}, "deadlines": {}}
    # A week ahead: units A and B, once each.
    assert tasks.tick(now=deadline - 7 * D + H)["reminders"] == {"week": 2}
    assert tasks.tick(now=deadline - 6 * D)["reminders"] == {}
    week = list(mail_server.messages)
    assert len(week) == 2
    [week_a] = [m for m in week if _admin_email(a.id) in m.rcpt_tos]
    [week_b] = [m for m in week if _admin_email(b.id) in m.rcpt_tos]
    assert "尚有 1 项未确认" in week_a.subject and "lab-web" in week_a.body
    assert "尚有 2 项未确认" in week_b.subject and "学院网站" in week_b.body  # the system and its domain
    assert {_admin_email(a.id), _admin_email(b.id)} <= {r for m in week for r in m.rcpt_tos}

    # Unit B answers; the last day's reminder goes to A alone.
    unit_b = factory.login(client, factory.user("unit_admin", b))
    assert (
        client.post(f"{API}/cleanup/campaigns/{cid}/confirm-all", json={}, headers=unit_b).status_code == 200
    )
    mail_server.messages.clear()
    assert tasks.tick(now=deadline - 23 * H)["reminders"] == {"day": 1}
    assert tasks.tick(now=deadline - H)["reminders"] == {}
    [day] = mail_server.messages
    assert "lab-web" in day.body and "ends" in day.subject and _admin_email(a.id) in day.rcpt_tos
    assert _reminders() == [(a.id, "week"), (b.id, "week"), (a.id, "day")]

    # The deadline: A is told what is unconfirmed and when the grace period ends; the center gets
    # the list per unit; once only.
    mail_server.messages.clear()
    assert tasks.tick(now=deadline + H)["deadlines"] == {cid: {"unconfirmed": 1, "units": 1}}
    assert tasks.tick(now=deadline + 2 * H) == {"reminders": {}, "deadlines": {}}
    assert len(mail_server.messages) == 2
    [to_center] = [m for m in mail_server.messages if m.rcpt_tos == [CENTER_MAILBOX]]
    assert "1 个单位共 1 项未确认" in to_center.subject and a.name_zh in to_center.body
    assert "宽限期至" in to_center.body and "grace period ends" in to_center.body
    [to_unit] = [m for m in mail_server.messages if m is not to_center]
    assert "已截止" in to_unit.subject and "lab-web" in to_unit.body and "回收" in to_unit.body
    assert _reminders()[-1] == (a.id, "deadline")


def test_a_campaign_first_seen_on_its_last_day_sends_the_last_days_reminder_only(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    a = factory.unit()
    factory.vm(a)
    center = factory.login(client, factory.user("center_admin"))
    r = client.post(
        f"{API}/cleanup/campaigns",
        json={"name": "补充清理", "deadline_at": (db.utcnow() + 10 * H).isoformat()},
        headers=center,
    )
    assert r.status_code == 201, r.text
    deadline = datetime.fromisoformat(r.json()["deadline_at"])
    assert tasks.tick(now=deadline - 9 * H)["reminders"] == {"day": 1}
    assert tasks.tick(now=deadline - 8 * H)["reminders"] == {}
    assert _reminders() == [(a.id, "day")]


def test_beat_runs_the_clean_up_tick_every_15_minutes() -> None:
    entry = beat_schedule()["cleanup-tick"]
    assert entry == {"task": tasks.TICK_TASK, "schedule": 900.0}


def test_the_embedded_portals_tick_runs_the_deadline_step(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    from vmportal.app import beat
    from vmportal.cleanup.models import CleanupCampaign

    factory.vm(factory.unit())
    center = factory.login(client, factory.user("center_admin"))
    r = client.post(
        f"{API}/cleanup/campaigns",
        json={"name": "嵌入式清理", "deadline_at": (db.utcnow() + D).isoformat()},
        headers=center,
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    with db.transaction() as s:  # time passes: the deadline is behind us
        campaign = s.get(CleanupCampaign, cid)
        assert campaign is not None
        campaign.deadline_at = db.utcnow() - H
        s.add(campaign)
    beat.embedded_tick()
    assert client.get(f"{API}/cleanup/campaigns/{cid}", headers=center).json()["state"] == "deadline_passed"
    assert any("已截止" in m.subject for m in mail_server.messages)
