"""Tasks beat runs on a schedule. Each is safe to run twice and safe to run late."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery.schedules import crontab

from vmportal.alerts import unmatched
from vmportal.app import retention
from vmportal.audit import service as audit
from vmportal.cleanup import tasks as cleanup_tasks
from vmportal.compliance import tasks as compliance_tasks
from vmportal.identity import tasks as identity_tasks
from vmportal.jobs import outbox
from vmportal.jobs.app import PortalTask, celery_app
from vmportal.kit import db
from vmportal.kit.settings import Settings, get_settings
from vmportal.maintenance import tasks as maintenance_tasks
from vmportal.request import reminders

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


@celery_app.task(base=PortalTask, name="vmportal.retention.prune")
def prune_outboxes() -> dict[str, int]:
    """Delete completed outbox tasks and sent mails past VMPORTAL_RETENTION_DAYS, in bounded batches."""
    return retention.prune()


def beat_schedule(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """What beat runs (the README's "Beat schedule" lists it for operators; keep the two in step).

    The re-drive runs at half the re-drive age (at most every 30 s), so a lost task is sent again
    between one and one and a half re-drive periods after it was lost. Reminders every 15 minutes:
    a deadline reminder is at most that late, and each run is one indexed query when nothing is due.
    The clean-up campaigns' reminders and deadline step, and the planned outages' reminders, every
    15 minutes too.
    Pruning hourly, off the hour, in bounded batches (see :mod:`vmportal.app.retention`)."""
    settings = settings or get_settings()
    redrive_every = min(30.0, max(1.0, settings.outbox_redrive_seconds / 2))
    return {
        "outbox-redrive": {"task": "vmportal.outbox.redrive", "schedule": redrive_every},
        "inventory-sync": {"task": "vmportal.inventory.sync", "schedule": 300.0},
        "audit-verify": {"task": "vmportal.audit.verify", "schedule": crontab(minute=17, hour=3)},
        "notifications-send": {"task": "vmportal.security.send_notifications", "schedule": 60.0},
        "finding-reminders": {"task": "vmportal.security.finding_reminders", "schedule": 900.0},
        "request-deadline-reminders": {"task": "vmportal.request.deadline_reminders", "schedule": 900.0},
        "cleanup-tick": {"task": cleanup_tasks.TICK_TASK, "schedule": 900.0},
        "maintenance-reminders": {"task": maintenance_tasks.REMIND_TASK, "schedule": 900.0},
        "retention-prune": {"task": "vmportal.retention.prune", "schedule": crontab(minute=41)},
        **_directory_sync(settings),
        "unmatched-alerts-digest": {"task": unmatched.DIGEST_TASK, "schedule": crontab(minute=2)},
    }


def _directory_sync(settings: Settings) -> dict[str, dict[str, Any]]:
    every = settings.directory_sync_seconds
    return {"directory-sync": {"task": identity_tasks.SYNC_TASK, "schedule": float(every)}} if every else {}


BEAT_SCHEDULE: dict[str, dict[str, Any]] = beat_schedule()

celery_app.conf.beat_schedule = BEAT_SCHEDULE

#: Pruning in the embedded portal: as often as beat does it.
EMBEDDED_PRUNE_SECONDS = 3600.0
_last_embedded_prune: float | None = None
_embedded_lock = threading.Lock()


def embedded_tick() -> None:
    """The part of beat's schedule the embedded portal's background thread (``vmportal.app.factory``, no
    beat there) does not run by itself yet: the provisioning deadline reminders on every tick (one
    indexed query when nothing is due), the pruning once an hour. Call it beside ``outbox.redrive()``
    and ``tasks_mail.embedded_tick()``."""
    global _last_embedded_prune
    reminders.send_reminders()
    compliance_tasks.send_reminders()  # the findings' deadline reminders (mail runs no domain's task)
    cleanup_tasks.tick()  # the clean-up campaigns' reminders and deadline step (one query when none is open)
    maintenance_tasks.send_reminders()  # planned outages starting soon (one indexed query when none is)
    identity_tasks.embedded_tick()  # the directory sync, once per VMPORTAL_DIRECTORY_SYNC_SECONDS
    with _embedded_lock:
        due = (
            _last_embedded_prune is None or time.monotonic() - _last_embedded_prune >= EMBEDDED_PRUNE_SECONDS
        )
        if due:
            _last_embedded_prune = time.monotonic()
    if due:
        retention.prune()
    _embedded_digest()


_last_digest_hour: int | None = None


def _embedded_digest() -> None:
    """The unmatched-alerts digest, once per hour of the clock (its own look-ups find an hour
    already mailed, so a second process doing the same sends nothing twice)."""
    global _last_digest_hour
    hour = int(time.time() // 3600)
    with _embedded_lock:
        if _last_digest_hour == hour:
            return
        _last_digest_hour = hour
    unmatched.send_digest()
