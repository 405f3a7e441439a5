"""The inventory's queries: the VM rows a sync compares (narrowed to a change stream's refs), their
version-guarded batch update, the unregistered rows it inserts, refs moved by a migration, the
connections to sync and the unregistered VMs the center assigns."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from vmportal.connection.models import HypervisorConnection
from vmportal.vm.models import VM, Lifecycle

#: What a sync reads of each row: enough to compare with the hypervisor and to write the audit.
_ROW_COLUMNS: tuple[Any, ...] = (
    VM.id,
    VM.hypervisor_ref,
    VM.name,
    VM.unit_id,
    VM.registered,
    VM.lifecycle,
    VM.version,
    VM.synced_at,
    VM.created_at,
    VM.power_state,
    VM.ips,
    VM.macs,
    VM.network_connected,
    VM.vcpus,
    VM.memory_gib,
    VM.disk_gib,
)


def sync_rows(session: Session, connection_id: int, refs: list[str] | None = None) -> list[Any]:
    """The connection's rows (only those of ``refs`` when given), as plain rows of _ROW_COLUMNS."""
    query = sa.select(*_ROW_COLUMNS).where(col(VM.connection_id) == connection_id)
    if refs is not None:
        query = query.where(col(VM.hypervisor_ref).in_(refs))
    return list(session.execute(query))


def provisioning_refs(session: Session, connection_id: int, refs: list[str]) -> set[str]:
    """Which of ``refs`` are placeholders of deliveries still in progress on the connection."""
    return set(
        session.execute(
            sa.select(col(VM.hypervisor_ref)).where(
                col(VM.connection_id) == connection_id,
                col(VM.lifecycle) == Lifecycle.PROVISIONING,
                col(VM.hypervisor_ref).in_(refs),
            )
        ).scalars()
    )


def guarded_update(session: Session, values: list[dict[str, Any]]) -> int:
    """One executemany of row updates, each guarded by the version this sync read: a power
    operation or containment that changed the VM meanwhile wins, and this sync's older reading of
    that VM is dropped. Returns how many rows were written."""
    if not values:
        return 0
    table = VM.__table__  # type: ignore[attr-defined]
    stmt = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("b_id"), table.c.version == sa.bindparam("b_version"))
        .values({k: sa.bindparam(k) for k in values[0] if not k.startswith("b_")})
    )
    result = session.connection().execute(stmt, values)
    return int(result.rowcount) if result.rowcount is not None and result.rowcount >= 0 else len(values)


def insert_vm_rows(session: Session, values: list[dict[str, Any]]) -> list[int]:
    """Insert VM rows in one statement (plain rows, not ORM objects); their ids."""
    ids = session.execute(sa.insert(VM).returning(col(VM.id)), values).scalars().all()
    return [int(i) for i in ids]


def refs_in_use(session: Session, connection_id: int, refs: list[str]) -> set[str]:
    return set(
        session.execute(
            sa.select(col(VM.hypervisor_ref)).where(
                col(VM.connection_id) == connection_id, col(VM.hypervisor_ref).in_(refs)
            )
        ).scalars()
    )


def move_ref(session: Session, connection_id: int, old: str, new: str) -> int:
    result = session.execute(
        sa.update(VM)
        .where(col(VM.connection_id) == connection_id, col(VM.hypervisor_ref) == old)
        .values(hypervisor_ref=new, version=col(VM.version) + 1)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def active_connection_ids(session: Session, connection_id: int | None = None) -> list[int]:
    query = sa.select(col(HypervisorConnection.id)).where(col(HypervisorConnection.active).is_(True))
    if connection_id is not None:
        query = query.where(col(HypervisorConnection.id) == connection_id)
    return [int(i) for i in session.execute(query).scalars()]


def unregistered_vms(session: Session, connection_id: int | None = None) -> list[tuple[VM, str]]:
    query = (
        select(VM, HypervisorConnection.name)
        .join(HypervisorConnection, col(HypervisorConnection.id) == VM.connection_id)
        .where(col(VM.registered).is_(False), VM.lifecycle != Lifecycle.DECOMMISSIONED)
        .order_by(col(VM.id))
    )
    if connection_id is not None:
        query = query.where(VM.connection_id == connection_id)
    return [(vm, name) for vm, name in session.exec(query)]
