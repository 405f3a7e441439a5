"""The directory sync as a Celery task (beat runs it every ``VMPORTAL_DIRECTORY_SYNC_SECONDS``) and as
the embedded portal's background tick: accounts the LDAP directory or the CAS center list no longer
vouch for are deactivated, their sessions and tokens revoked (:func:`vmportal.identity.ldap.sync`)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from vmportal.identity import ldap
from vmportal.jobs.app import PortalTask, celery_app
from vmportal.kit import db
from vmportal.kit.settings import get_settings

SYNC_TASK = "vmportal.identity.directory_sync"
log = logging.getLogger(__name__)

_last_embedded: float | None = None
_embedded_lock = threading.Lock()


def run_sync() -> dict[str, Any]:
    """One sync in its own unit of work: all of it, or (directory unreachable) nothing."""
    with db.transaction() as session:
        result = ldap.sync(session)
    return {"checked": result.checked, "retired": result.retired, "updated": result.updated}


@celery_app.task(base=PortalTask, name=SYNC_TASK)
def directory_sync() -> dict[str, Any]:
    """Retire the accounts the directories no longer vouch for. A directory that cannot be reached
    retires no one: the task fails and beat runs it again at the next period."""
    return run_sync()


def embedded_tick() -> None:
    """The sync for the embedded portal (no beat): at most once per ``directory_sync_seconds``."""
    global _last_embedded
    every = get_settings().directory_sync_seconds
    if every <= 0:
        return
    with _embedded_lock:
        due = _last_embedded is None or time.monotonic() - _last_embedded >= every
        if due:
            _last_embedded = time.monotonic()
    if due:
        try:
            run_sync()
        except ldap.DirectoryUnavailable as exc:
            log.warning("directory sync skipped, nothing changed: %s", exc.message)
