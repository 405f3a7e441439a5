"""The incident domain's queries: locks, look-ups, the scoped incident list and the timeline's reads
(the unit scoping filter of "which incidents may this actor see" is :func:`conditions`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, func, select

from policies.compromise import Category
from policies.roles import Actor
from vmportal.incidents.lifecycle import FINAL, HOLDING
from vmportal.incidents.models import (
    AlertSource,
    ContainmentState,
    Incident,
    IncidentEvent,
    IncidentState,
    Rectification,
    RectificationAttachment,
    RectificationState,
    SecurityAlert,
)
from vmportal.kit import errors
from vmportal.kit.scope import unit_conditions
from vmportal.kit.sql import insert_or_nothing
from vmportal.unit.models import Unit
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


def open_incident_locked(session: Session, key: str) -> Incident | None:
    """The open incident of ``key`` (VM, category), row-locked and re-read."""
    return session.exec(
        select(Incident)
        .where(col(Incident.open_key) == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def insert_open_incident(session: Session, incident: Incident) -> int | None:
    """Insert ``incident`` unless an open one of its key (``open_key``) exists already: its new id,
    or None when a concurrent transaction's row won the key (read it with :func:`open_incident_locked`)."""
    return insert_or_nothing(session, incident, ["open_key"])


def confirmed_containments(session: Session, vm_id: int) -> list[Incident]:
    """Every incident whose containment of the VM is confirmed in force (closed ones included)."""
    return list(
        session.exec(
            select(Incident).where(
                col(Incident.vm_id) == vm_id,
                col(Incident.containment_state) == ContainmentState.CONFIRMED.value,
            )
        ).all()
    )


def submitted_rectifications(session: Session, incident_id: int) -> list[Rectification]:
    return list(
        session.exec(
            select(Rectification).where(
                col(Rectification.incident_id) == incident_id,
                col(Rectification.state) == RectificationState.SUBMITTED.value,
            )
        ).all()
    )


def rectifications_of(session: Session, incident_id: int) -> list[Rectification]:
    return list(
        session.exec(
            select(Rectification)
            .where(col(Rectification.incident_id) == incident_id)
            .order_by(col(Rectification.id))
        ).all()
    )


def attachments_of(session: Session, rect_ids: list[int]) -> list[RectificationAttachment]:
    if not rect_ids:
        return []
    return list(
        session.exec(
            select(RectificationAttachment)
            .where(col(RectificationAttachment.rectification_id).in_(rect_ids))
            .order_by(col(RectificationAttachment.id))
        ).all()
    )


def events_of(session: Session, incident_id: int) -> list[IncidentEvent]:
    return list(
        session.exec(
            select(IncidentEvent)
            .where(col(IncidentEvent.incident_id) == incident_id)
            .order_by(col(IncidentEvent.id))
        ).all()
    )


def alerts_of(session: Session, incident_id: int, *, limit: int) -> list[tuple[SecurityAlert, str]]:
    """The incident's newest ``limit`` alerts, each with its source's name."""
    rows = session.exec(
        select(SecurityAlert, AlertSource.name)
        .join(AlertSource, col(AlertSource.id) == col(SecurityAlert.source_id))
        .where(col(SecurityAlert.incident_id) == incident_id)
        .order_by(col(SecurityAlert.id).desc())
        .limit(limit)
    ).all()
    return [(alert, str(name)) for alert, name in rows]


# ---- the scoped list ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentFilters:
    state: IncidentState | None = None
    containment_state: ContainmentState | None = None
    active: bool | None = None  # True: not closed/dismissed
    vm_id: int | None = None
    unit_id: int | None = None
    category: Category | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True)
class IncidentRow:
    incident: Incident
    vm_name: str | None
    vm_ip: str | None
    unit_code: str | None


def conditions(actor: Actor, f: IncidentFilters) -> list[Any]:
    """What ``actor`` may see (a unit's users: their unit's incidents) narrowed by ``f``."""
    found: list[Any] = unit_conditions(actor, col(Incident.unit_id))
    if f.state is not None:
        found.append(col(Incident.state) == f.state.value)
    if f.containment_state is not None:
        found.append(col(Incident.containment_state) == f.containment_state.value)
    if f.active is not None:
        finals = [s.value for s in FINAL]
        found.append(col(Incident.state).not_in(finals) if f.active else col(Incident.state).in_(finals))
    if f.vm_id is not None:
        found.append(col(Incident.vm_id) == f.vm_id)
    if f.unit_id is not None:
        found.append(col(Incident.unit_id) == f.unit_id)
    if f.category is not None:
        found.append(col(Incident.category) == f.category.value)
    return found


def _with_names() -> Any:
    return (
        select(Incident, VM.name, VM.ip_address, Unit.code)
        .outerjoin(VM, col(VM.id) == col(Incident.vm_id))
        .outerjoin(Unit, col(Unit.id) == col(Incident.unit_id))
    )


def incident_rows(session: Session, actor: Actor, f: IncidentFilters) -> tuple[list[IncidentRow], int]:
    """One page of the incidents ``actor`` may see, newest first, and how many there are."""
    where = conditions(actor, f)
    rows = session.exec(
        _with_names().where(*where).order_by(col(Incident.id).desc()).limit(f.limit).offset(f.offset)
    ).all()
    total = int(session.exec(select(func.count()).select_from(Incident).where(*where)).one())
    return [IncidentRow(i, name, ip, code) for i, name, ip, code in rows], total


def incident_row(session: Session, incident_id: int) -> IncidentRow | None:
    row = session.exec(_with_names().where(col(Incident.id) == incident_id)).first()
    return None if row is None else IncidentRow(*row)
