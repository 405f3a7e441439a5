"""Pruning the outboxes: completed tasks (``outbox_task``), sent e-mails (``notification``) and sent
group-robot messages (``robot_message``).

Both tables get a row for every approval, power operation, alert and mail, and nothing reads a
finished row again after its first days (the re-drive and the mail sender look only at unfinished
ones), so beat deletes them ``VMPORTAL_RETENTION_DAYS`` (default 14) after they completed or were
sent: hourly, in batches of :data:`BATCH` rows, each batch its own short transaction, at most
:data:`MAX_BATCHES` batches per table and run. A long backlog (the first run on an old database) is
therefore worked off over several runs instead of holding locks or filling the WAL in one statement.

What is never pruned, whatever its age:

- an outbox task not completed (waiting, dispatched, retrying, or left for a human after
  ``MAX_DISPATCHES``): it is work not done, and ``vmportal_outbox_pending`` counts it;
- a mail or robot message pending, being sent, or failed: the center still has to see and resend it;
- a sent finding reminder (:data:`KEPT_KINDS`): its ``dedup_key`` is the only record that the
  reminder went out, and a finding can stay overdue longer than the retention period; deleting the row
  would mail the same reminder again. They are at most two per finding deadline. A sent planned-outage
  reminder likewise (one per window, start time and unit). (Provisioning
  reminders keep their record in ``vm_request_reminder`` instead, so their mails are pruned.)

Why a day granularity and not less: a completed row is what makes a late duplicate delivery of its
task do nothing (``outbox.claim`` answers "done"). The broker's visibility timeout is an hour, so a
retention of at least a day keeps that guarantee with room to spare.

The audit log is not touched: it is hash-chained and kept for good.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement
from sqlmodel import SQLModel, col

from vmportal.incidents.models import Notification, NotificationState
from vmportal.jobs.models import OutboxTask
from vmportal.kit import db
from vmportal.kit.settings import get_settings
from vmportal.kit.sql import delete_oldest
from vmportal.mail.models import RobotMessage
from vmportal.mail.service import MailEvent

log = logging.getLogger(__name__)

#: Rows deleted per transaction.
BATCH = 1000
#: Batches per table and run: at most BATCH × MAX_BATCHES rows of each table per run.
MAX_BATCHES = 20

#: Sent mails kept whatever their age: their ``dedup_key`` is their reminder's once-only record.
KEPT_KINDS: tuple[str, ...] = (
    MailEvent.FINDING_DUE_SOON.value,
    MailEvent.FINDING_OVERDUE.value,
    MailEvent.MAINTENANCE_REMINDER.value,
)


def outbox_conditions(cutoff: datetime) -> list[ColumnElement[bool]]:
    completed = col(OutboxTask.completed_at)
    return [completed.is_not(None), completed < cutoff]


def notification_conditions(cutoff: datetime) -> list[ColumnElement[bool]]:
    sent_at = col(Notification.sent_at)
    return [
        col(Notification.state) == NotificationState.SENT.value,
        sent_at.is_not(None),
        sent_at < cutoff,
        col(Notification.kind).not_in(KEPT_KINDS),
    ]


def robot_message_conditions(cutoff: datetime) -> list[ColumnElement[bool]]:
    # A robot message is a copy of a mail for a group chat: no reminder's once-only record lives on
    # it (that stays on the mail), so every sent one goes after the period.
    sent_at = col(RobotMessage.sent_at)
    return [col(RobotMessage.state) == NotificationState.SENT.value, sent_at.is_not(None), sent_at < cutoff]


def _prune(
    model: type[SQLModel], id_column: Any, conditions: list[ColumnElement[bool]], batch: int, max_batches: int
) -> int:
    deleted = 0
    for _ in range(max_batches):
        # Each batch its own short transaction (locks held and WAL written per batch, not per run); a
        # row is deleted only if it is still finished as it was when read.
        with db.transaction() as session:
            read, gone = delete_oldest(session, model, id_column, conditions, batch)
        deleted += gone
        if read < batch:
            break
    return deleted


def prune(
    now: datetime | None = None,
    *,
    retention: timedelta | None = None,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
) -> dict[str, int]:
    """Delete completed outbox tasks, sent mails and sent robot messages older than ``retention`` (default
    ``VMPORTAL_RETENTION_DAYS``; 0 days keeps everything). Returns how many rows of each went."""
    counts = {"outbox_tasks": 0, "notifications": 0, "robot_messages": 0}
    if retention is None:
        days = get_settings().retention_days
        if days <= 0:
            return counts
        retention = timedelta(days=days)
    cutoff = (now or db.utcnow()) - retention
    counts["outbox_tasks"] = _prune(
        OutboxTask, col(OutboxTask.id), outbox_conditions(cutoff), batch, max_batches
    )
    counts["notifications"] = _prune(
        Notification, col(Notification.id), notification_conditions(cutoff), batch, max_batches
    )
    counts["robot_messages"] = _prune(
        RobotMessage, col(RobotMessage.id), robot_message_conditions(cutoff), batch, max_batches
    )
    if any(counts.values()):
        log.info(
            "pruned %d completed outbox tasks, %d sent mails and %d sent robot messages older than %s",
            counts["outbox_tasks"],
            counts["notifications"],
            counts["robot_messages"],
            cutoff.isoformat(),
        )
    return counts
