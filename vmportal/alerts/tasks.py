"""Celery tasks of alert intake: process received alerts (match, gather into incidents, decide) and
prune the replay-protection ids. Bodies live in :mod:`vmportal.alerts.ingest`; processing is idempotent
(it acts only on alerts still "received")."""

from __future__ import annotations

from vmportal.alerts import ingest, unmatched
from vmportal.alerts.ingest import PROCESS_TASK, PRUNE_TASK
from vmportal.jobs import outbox
from vmportal.jobs.app import PortalTask, celery_app


class _ProcessTask(PortalTask):
    abstract = True
    # A run takes every waiting processing row (FOR UPDATE SKIP LOCKED) and acts only on alerts
    # still "received", under their row locks: two runs never take the same row, a second
    # delivery finds its row completed or its alerts processed. No outbox claim needed (the
    # commonest task by far); each batch's transaction marks its rows completed.
    claims = False


# Coalesced: a post arriving while a run is pending sends nothing; that run takes its row.
outbox.coalesce(PROCESS_TASK)


@celery_app.task(base=_ProcessTask, name=PROCESS_TASK)
def process_alerts(alert_ids: list[int]) -> str:
    """Match received alerts to VMs, gather them into incidents, apply the containment policy: under
    an outbox row, every waiting post's alerts (``alert_ids`` are the row's own, among them)."""
    if outbox.current_row() is None:  # a direct call: just these
        return ingest.process_alerts(alert_ids)
    return ingest.process_waiting()


@celery_app.task(base=PortalTask, name=PRUNE_TASK)
def prune_webhook_ids() -> int:
    """Forget replay-protection ids older than a day (for beat: e.g. hourly)."""
    return ingest.prune_webhook_ids()


@celery_app.task(base=PortalTask, name=unmatched.DIGEST_TASK)
def unmatched_digest() -> int:
    """Mail the center the alerts found unmatched in each whole hour not reported yet (beat: hourly)."""
    return unmatched.send_digest()
