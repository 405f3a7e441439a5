"""The clean-up's periodic step (beat every 15 minutes, ``vmportal.cleanup.tick``; the embedded
portal's background loop calls :func:`tick`): the reminders before a campaign's deadline, then the
deadline step. Idempotent and safe to run late: a reminder is a ``cleanup_reminder`` row per (campaign,
unit, kind) under a unique constraint, the deadline step runs once under the campaign's row lock."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from vmportal.cleanup import repository, service
from vmportal.jobs.app import PortalTask, celery_app
from vmportal.kit import db

log = logging.getLogger(__name__)

TICK_TASK = "vmportal.cleanup.tick"


def send_reminders(now: datetime | None = None) -> dict[str, int]:
    """Queue the reminders owed at ``now``: each unit with pending items of an open campaign, in a
    transaction of its own (one that fails, or that a concurrent run reminded first, stops nothing)."""
    now = now or db.utcnow()
    counts: dict[str, int] = {}
    with db.transaction(read_only=True) as s:
        work = [
            (c.id, repository.units_with_pending(s, c.id))
            for c in repository.open_campaigns(s)
            if c.id is not None and service.reminder_owed(c, now) is not None
        ]
    for campaign_id, unit_ids in work:
        assert campaign_id is not None
        for unit_id in unit_ids:
            try:
                with db.transaction() as s:
                    kind = service.remind_unit(s, campaign_id, unit_id, now)
            except IntegrityError:
                log.info("clean-up reminder for unit %s queued by a concurrent run", unit_id)
                continue
            except Exception:
                log.exception("no clean-up reminder for unit %s of campaign %s", unit_id, campaign_id)
                continue
            if kind is not None:
                counts[kind.value] = counts.get(kind.value, 0) + 1
    return counts


def pass_deadlines(now: datetime | None = None) -> dict[int, dict[str, int]]:
    """The deadline step of every open campaign whose deadline has come, each in its own transaction."""
    now = now or db.utcnow()
    with db.transaction(read_only=True) as s:
        due = repository.campaigns_past_deadline(s, now)
    done: dict[int, dict[str, int]] = {}
    for campaign_id in due:
        try:
            with db.transaction() as s:
                result = service.pass_deadline(s, campaign_id, now)
        except Exception:
            log.exception("the deadline step of clean-up campaign %s failed", campaign_id)
            continue
        if result is not None:
            done[campaign_id] = result
    return done


def tick(now: datetime | None = None) -> dict[str, object]:
    """Reminders first (a campaign whose deadline comes in this run gets the deadline mail, not a
    late reminder), then the deadline step."""
    now = now or db.utcnow()
    return {"reminders": send_reminders(now), "deadlines": pass_deadlines(now)}


@celery_app.task(base=PortalTask, name=TICK_TASK)
def cleanup_tick() -> dict[str, object]:
    """The clean-up campaigns' reminders and deadline step (beat, every 15 minutes)."""
    now = db.utcnow()
    reminders = send_reminders(now)
    deadlines = pass_deadlines(now)
    return {"reminders": reminders, "deadlines": {str(k): v for k, v in deadlines.items()}}
