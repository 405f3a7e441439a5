"""Celery tasks of the incident response: containment and restore. Bodies live in the services; all
are idempotent (each re-reads the state under the VM's lock and does nothing when there is nothing left
to do), and Retriable hypervisor errors propagate so the task base retries with backoff. When the
retries run out the incident says so (containment or restore ``failed``, with the error) and the
center can retry."""

from __future__ import annotations

from typing import Any

from hypervisors.base import Retriable
from vmportal.incidents import containment
from vmportal.incidents import tamper as _tamper  # noqa: F401  (re-contains on the inventory's reconcile)
from vmportal.incidents.containment import CONTAIN_TASK, RESTORE_TASK
from vmportal.jobs.app import PortalTask, celery_app


class _ContainTask(PortalTask):
    abstract = True

    def give_up(self, exc: Retriable, **kwargs: Any) -> None:
        super().give_up(exc, **kwargs)
        containment.give_up_containment(int(kwargs["incident_id"]), exc)


class _RestoreTask(PortalTask):
    abstract = True

    def give_up(self, exc: Retriable, **kwargs: Any) -> None:
        super().give_up(exc, **kwargs)
        containment.give_up_restore(int(kwargs["incident_id"]), exc)


@celery_app.task(base=_ContainTask, name=CONTAIN_TASK)
def contain(incident_id: int) -> str:
    """Carry out an incident's containment through the VM's adapter; confirmed by re-reading the VM."""
    return containment.execute_containment(incident_id)


@celery_app.task(base=_RestoreTask, name=RESTORE_TASK)
def restore(incident_id: int) -> str:
    """Undo the containment (reconnect, power on, unblock) once the center released the VM."""
    return containment.execute_restore(incident_id)
