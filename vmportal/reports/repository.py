"""Every query of the reports by period (provisioning, incidents, quarantine, findings, compliance).

Each query reads other domains' tables (reports sits above all of them) and is limited to the rows
the actor may see through :func:`vmportal.kit.scope.visible`, by the row's owning unit. The
aggregation (months in Beijing time, medians) is done by :mod:`vmportal.reports.service` in Python,
so SQLite and PostgreSQL give the same figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement
from sqlmodel import Session, col, func, select

from policies.roles import Actor
from vmportal.compliance.repository import overdue_condition
from vmportal.incidents.models import (
    AlertSource,
    ContainmentState,
    Finding,
    Incident,
    IncidentState,
    SecurityAlert,
    ServiceViolation,
    ViolationState,
)
from vmportal.kit.scope import visible
from vmportal.request.lifecycle import OPEN_STATES
from vmportal.request.models import RequestState, VMRequest
from vmportal.vm.models import VM

#: An incident in one of these states is over (closed after rectification, or dismissed).
ENDED_INCIDENT_STATES = (IncidentState.CLOSED.value, IncidentState.DISMISSED.value)


def _in(column: object, start: datetime, end: datetime) -> ColumnElement[bool]:
    c = col(column)
    condition: ColumnElement[bool] = (c >= start) & (c < end)
    return condition


def delivered_requests(
    session: Session, actor: Actor, start: datetime, end: datetime, unit_id: int | None
) -> Sequence[VMRequest]:
    """Requests delivered in ``[start, end)``, oldest delivery first."""
    statement = select(VMRequest).where(
        col(VMRequest.state) == RequestState.DELIVERED.value,
        col(VMRequest.delivered_at).is_not(None),
        _in(VMRequest.delivered_at, start, end),
    )
    if unit_id is not None:
        statement = statement.where(col(VMRequest.unit_id) == unit_id)
    statement = statement.order_by(col(VMRequest.delivered_at), col(VMRequest.id))
    return session.exec(visible(statement, actor, col(VMRequest.unit_id))).all()


def overdue_requests(
    session: Session, actor: Actor, now: datetime, unit_id: int | None
) -> Sequence[VMRequest]:
    """Requests still open (not delivered, rejected or cancelled) past their due time, most overdue first."""
    statement = select(VMRequest).where(
        col(VMRequest.state).in_([s.value for s in OPEN_STATES]), col(VMRequest.due_at) < now
    )
    if unit_id is not None:
        statement = statement.where(col(VMRequest.unit_id) == unit_id)
    statement = statement.order_by(col(VMRequest.due_at), col(VMRequest.id))
    return session.exec(visible(statement, actor, col(VMRequest.unit_id))).all()


def incidents_created(
    session: Session, actor: Actor, start: datetime, end: datetime, unit_id: int | None
) -> Sequence[Incident]:
    """Incidents opened in ``[start, end)``, oldest first."""
    statement = select(Incident).where(_in(Incident.created_at, start, end))
    if unit_id is not None:
        statement = statement.where(col(Incident.unit_id) == unit_id)
    statement = statement.order_by(col(Incident.created_at), col(Incident.id))
    return session.exec(visible(statement, actor, col(Incident.unit_id))).all()


def incidents_contained(
    session: Session, actor: Actor, start: datetime, end: datetime, unit_id: int | None
) -> Sequence[Incident]:
    """Incidents whose containment the hypervisor confirmed in ``[start, end)``, oldest first."""
    statement = select(Incident).where(
        col(Incident.contained_at).is_not(None), _in(Incident.contained_at, start, end)
    )
    if unit_id is not None:
        statement = statement.where(col(Incident.unit_id) == unit_id)
    statement = statement.order_by(col(Incident.contained_at), col(Incident.id))
    return session.exec(visible(statement, actor, col(Incident.unit_id))).all()


def first_alert_source_kinds(session: Session, incident_ids: Iterable[int | None]) -> dict[int, str]:
    """The kind of source (suricata, wazuh…) that sent each incident's first alert."""
    ids = sorted({i for i in incident_ids if i is not None})
    out: dict[int, str] = {}
    for chunk in (ids[n : n + 500] for n in range(0, len(ids), 500)):
        first = (
            select(
                col(SecurityAlert.incident_id).label("incident_id"),
                func.min(SecurityAlert.id).label("first_id"),
            )
            .where(col(SecurityAlert.incident_id).in_(chunk))
            .group_by(col(SecurityAlert.incident_id))
            .subquery()
        )
        statement = (
            select(first.c.incident_id, AlertSource.kind)
            .join(SecurityAlert, col(SecurityAlert.id) == first.c.first_id)
            .join(AlertSource, col(AlertSource.id) == col(SecurityAlert.source_id))
        )
        out.update({int(i): str(kind) for i, kind in session.exec(statement).all()})
    return out


def vm_names(session: Session, vm_ids: Iterable[int | None]) -> dict[int, str]:
    ids = sorted({i for i in vm_ids if i is not None})
    if not ids:
        return {}
    rows = session.exec(select(VM.id, VM.name).where(col(VM.id).in_(ids))).all()
    return {int(i): str(name) for i, name in rows if i is not None}


def overdue_findings(
    session: Session, actor: Actor, now: datetime, start: datetime, end: datetime, unit_id: int | None
) -> Sequence[Finding]:
    """Findings open or notified past their deadline at ``now``, the deadline in ``[start, end)``,
    earliest deadline first (the rule is compliance's own: :func:`overdue_condition`)."""
    statement = select(Finding).where(overdue_condition(now), _in(Finding.deadline_at, start, end))
    if unit_id is not None:
        statement = statement.where(col(Finding.unit_id) == unit_id)
    statement = statement.order_by(col(Finding.deadline_at), col(Finding.id))
    return session.exec(visible(statement, actor, col(Finding.unit_id))).all()


def findings_fixed_late(
    session: Session, actor: Actor, start: datetime, end: datetime, unit_id: int | None
) -> Sequence[Finding]:
    """Findings with their deadline in ``[start, end)`` that the unit reported fixed after it."""
    statement = select(Finding).where(
        col(Finding.deadline_at).is_not(None),
        col(Finding.fixed_at).is_not(None),
        col(Finding.fixed_at) > col(Finding.deadline_at),
        _in(Finding.deadline_at, start, end),
    )
    if unit_id is not None:
        statement = statement.where(col(Finding.unit_id) == unit_id)
    return session.exec(visible(statement, actor, col(Finding.unit_id))).all()


def _count_by_unit(
    session: Session, actor: Actor, model: type, *conditions: ColumnElement[bool]
) -> dict[int, int]:
    unit = col(model.unit_id)  # type: ignore[attr-defined]
    statement = select(unit, func.count()).where(unit.is_not(None), *conditions).group_by(unit)
    return {int(u): int(n) for u, n in session.exec(visible(statement, actor, unit)).all()}


def open_incidents_by_unit(session: Session, actor: Actor) -> dict[int, int]:
    """Incidents not yet closed or dismissed, per unit."""
    return _count_by_unit(session, actor, Incident, col(Incident.state).not_in(ENDED_INCIDENT_STATES))


def quarantined_by_unit(session: Session, actor: Actor) -> dict[int, int]:
    """Incidents whose containment is in force now (confirmed by the hypervisor, not yet released)."""
    return _count_by_unit(
        session,
        actor,
        Incident,
        col(Incident.containment_state) == ContainmentState.CONFIRMED.value,
        col(Incident.state).not_in(ENDED_INCIDENT_STATES),
    )


def overdue_findings_by_unit(session: Session, actor: Actor, now: datetime) -> dict[int, int]:
    return _count_by_unit(session, actor, Finding, overdue_condition(now))


def open_violations_by_unit(session: Session, actor: Actor) -> dict[int, int]:
    """Forbidden services seen open and neither exempted, resolved nor shut down, per unit."""
    return _count_by_unit(
        session, actor, ServiceViolation, col(ServiceViolation.state) == ViolationState.OPEN.value
    )
