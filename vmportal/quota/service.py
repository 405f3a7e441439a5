"""What counts against a unit's quota.

* **used**: the unit's VMs that exist (lifecycle ``active``). A VM being provisioned is not counted
  here but through its request; a decommissioned or missing VM uses nothing.
* **pending** (reported as *requested*): what the unit's requests still to be delivered ask for.
  This domain does not read requests (they are a domain above it): the caller counts them and
  passes the total in. Counting them stops a unit from passing its quota with several requests
  filed before the first is delivered.

Submission checks used + every pending request + the new one. Approval re-checks with only the
*committed* requests (approved, provisioning) besides the one being approved: approval is the moment
resources are granted, so requests still waiting do not block each other there, and a quota lowered
after submission is enforced. Both checks first :func:`lock` the unit's quota row (PostgreSQL
``SELECT … FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` serialises writers already), so two approvals
for one unit cannot both fit into the same remaining room.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlmodel import Session

from policies.quota import DIMENSIONS, QuotaFacts, Resources
from vmportal.quota import repository
from vmportal.unit.models import Quota


def lock(session: Session, unit_id: int) -> None:
    """Serialise quota decisions for one unit until the transaction ends (before counting)."""
    repository.lock(session, unit_id)


def _limit(quota: Quota | None) -> Resources:
    if quota is None:
        return Resources()
    return Resources(quota.max_vms, quota.max_vcpus, quota.max_memory_gib, quota.max_disk_gib)


def limit_of(session: Session, unit_id: int) -> Resources:
    return _limit(repository.quota_of(session, unit_id))


def used_of(session: Session, unit_id: int) -> Resources:
    return Resources(*repository.used_by(session, unit_id))


def facts(session: Session, unit_id: int, requested: Resources, *, pending: Resources) -> QuotaFacts:
    """The plain facts ``policies.quota.check_quota`` decides on; ``pending`` is what the unit's
    outstanding requests ask for, counted by the caller. Call :func:`lock` first."""
    return QuotaFacts(
        limit=limit_of(session, unit_id),
        used=used_of(session, unit_id),
        pending=pending,
        requested=requested,
    )


@dataclass(frozen=True)
class UnitUsage:
    """One unit's line of the quota report."""

    unit_id: int
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


def usage(session: Session, unit_ids: Iterable[int], requested: Mapping[int, Resources]) -> list[UnitUsage]:
    """Quota, use and ``requested`` (the units' outstanding requests, counted by the caller) per
    unit, in the order given, in two grouped queries whatever the number of units."""
    ids = list(unit_ids)
    if not ids:
        return []
    quotas = {q.unit_id: _limit(q) for q in repository.quotas_of(session, ids)}
    used = {unit: Resources(*t) for unit, t in repository.used_by_units(session, ids).items()}
    return [
        UnitUsage(
            unit_id=unit,
            quota=quotas.get(unit, Resources()),
            used=used.get(unit, Resources()),
            requested=requested.get(unit, Resources()),
        )
        for unit in ids
    ]
