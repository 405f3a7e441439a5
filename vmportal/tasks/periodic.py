"""Tasks beat runs on a schedule. Each is safe to run twice and safe to run late."""

from __future__ import annotations

import logging
from typing import Any

from celery.schedules import crontab

from vmportal import db
from vmportal.audit import service as audit
from vmportal.settings import Settings, get_settings
from vmportal.tasks import outbox
from vmportal.tasks.app import PortalTask, celery_app

log = logging.getLogger(__name__)


@celery_app.task(base=PortalTask, name="vmportal.outbox.redrive")
def redrive_outbox() -> int:
    """Send again what a crash or a broker outage kept from its worker."""
    return outbox.redrive()


@celery_app.task(base=PortalTask, name="vmportal.audit.verify")
def verify_audit_chain() -> dict[str, Any]:
    with db.transaction() as session:
        result = audit.verify(session)
    if not result.ok:
        log.critical("audit chain broken at row %s: %s", result.broken_at, result.reason)
    return {
        "ok": result.ok,
        "checked": result.checked,
        "broken_at": result.broken_at,
        "reason": result.reason,
    }


def beat_schedule(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """What beat runs. The re-drive runs at half the re-drive age (at most every 30 s), so a lost
    task is sent again between one and one and a half re-drive periods after it was lost."""
    settings = settings or get_settings()
    redrive_every = min(30.0, max(1.0, settings.outbox_redrive_seconds / 2))
    return {
        "outbox-redrive": {"task": "vmportal.outbox.redrive", "schedule": redrive_every},
        "inventory-sync": {"task": "vmportal.inventory.sync", "schedule": 300.0},
        "audit-verify": {"task": "vmportal.audit.verify", "schedule": crontab(minute=17, hour=3)},
        "notifications-send": {"task": "vmportal.security.send_notifications", "schedule": 60.0},
        "finding-reminders": {"task": "vmportal.security.finding_reminders", "schedule": 900.0},
    }


BEAT_SCHEDULE: dict[str, dict[str, Any]] = beat_schedule()

celery_app.conf.beat_schedule = BEAT_SCHEDULE
