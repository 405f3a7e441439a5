"""Every query of quota accounting: the unit's quota row (and its lock), and what its VMs use.

Totals are plain ``(count, vcpus, memory_gib, disk_gib)`` tuples; :mod:`vmportal.quota.service` turns
them into :class:`policies.quota.Resources`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from vmportal.unit.models import Quota, Unit
from vmportal.vm.models import VM, Lifecycle

#: count, Σ vcpus, Σ memory GiB, Σ disk GiB.
Totals = tuple[int, int, int, int]


def lock(session: Session, unit_id: int) -> None:
    """Take the unit's quota row lock until the transaction ends; a unit without one (quota zero)
    locks its unit row instead. On SQLite ``FOR UPDATE`` compiles to nothing: the transaction
    already holds the writer lock."""
    row = session.exec(select(Quota.unit_id).where(Quota.unit_id == unit_id).with_for_update()).first()
    if row is None:
        session.exec(select(Unit.id).where(Unit.id == unit_id).with_for_update()).first()


def quota_of(session: Session, unit_id: int) -> Quota | None:
    return session.get(Quota, unit_id)


def quotas_of(session: Session, unit_ids: Iterable[int]) -> list[Quota]:
    return list(session.exec(select(Quota).where(col(Quota.unit_id).in_(list(unit_ids)))))


def _totals() -> list[sa.ColumnElement[Any]]:
    return [
        func.count(),
        *(func.coalesce(func.sum(getattr(VM, c)), 0) for c in ("vcpus", "memory_gib", "disk_gib")),
    ]


def _as_totals(values: Iterable[Any]) -> Totals:
    count, vcpus, memory, disk = (int(v or 0) for v in values)
    return count, vcpus, memory, disk


def used_by(session: Session, unit_id: int) -> Totals:
    """What the unit's existing VMs (lifecycle active) use."""
    statement = sa.select(*_totals()).where(col(VM.unit_id) == unit_id, col(VM.lifecycle) == Lifecycle.ACTIVE)
    # Core statements through the session's own connection: same transaction, plain typed rows.
    return _as_totals(session.connection().execute(statement).one())


def used_by_units(session: Session, unit_ids: Iterable[int]) -> Mapping[int, Totals]:
    """The same per unit, in one grouped query; a unit without VMs is absent."""
    statement = (
        sa.select(col(VM.unit_id), *_totals())
        .where(col(VM.unit_id).in_(list(unit_ids)), col(VM.lifecycle) == Lifecycle.ACTIVE)
        .group_by(col(VM.unit_id))
    )
    return {int(row[0]): _as_totals(row[1:]) for row in session.connection().execute(statement)}
