"""The Celery task of the e-mail outbox: sending the mails that are due. Beat runs it every minute
(``vmportal.app.beat``); it is also started right after a transaction that queued mail commits.
Idempotent: a row is sent under a compare-and-set claim."""

from __future__ import annotations

from vmportal.jobs.app import PortalTask, celery_app
from vmportal.mail import service as notification

SEND_TASK = notification.SEND_TASK


@celery_app.task(base=PortalTask, name=SEND_TASK)
def send_notifications() -> dict[str, int]:
    """Send the mails that are due (new ones, retries whose backoff has passed, expired claims), then
    the group-robot messages that are due the same way."""
    return notification.send_all()


def embedded_tick() -> None:
    """What beat does for mail, for the embedded portal (it runs no beat): its background loop calls
    this beside the outbox re-drive."""
    notification.send_all()
