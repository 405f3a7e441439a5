"""The incident domain's queries that lock or scan incidents (the others still sit in its services)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from vmportal.incidents.lifecycle import HOLDING
from vmportal.incidents.models import ContainmentState, Incident, IncidentState
from vmportal.kit import errors
from vmportal.vm import service as vm_service
from vmportal.vm.models import VM, Lifecycle


def lock_incident(session: Session, incident_id: int) -> tuple[Incident, VM | None]:
    """The incident re-read under its VM's lock (the lock every change of the VM's containment takes,
    so an API action and the containment or restore task never interleave), then its own row lock."""
    found = session.get(Incident, incident_id)
    if found is None:
        raise errors.NotFound("incident", incident_id)
    vm = vm_service.lock_vm(session, found.vm_id) if found.vm_id is not None else None
    incident = session.exec(
        select(Incident)
        .where(col(Incident.id) == incident_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return incident, vm


def holding_incidents(session: Session, vm_id: int, *, exclude: int | None = None) -> list[Incident]:
    """The VM's incidents that keep it suspended (containing, contained, submitted, restoring)."""
    stmt = select(Incident).where(
        col(Incident.vm_id) == vm_id, col(Incident.state).in_([s.value for s in HOLDING])
    )
    if exclude is not None:
        stmt = stmt.where(col(Incident.id) != exclude)
    return list(session.exec(stmt.order_by(col(Incident.id))).all())


def held_vm_refs(session: Session, connection_id: int) -> list[str]:
    """Hypervisor refs of the connection's active VMs that a confirmed containment holds."""
    stmt = (
        select(VM.hypervisor_ref)
        .join(Incident, col(Incident.vm_id) == col(VM.id))
        .where(
            col(VM.connection_id) == connection_id,
            col(VM.lifecycle) == Lifecycle.ACTIVE.value,
            col(Incident.state) == IncidentState.CONTAINED.value,
            col(Incident.containment_state) == ContainmentState.CONFIRMED.value,
        )
    )
    return sorted({str(ref) for ref in session.exec(stmt).all()})
