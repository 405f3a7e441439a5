"""The planned outages' reminders (beat every 15 minutes, ``vmportal.maintenance.reminders``; the
embedded portal's background loop calls :func:`send_reminders`): a reminder to each affected unit
``VMPORTAL_MAINTENANCE_REMINDER_HOURS`` before an outage starts. Idempotent and safe to run late or
twice at once: each reminder is a mail under a once-only key (window, start time, unit), and a run
that loses the race to a concurrent one for the same key stops at the unique constraint."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from vmportal.jobs.app import PortalTask, celery_app
from vmportal.kit import db
from vmportal.kit.settings import get_settings
from vmportal.maintenance import service

log = logging.getLogger(__name__)

REMIND_TASK = "vmportal.maintenance.reminders"


def send_reminders(now: datetime | None = None) -> int:
    """Queue the reminders owed at ``now``, each window in a transaction of its own (one that fails
    stops no other); how many unit mails were queued."""
    hours = get_settings().maintenance_reminder_hours
    if hours <= 0:
        return 0
    now, lead = now or db.utcnow(), timedelta(hours=hours)
    with db.transaction(read_only=True) as s:
        due = service.windows_to_remind(s, now, lead)
    queued = 0
    for window_id in due:
        try:
            with db.transaction() as s:
                queued += service.remind(s, window_id, now, lead)
        except IntegrityError:
            log.info("the reminder of planned outage %s was queued by a concurrent run", window_id)
        except Exception:
            log.exception("no reminder for planned outage %s", window_id)
    return queued


@celery_app.task(base=PortalTask, name=REMIND_TASK)
def reminders() -> int:
    return send_reminders()
