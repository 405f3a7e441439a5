"""The provisioning task: an approved request becomes a VM on its hypervisor; and beat's deadline
reminders (:mod:`vmportal.request.reminders`).

Idempotent by construction (see :mod:`vmportal.request.service`): the request's state is changed
only by compare-and-set, the VM row and its password are on file before the hypervisor is asked,
and the clone carries the marker ``vmportal:request:<id>``, so a redelivered task resumes the VM the
first delivery made instead of making a second one; a delivered request is left alone.

Retriable hypervisor errors propagate: the task base retries with backoff. Any other hypervisor
error fails the request with the adapter's message.
"""

from __future__ import annotations

import logging

from hypervisors.base import HypervisorAdapter, HypervisorError, Retriable
from vmportal.connection.service import adapter_for
from vmportal.jobs.app import PortalTask, celery_app
from vmportal.kit import db
from vmportal.request import reminders, service

log = logging.getLogger(__name__)


def _remove_leftover(adapter: HypervisorAdapter, plan: service.ProvisionPlan) -> None:
    """Delete a VM carrying this request's marker: one left by an earlier, failed attempt has a
    password nobody holds any more, so it must not be resumed."""
    leftover = adapter.find_by_marker(plan.spec.marker)
    if leftover is not None:
        log.warning("request %s: removing VM %s left by a failed attempt", plan.request_id, leftover.ref)
        adapter.delete(leftover.ref)


def _fail(request_id: int, message: str) -> str:
    with db.transaction() as session:
        service.fail_provisioning(session, request_id, message)
    log.warning("request %s: provisioning failed: %s", request_id, message)
    return "failed"


def _give_up(task: PortalTask, exc: Retriable, vm_request_id: int) -> None:
    # The hypervisor stayed unreachable through every retry: the request must say so (failed,
    # retryable by the center) rather than sit in 'provisioning'.
    _fail(
        vm_request_id, f"the hypervisor could not be reached after {task.max_retries} retries: {exc.message}"
    )


@celery_app.task(base=PortalTask, name=service.PROVISION_TASK, give_up=_give_up)
def provision(vm_request_id: int) -> str:
    try:
        with db.transaction() as session:
            plan = service.prepare_provisioning(session, vm_request_id)
    except service.ProvisioningFailed as exc:
        return _fail(vm_request_id, exc.message)
    if plan is None:
        return "nothing to do"

    adapter = adapter_for(plan.connection)
    try:
        if plan.fresh and plan.attempt > 1:
            _remove_leftover(adapter, plan)
        info = adapter.clone(plan.spec)
    except Retriable:
        raise
    except HypervisorError as exc:
        message = exc.message
        try:
            _remove_leftover(adapter, plan)
        except HypervisorError as cleanup:
            message += f" (a partial VM may remain on the hypervisor: {cleanup.message})"
        return _fail(vm_request_id, message)

    with db.transaction() as session:
        delivered = service.finish_provisioning(session, vm_request_id, plan.vm_id, info)
    if delivered:
        log.info("request %s delivered as VM %s", vm_request_id, plan.vm_id)
    return "delivered" if delivered else "nothing to do"


REMINDER_TASK = "vmportal.request.deadline_reminders"


@celery_app.task(base=PortalTask, name=REMINDER_TASK)
def deadline_reminders() -> dict[str, int]:
    """Queue the 48-hour and overdue provisioning reminders owed now (beat, every 15 minutes)."""
    return reminders.send_reminders()
