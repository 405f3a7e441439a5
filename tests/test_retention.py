"""Pruning the outboxes (vmportal.app.retention): completed outbox tasks and sent e-mails older than
VMPORTAL_RETENTION_DAYS go, in bounded batches; unfinished tasks, pending, sending and failed mails, and
the finding reminders whose row is their once-only record stay, however old."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlmodel import col, select

from vmportal.app import retention
from vmportal.app.beat import beat_schedule, prune_outboxes
from vmportal.incidents.models import Notification
from vmportal.jobs.app import celery_app
from vmportal.jobs.models import OutboxTask
from vmportal.kit import db
from vmportal.kit.settings import Settings
from vmportal.mail.models import GroupRobot, RobotMessage

DAY = timedelta(days=1)


def task(label: str, *, created: datetime, dispatched: datetime | None, completed: datetime | None) -> None:
    with db.transaction() as s:
        s.add(
            OutboxTask(
                task="vmportal.test.noop",
                arguments={"label": label},
                created_at=created,
                dispatched_at=dispatched,
                completed_at=completed,
                attempts=1 if dispatched else 0,
            )
        )


def mail(
    label: str, *, state: str, at: datetime, kind: str = "containment", sent: bool | None = None
) -> None:
    with db.transaction() as s:
        s.add(
            Notification(
                to=["admin@example.edu.cn"],
                subject=label,
                body="…",
                kind=kind,
                related_type="test",
                related_id=label,
                dedup_key=f"test:{label}",
                state=state,
                created_at=at,
                sent_at=at if (sent if sent is not None else state == "sent") else None,
                next_attempt_at=None if state in ("sent", "failed") else at,
            )
        )


def task_labels() -> list[str]:
    with db.transaction() as s:
        return [str(t.arguments["label"]) for t in s.exec(select(OutboxTask).order_by(col(OutboxTask.id)))]


def mail_labels() -> list[str]:
    with db.transaction() as s:
        return [n.subject for n in s.exec(select(Notification).order_by(col(Notification.id)))]


def test_finished_rows_past_the_retention_period_go_and_the_rest_stays(settings: Settings) -> None:
    assert settings.retention_days == 14
    now = db.utcnow()
    old, recent = now - 15 * DAY, now - 13 * DAY
    task("completed-old", created=old - DAY, dispatched=old - DAY, completed=old)
    task("completed-recent", created=old, dispatched=old, completed=recent)
    task("dispatched-never-completed", created=old, dispatched=old, completed=None)
    task("never-dispatched", created=old, dispatched=None, completed=None)
    # Created long ago but completed only recently (a task that retried for days): age is completion's.
    task("completed-late", created=now - 40 * DAY, dispatched=now - 40 * DAY, completed=recent)

    mail("sent-old", state="sent", at=old)
    mail("sent-recent", state="sent", at=recent)
    mail("pending-old", state="pending", at=old)
    mail("sending-old", state="sending", at=old)
    mail("failed-old", state="failed", at=old)
    mail("failed-after-a-retry-old", state="failed", at=old, sent=False)
    mail("finding-due-soon-old", state="sent", at=old, kind="finding_due_soon")
    mail("finding-overdue-old", state="sent", at=old, kind="finding_overdue")
    mail("request-overdue-old", state="sent", at=old, kind="request_overdue")

    assert retention.prune(now=now) == {"outbox_tasks": 1, "notifications": 2, "robot_messages": 0}
    assert task_labels() == [
        "completed-recent",
        "dispatched-never-completed",
        "never-dispatched",
        "completed-late",
    ]
    assert mail_labels() == [
        "sent-recent",
        "pending-old",
        "sending-old",
        "failed-old",
        "failed-after-a-retry-old",
        "finding-due-soon-old",
        "finding-overdue-old",
    ]
    # Nothing more to do on a second run; a day later the recent ones have aged out too.
    assert retention.prune(now=now) == {"outbox_tasks": 0, "notifications": 0, "robot_messages": 0}
    assert retention.prune(now=now + 2 * DAY) == {"outbox_tasks": 2, "notifications": 1, "robot_messages": 0}
    assert task_labels() == ["dispatched-never-completed", "never-dispatched"]


def test_sent_robot_messages_past_the_period_go_and_unsent_ones_stay(settings: Settings) -> None:
    now = db.utcnow()
    old, recent = now - 15 * DAY, now - 13 * DAY
    with db.transaction() as s:
        robot = GroupRobot(scope="center", kind="wecom", webhook_encrypted="x")
        s.add(robot)
        s.flush()
        assert robot.id is not None
        for label, state, at in (
            ("sent-old", "sent", old),
            ("sent-recent", "sent", recent),
            ("pending-old", "pending", old),
            ("failed-old", "failed", old),
        ):
            s.add(
                RobotMessage(
                    robot_id=robot.id,
                    title=label,
                    content="…",
                    state=state,
                    created_at=at,
                    sent_at=at if state == "sent" else None,
                )
            )
    assert retention.prune(now=now) == {"outbox_tasks": 0, "notifications": 0, "robot_messages": 1}
    with db.transaction() as s:
        left = [m.title for m in s.exec(select(RobotMessage).order_by(col(RobotMessage.id)))]
    assert left == ["sent-recent", "pending-old", "failed-old"]


def test_pruning_works_in_bounded_batches_across_runs(settings: Settings) -> None:
    now = db.utcnow()
    for i in range(10):
        at = now - (20 + i) * DAY
        task(f"t{i}", created=at, dispatched=at, completed=at)
        mail(f"m{i}", state="sent", at=at)
    task("open", created=now - 30 * DAY, dispatched=None, completed=None)

    # 3 rows a transaction, 2 transactions a run: 6 of each table per run at most.
    assert retention.prune(now=now, batch=3, max_batches=2) == {
        "outbox_tasks": 6,
        "notifications": 6,
        "robot_messages": 0,
    }
    assert retention.prune(now=now, batch=3, max_batches=2) == {
        "outbox_tasks": 4,
        "notifications": 4,
        "robot_messages": 0,
    }
    assert retention.prune(now=now, batch=3, max_batches=2) == {
        "outbox_tasks": 0,
        "notifications": 0,
        "robot_messages": 0,
    }
    assert task_labels() == ["open"]
    assert mail_labels() == []


def test_the_retention_period_is_a_setting_and_zero_keeps_everything(settings: Settings) -> None:
    now = db.utcnow()
    at = now - 100 * DAY
    task("ancient", created=at, dispatched=at, completed=at)
    mail("ancient", state="sent", at=at)

    settings.retention_days = 0
    assert retention.prune(now=now) == {"outbox_tasks": 0, "notifications": 0, "robot_messages": 0}
    settings.retention_days = 365
    assert retention.prune(now=now) == {"outbox_tasks": 0, "notifications": 0, "robot_messages": 0}
    settings.retention_days = 90
    assert retention.prune(now=now) == {"outbox_tasks": 1, "notifications": 1, "robot_messages": 0}


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMPORTAL_RETENTION_DAYS", "30")
    assert Settings().retention_days == 30
    monkeypatch.setenv("VMPORTAL_RETENTION_DAYS", "-1")
    with pytest.raises(ValueError, match="retention_days"):
        Settings()


def test_beat_prunes_hourly_through_the_registered_task(settings: Settings) -> None:
    entry = beat_schedule()["retention-prune"]
    assert entry["task"] == "vmportal.retention.prune" and "vmportal.retention.prune" in celery_app.tasks
    assert entry["schedule"].minute == {41}
    at = db.utcnow() - 20 * DAY
    task("old", created=at, dispatched=at, completed=at)
    assert prune_outboxes() == {"outbox_tasks": 1, "notifications": 0, "robot_messages": 0}
    assert task_labels() == []
