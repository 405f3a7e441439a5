"""Every query of IP pools and their allocations.

The partial unique index ``uq_ip_allocation_live_address`` (one live allocation per address, in any
pool) is the database's own guard; the queries here read what it protects.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, delete, func, select, update

from vmportal.kit.db import utcnow
from vmportal.network.models import IPAllocation, IPPool


def get_pool(session: Session, pool_id: int) -> IPPool | None:
    return session.get(IPPool, pool_id)


def list_pools(session: Session, connection_id: int | None = None) -> list[IPPool]:
    query = select(IPPool).order_by(col(IPPool.id))
    if connection_id is not None:
        query = query.where(IPPool.connection_id == connection_id)
    return list(session.exec(query))


def first_pool_of(session: Session, connection_id: int) -> IPPool | None:
    """The bound pool with the lowest id: the connection's default pool."""
    return session.exec(
        select(IPPool).where(IPPool.connection_id == connection_id).order_by(col(IPPool.id)).limit(1)
    ).first()


def pool_by_name(session: Session, name: str) -> IPPool | None:
    """The pool named ``name`` (names are unique), if there is one."""
    return session.exec(select(IPPool).where(IPPool.name == name)).first()


def name_taken(session: Session, name: str, *, other_than: int | None = None) -> bool:
    query = select(IPPool.id).where(IPPool.name == name)
    if other_than is not None:
        query = query.where(IPPool.id != other_than)
    return session.exec(query).first() is not None


def lock_pools(session: Session) -> None:
    """Serialise the writers of pools until the transaction ends, so that a check over every pool
    (no overlapping CIDRs) and the write it allows are one step. PostgreSQL: ``SHARE ROW
    EXCLUSIVE`` conflicts with itself and with every insert, update and delete of ``ip_pool``, not
    with reads, nor with the row locks an allocation's foreign key takes. SQLite: nothing to do, a
    writing transaction holds the database's write lock from its first statement (``BEGIN
    IMMEDIATE``)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE ip_pool IN SHARE ROW EXCLUSIVE MODE"))


def all_live_addresses(session: Session) -> list[str]:
    """Every address given to a VM (or a request being provisioned) right now, in any pool."""
    return list(
        session.exec(select(IPAllocation.address).where(col(IPAllocation.released_at).is_(None))).all()
    )


def live_addresses(session: Session, pool_id: int) -> list[str]:
    """The addresses of the pool given to a VM (or a request being provisioned) right now."""
    return list(
        session.exec(
            select(IPAllocation.address).where(
                IPAllocation.pool_id == pool_id, col(IPAllocation.released_at).is_(None)
            )
        ).all()
    )


def live_count(session: Session, pool_id: int) -> int:
    return session.exec(
        select(func.count())
        .select_from(IPAllocation)
        .where(IPAllocation.pool_id == pool_id, col(IPAllocation.released_at).is_(None))
    ).one()


def last_released(session: Session, pool_id: int) -> Sequence[tuple[str, datetime | None]]:
    """Each address of the pool handed out before and released since, with its latest release."""
    return session.exec(
        select(IPAllocation.address, func.max(IPAllocation.released_at))
        .where(IPAllocation.pool_id == pool_id, col(IPAllocation.released_at).is_not(None))
        .group_by(col(IPAllocation.address))
    ).all()


def live_allocation_for_request(session: Session, request_id: int) -> IPAllocation | None:
    return session.exec(
        select(IPAllocation)
        .where(IPAllocation.request_id == request_id, col(IPAllocation.released_at).is_(None))
        .order_by(col(IPAllocation.id))
    ).first()


def live_allocation_for_vm(session: Session, vm_id: int) -> IPAllocation | None:
    return session.exec(
        select(IPAllocation)
        .where(IPAllocation.vm_id == vm_id, col(IPAllocation.released_at).is_(None))
        .order_by(col(IPAllocation.id))
    ).first()


def release(session: Session, *criteria: Any) -> int:
    """Stamp the live allocations matching ``criteria`` released; how many there were."""
    result = session.exec(
        update(IPAllocation)
        .where(col(IPAllocation.released_at).is_(None), *criteria)
        .values(released_at=utcnow())
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount or 0)


def unlink_vm(session: Session, vm_id: int) -> None:
    """Forget which VM the allocations pointed at (a placeholder VM row about to be removed)."""
    session.exec(
        update(IPAllocation)
        .where(col(IPAllocation.vm_id) == vm_id)
        .values(vm_id=None)
        .execution_options(synchronize_session="fetch")
    )


def delete_allocations(session: Session, pool_id: int) -> int:
    """Remove every allocation record of the pool (its history goes with it); how many."""
    return int(session.exec(delete(IPAllocation).where(col(IPAllocation.pool_id) == pool_id)).rowcount or 0)


def allocations(
    session: Session, pool_id: int, *, released: bool, limit: int, offset: int
) -> list[IPAllocation]:
    """The pool's allocations in the order they were made (live ones only unless ``released``)."""
    query = select(IPAllocation).where(IPAllocation.pool_id == pool_id)
    if not released:
        query = query.where(col(IPAllocation.released_at).is_(None))
    return list(session.exec(query.order_by(col(IPAllocation.id)).offset(offset).limit(limit)))
