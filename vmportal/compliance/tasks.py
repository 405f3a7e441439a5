"""Celery tasks of compliance: the findings' deadline reminders (beat runs them every 15 minutes,
``vmportal.app.beat``; the embedded portal's background loop calls :func:`send_reminders`). Idempotent:
a reminder is queued once per finding and deadline (the mail's ``dedup_key``)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from vmportal.compliance.service import findings
from vmportal.jobs.app import PortalTask, celery_app
from vmportal.kit import db

log = logging.getLogger(__name__)

#: The name beat schedules (kept from when mail ran it, so a running beat keeps finding it).
REMINDER_TASK = "vmportal.security.finding_reminders"


def send_reminders(now: datetime | None = None) -> dict[str, int]:
    """Queue the 48-hour and the overdue reminders that are due. Each finding in a transaction of its
    own, so one that fails (or that a concurrent run reminded) stops nothing."""
    now = now or db.utcnow()
    with db.transaction() as session:
        due = findings.reminders_due(session, now)
    counts = {"due_soon": 0, "overdue": 0}
    for finding_id in due:
        try:
            with db.transaction() as session:
                what = findings.remind(session, finding_id, now)
        except IntegrityError:
            log.info("reminder for finding %s queued by a concurrent run", finding_id)
            continue
        if what is not None:
            counts[what] += 1
    return counts


@celery_app.task(base=PortalTask, name=REMINDER_TASK)
def finding_reminders() -> dict[str, int]:
    """Queue the 48-hour and overdue reminders of the findings still waiting for their unit."""
    return send_reminders()
