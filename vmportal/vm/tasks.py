"""Celery tasks of the VM domain. Bodies live in :mod:`vmportal.vm.service`; both are idempotent."""

from __future__ import annotations

from vmportal.jobs.app import PortalTask, celery_app
from vmportal.vm import service


@celery_app.task(base=PortalTask, name=service.POWER_TASK)
def power(operation_id: int) -> str:
    """Apply a power operation (after the VM's earlier ones); a finished one is left alone."""
    return service.execute_power(operation_id)


@celery_app.task(base=PortalTask, name=service.DECOMMISSION_TASK)
def decommission(vm_id: int) -> str:
    """Delete a decommissioned VM on its hypervisor and release its address; once."""
    return service.execute_decommission(vm_id)
