"""Forbidden-service violations: reading them, and the center's shutdown of a violating VM.

**Shutdown** (agreement §6: "甲方有权关闭虚拟机"). The center may shut the VM down over an open
violation: a hard power-off queued through the VM power service (``vm.service.enqueue_power``, after
the VM's earlier operations, audited like any power operation); the violation records the operation
and becomes ``shut_down``, keeping its appearance (a later scan that sees the service gone resolves
it). How violations are raised and resolved is :mod:`.scans`'s business; exempting them,
:mod:`.exemptions`'.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from hypervisors.base import PowerAction, PowerState
from policies.roles import Actor
from vmportal.audit.service import Who, record
from vmportal.compliance import repository
from vmportal.compliance.schemas import ViolationFilters
from vmportal.compliance.service import mails
from vmportal.incidents.models import ServiceViolation, ViolationState
from vmportal.kit import db, errors
from vmportal.kit.paging import Page, PageRequest
from vmportal.vm import service as vm_service
from vmportal.vm.models import Lifecycle


@dataclass(frozen=True)
class Shutdown:
    violation: ServiceViolation
    operation_id: int | None  # None: the VM was already off


def shutdown(session: Session, actor: Actor, who: Who, violation_id: int, reason: str = "") -> Shutdown:
    """The center shuts the VM down over an open violation (agreement §6), through the power service."""
    violation = repository.lock_violation(session, violation_id)
    if violation.state != ViolationState.OPEN.value:
        exc = errors.StateConflict(
            "violation",
            violation.state,
            "shutdown",
            message=f"cannot shut the VM down over violation {violation_id} in state '{violation.state}' "
            "(only from: open)",
        )
        exc.message_zh = f"违规记录当前状态为“{violation.state}”，只有未处理（open）的违规可以据此关闭虚拟机"
        raise exc
    vm = vm_service.lock_vm(session, violation.vm_id)
    if vm is None or vm.lifecycle != Lifecycle.ACTIVE:
        raise errors.StateConflict("vm", vm.lifecycle if vm else "missing", "shutdown")
    _, en = mails.describe(violation)
    why = f"forbidden service (violation {violation_id}: {en})" + (f": {reason}" if reason else "")
    operation_id: int | None = None
    if vm.power_state != PowerState.STOPPED.value:
        op = vm_service.enqueue_power(
            session, vm.id or 0, PowerAction.STOP, who=who, reason=why[:500], requested_by=actor.user_id
        )
        operation_id = op.id
    now = db.utcnow()
    violation.state = ViolationState.SHUT_DOWN.value
    violation.decided_by = actor.user_id
    violation.note = (reason or "shut down by the center")[:1000]
    violation.evidence = {
        **(violation.evidence or {}),
        "shutdown": {"operation_id": operation_id, "at": now.isoformat(), "by": who.actor, "reason": reason},
    }
    session.add(violation)
    record(
        session,
        who,
        "security.violation.shutdown",
        "service_violation",
        violation_id,
        before={"state": ViolationState.OPEN.value},
        after={"state": violation.state, "vm_id": vm.id, "operation_id": operation_id},
        detail=reason,
        unit_id=violation.unit_id,
    )
    mails.shut_down(session, violation, vm, reason)
    return Shutdown(violation, operation_id)


def list_violations(
    session: Session, actor: Actor, f: ViolationFilters, page: PageRequest
) -> Page[ServiceViolation]:
    """The violations ``actor`` sees that match ``f``, newest first."""
    rows, total = repository.violations(session, actor, f, page)
    return Page(rows, total, page.limit, page.offset)


def get_violation(session: Session, actor: Actor, violation_id: int) -> ServiceViolation:
    """One violation ``actor`` may see (404 otherwise)."""
    return repository.visible_violation(session, actor, violation_id)
