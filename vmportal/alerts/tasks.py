"""Celery tasks of alert intake: process received alerts (match, gather into incidents, decide) and
prune the replay-protection ids. Bodies live in :mod:`vmportal.alerts.ingest`; processing is idempotent
(it acts only on alerts still "received")."""

from __future__ import annotations

from vmportal.alerts import ingest, unmatched
from vmportal.alerts.ingest import PROCESS_TASK, PRUNE_TASK
from vmportal.jobs.app import PortalTask, celery_app


class _ProcessTask(PortalTask):
    abstract = True
    # The body locks its alerts and acts only on those still "received", so a second delivery
    # running at the same time waits for the first and then finds nothing to do: no outbox claim
    # needed (one task per alert post, the commonest task by far). Its transaction marks the
    # outbox row completed.
    claims = False


@celery_app.task(base=_ProcessTask, name=PROCESS_TASK)
def process_alerts(alert_ids: list[int]) -> str:
    """Match received alerts to VMs, gather them into incidents, apply the containment policy."""
    return ingest.process_alerts(alert_ids)


@celery_app.task(base=PortalTask, name=PRUNE_TASK)
def prune_webhook_ids() -> int:
    """Forget replay-protection ids older than a day (for beat: e.g. hourly)."""
    return ingest.prune_webhook_ids()


@celery_app.task(base=PortalTask, name=unmatched.DIGEST_TASK)
def unmatched_digest() -> int:
    """Mail the center the alerts found unmatched in each whole hour not reported yet (beat: hourly)."""
    return unmatched.send_digest()
