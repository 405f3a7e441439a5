"""The VM domain's queries: every select, lock and count over VMs, their credentials and power
operations lives here (the SQL read path of the VM list in :mod:`vmportal.vm.repository.sql`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, func, or_, select, update

from policies.roles import Actor
from vmportal.kit.scope import sees_every_unit
from vmportal.unit.models import Unit
from vmportal.vm.models import VM, DeliveryCredential, Lifecycle
from vmportal.vm.schemas import LifecycleFilter, VMFilters


def get(session: Session, vm_id: int) -> VM | None:
    """The VM with this id, whatever its lifecycle (None when there is none)."""
    return session.get(VM, vm_id)


def placeholders(session: Session, request_id: int) -> list[VM]:
    """The VM rows written for a request before its clone (lifecycle ``provisioning``), oldest first:
    a retried provisioning task resumes the first instead of cloning again."""
    statement = (
        select(VM).where(VM.request_id == request_id, VM.lifecycle == Lifecycle.PROVISIONING).order_by(VM.id)  # type: ignore[arg-type]
    )
    return list(session.exec(statement).all())


def credential(session: Session, vm_id: int) -> DeliveryCredential | None:
    """The VM's one-time delivery credential (rule credentials_once), None when it has none."""
    return session.get(DeliveryCredential, vm_id)


def by_ref(session: Session, connection_id: int, ref: str, *, other_than: int | None = None) -> VM | None:
    """The VM a connection knows by this hypervisor reference (unique per connection), leaving out
    the VM ``other_than`` (the placeholder about to take the reference)."""
    statement = select(VM).where(VM.connection_id == connection_id, VM.hypervisor_ref == ref)
    if other_than is not None:
        statement = statement.where(VM.id != other_than)
    return session.exec(statement).first()


def erase_credential(session: Session, vm_id: int, *, fetched_by: int | None, at: datetime) -> bool:
    """Erase the waiting password and record the fetch, by compare-and-set on ``fetched_at IS NULL``:
    of two simultaneous fetches one gets True, the other False (the password is given once)."""
    result = session.exec(
        update(DeliveryCredential)
        .where(col(DeliveryCredential.vm_id) == vm_id, col(DeliveryCredential.fetched_at).is_(None))
        .values(password=None, fetched_at=at, fetched_by=fetched_by)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)


# ---- the VM list (the ORM path; the SQL path of vmportal.vm.repository.sql derives from the same
# filters) and the VM lock ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VMRow:
    vm: VM
    unit_code: str | None
    unit_name: str | None


_SORT_COLUMNS: dict[str, Any] = {
    "id": VM.id,
    "name": VM.name,
    "created_at": VM.created_at,
    "ip_address": VM.ip_address,
}


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def vm_conditions(actor: Actor, filters: VMFilters) -> list[Any]:
    conditions: list[Any] = []
    if not sees_every_unit(actor.role):
        # Unit scoping lives in the query itself (kit.scope's rule): a unit's users never receive
        # another unit's rows. A unit user with no unit sees nothing (NULL matches no row).
        conditions.append(col(VM.unit_id) == actor.unit_id)
    if filters.unit_id is not None:
        conditions.append(col(VM.unit_id) == filters.unit_id)
    if filters.power_state is not None:
        conditions.append(col(VM.power_state) == filters.power_state.value)
    if filters.security_state is not None:
        conditions.append(col(VM.security_state) == filters.security_state.value)
    if filters.lifecycle is not LifecycleFilter.ALL:
        conditions.append(col(VM.lifecycle) == filters.lifecycle.value)
    if filters.q:
        pattern = f"%{escape_like(filters.q.strip())}%"
        conditions.append(
            or_(
                col(VM.name).ilike(pattern, escape="\\"),
                col(VM.hostname).ilike(pattern, escape="\\"),
                col(VM.ip_address).ilike(pattern, escape="\\"),
            )
        )
    return conditions


def list_vms(session: Session, actor: Actor, filters: VMFilters) -> tuple[list[VMRow], int]:
    """One page of the VMs the actor may see, with the total, in a single query (the total is a
    window count over the filtered rows; only a page past the end needs a second, counting query)."""
    conditions = vm_conditions(actor, filters)
    key = filters.sort.value.lstrip("-")
    column = _SORT_COLUMNS[key]
    descending = filters.sort.value.startswith("-")
    order = [column.desc() if descending else column.asc()]
    if key != "id":
        order.append(col(VM.id).desc() if descending else col(VM.id).asc())  # stable pages
    stmt = (
        select(VM, Unit.code, Unit.name_zh, func.count().over().label("total"))
        .outerjoin(Unit, col(Unit.id) == col(VM.unit_id))
        .where(*conditions)
        .order_by(*order)
        .limit(filters.limit)
        .offset(filters.offset)
    )
    rows = session.exec(stmt).all()
    if rows:
        total = int(rows[0][3])
    elif filters.offset:
        total = int(session.exec(select(func.count()).select_from(VM).where(*conditions)).one())
    else:
        total = 0
    return [VMRow(vm, code, name) for vm, code, name, _ in rows], total


def lock_vm(session: Session, vm_id: int) -> VM | None:
    """Re-read the VM with its row locked until the caller's transaction ends (PostgreSQL; SQLite's
    ``BEGIN IMMEDIATE`` already gives the transaction the database's single write lock).

    Whoever changes a VM's power, network or security state takes this lock first, so those changes
    and the adapter calls behind them happen one at a time per VM.
    """
    stmt = (
        select(VM)
        .where(col(VM.id) == vm_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    return session.exec(stmt).first()
