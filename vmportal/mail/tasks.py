"""Celery tasks of the security e-mails: sending the notification outbox, and the findings' deadline
reminders. Beat runs both (``vmportal.app.beat``); the send task is also started right after a
transaction that queued mail commits. Both are idempotent: a row is sent under a compare-and-set claim,
and a reminder is queued once per finding and deadline (``notification.dedup_key``)."""

from __future__ import annotations

from vmportal.compliance import findings as finding
from vmportal.jobs.app import PortalTask, celery_app
from vmportal.mail import service as notification

SEND_TASK = notification.SEND_TASK
REMINDER_TASK = "vmportal.security.finding_reminders"


@celery_app.task(base=PortalTask, name=SEND_TASK)
def send_notifications() -> dict[str, int]:
    """Send the mails that are due: new ones, retries whose backoff has passed, expired claims."""
    return notification.send_due()


@celery_app.task(base=PortalTask, name=REMINDER_TASK)
def finding_reminders() -> dict[str, int]:
    """Queue the 48-hour and overdue reminders of the findings still waiting for their unit."""
    return finding.send_reminders()


def embedded_tick() -> None:
    """What beat does for mail, for the embedded portal (it runs no beat): its background loop calls
    this beside the outbox re-drive."""
    notification.send_due()
    finding.send_reminders()
