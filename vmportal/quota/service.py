"""What counts against a unit's quota, and the per-unit quota report.

* **used**: the unit's VMs that exist (lifecycle ``active``). A VM being provisioned is not counted
  here but through its request; a decommissioned or missing VM uses nothing.
* **pending** (reported as *requested*): the unit's requests that are submitted, endorsed, approved
  or provisioning. Counting them stops a unit from passing its quota with several requests filed
  before the first is delivered.

Submission checks used + every pending request + the new one. Approval re-checks with only the
*committed* requests (approved, provisioning) besides the one being approved: approval is the moment
resources are granted, so requests still waiting do not block each other there, and a quota lowered
after submission is enforced. Both checks first lock the unit's quota row (PostgreSQL
``SELECT … FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` serialises writers already), so two approvals
for one unit cannot both fit into the same remaining room.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from policies.quota import DIMENSIONS, QuotaFacts, Resources
from vmportal.request.models import RequestState, VMRequest
from vmportal.unit.models import Quota, Unit
from vmportal.vm.models import VM, Lifecycle

#: Requests whose resources are spoken for but not yet a VM.
PENDING_STATES: tuple[str, ...] = (
    RequestState.SUBMITTED,
    RequestState.ENDORSED,
    RequestState.APPROVED,
    RequestState.PROVISIONING,
)
#: Requests the center has granted and that are not yet a VM.
COMMITTED_STATES: tuple[str, ...] = (RequestState.APPROVED, RequestState.PROVISIONING)


def lock(session: Session, unit_id: int) -> None:
    """Serialise quota decisions for one unit until the transaction ends.

    The quota row is the lock; a unit without one (quota zero) locks its unit row instead.
    On SQLite ``FOR UPDATE`` compiles to nothing: the transaction already holds the writer lock.
    """
    row = session.exec(select(Quota.unit_id).where(Quota.unit_id == unit_id).with_for_update()).first()
    if row is None:
        session.exec(select(Unit.id).where(Unit.id == unit_id).with_for_update()).first()


def _limit(quota: Quota | None) -> Resources:
    if quota is None:
        return Resources()
    return Resources(quota.max_vms, quota.max_vcpus, quota.max_memory_gib, quota.max_disk_gib)


def limit_of(session: Session, unit_id: int) -> Resources:
    return _limit(session.get(Quota, unit_id))


def _totals(model: type[VM] | type[VMRequest]) -> list[sa.ColumnElement[Any]]:
    """count, Σ vcpus, Σ memory, Σ disk: one Resources' worth of aggregate columns."""
    return [
        func.count(),
        *(func.coalesce(func.sum(getattr(model, c)), 0) for c in ("vcpus", "memory_gib", "disk_gib")),
    ]


def _resources(values: Sequence[Any]) -> Resources:
    return Resources(*(int(v or 0) for v in values))


def _rows(session: Session, statement: sa.Select[Any]) -> list[sa.Row[Any]]:
    # Core statements through the session's own connection: same transaction, plain typed rows.
    return list(session.connection().execute(statement))


def used_of(session: Session, unit_id: int) -> Resources:
    statement = sa.select(*_totals(VM)).where(
        col(VM.unit_id) == unit_id, col(VM.lifecycle) == Lifecycle.ACTIVE
    )
    return _resources(_rows(session, statement)[0])


def pending_of(
    session: Session, unit_id: int, states: Iterable[str] = PENDING_STATES, *, exclude: int | None = None
) -> Resources:
    statement = sa.select(*_totals(VMRequest)).where(
        col(VMRequest.unit_id) == unit_id, col(VMRequest.state).in_(list(states))
    )
    if exclude is not None:
        statement = statement.where(col(VMRequest.id) != exclude)
    return _resources(_rows(session, statement)[0])


def facts(
    session: Session,
    unit_id: int,
    requested: Resources,
    *,
    states: Iterable[str] = PENDING_STATES,
    exclude: int | None = None,
) -> QuotaFacts:
    """The plain facts ``policies.quota.check_quota`` decides on. Call :func:`lock` first."""
    return QuotaFacts(
        limit=limit_of(session, unit_id),
        used=used_of(session, unit_id),
        pending=pending_of(session, unit_id, states, exclude=exclude),
        requested=requested,
    )


# ---- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitUsage:
    unit: Unit
    quota: Resources
    used: Resources
    requested: Resources

    @property
    def free(self) -> Resources:
        room = self.quota - self.used - self.requested
        return Resources(*(max(getattr(room, d), 0) for d in DIMENSIONS))

    @property
    def over(self) -> tuple[str, ...]:
        return (self.used + self.requested).exceeding(self.quota)


def report(session: Session, *, unit_id: int | None = None) -> list[UnitUsage]:
    """Quota, use and outstanding requests per unit, in three grouped queries whatever the number
    of units."""
    units_query = select(Unit).order_by(col(Unit.code))
    if unit_id is not None:
        units_query = units_query.where(Unit.id == unit_id)
    units = list(session.exec(units_query))
    if not units:
        return []
    ids = [u.id for u in units]
    quotas = {q.unit_id: _limit(q) for q in session.exec(select(Quota).where(col(Quota.unit_id).in_(ids)))}
    used = {
        row[0]: _resources(row[1:])
        for row in _rows(
            session,
            sa.select(col(VM.unit_id), *_totals(VM))
            .where(col(VM.unit_id).in_(ids), col(VM.lifecycle) == Lifecycle.ACTIVE)
            .group_by(col(VM.unit_id)),
        )
    }
    pending = {
        row[0]: _resources(row[1:])
        for row in _rows(
            session,
            sa.select(col(VMRequest.unit_id), *_totals(VMRequest))
            .where(col(VMRequest.unit_id).in_(ids), col(VMRequest.state).in_(PENDING_STATES))
            .group_by(col(VMRequest.unit_id)),
        )
    }
    return [
        UnitUsage(
            unit=u,
            quota=quotas.get(u.id or 0, Resources()),
            used=used.get(u.id or 0, Resources()),
            requested=pending.get(u.id or 0, Resources()),
        )
        for u in units
    ]
