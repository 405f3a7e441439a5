"""The VM domain's queries: every select, lock and count over VMs, their credentials and power
operations lives here (the SQL read path of the VM list in :mod:`vmportal.vm.repository.sql`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Session, col, func, or_, select, update

from policies.roles import Actor
from vmportal.identity.models import User
from vmportal.kit import db
from vmportal.kit.scope import unit_conditions
from vmportal.unit.models import Unit
from vmportal.vm.models import VM, DeliveryCredential, Lifecycle, PowerOperation, PowerOpState
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


def id_by_name(session: Session, connection_id: int, unit_id: int, name: str) -> int | None:
    """The id of the unit's VM named ``name`` on the connection, whatever its lifecycle (the demo
    data's natural key)."""
    return session.exec(
        select(VM.id).where(VM.connection_id == connection_id, VM.unit_id == unit_id, VM.name == name)
    ).first()


def an_active_ref(session: Session, connection_id: int) -> str | None:
    """The hypervisor reference of some active VM of the connection (any one; None when it has
    none): a VM the worker's warm-up can read to open the connection's session."""
    ref = session.exec(
        select(col(VM.hypervisor_ref))
        .where(col(VM.connection_id) == connection_id, col(VM.lifecycle) == Lifecycle.ACTIVE.value)
        .limit(1)
    ).first()
    return str(ref) if ref else None


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


# The list's sort keys and filters, stated once: the ORM conditions below and the SQL text of
# :mod:`vmportal.vm.repository.sql` are both compiled from these two tables, so a filter added or
# changed here reaches both paths (tests/api/test_vm_reads.py compares their answers on PostgreSQL).
SORT_COLUMNS: dict[str, str] = {
    "id": "id",
    "name": "name",
    "created_at": "created_at",
    "ip_address": "ip_address",
}


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class VMFilter:
    """One filter of the list: the VM columns it tests, how (``eq``: the column equals the value;
    ``contains``: any of the columns contains the text, case-insensitively, ``\\`` escaping), and
    the value it takes from the filters (None: the filter is not set)."""

    columns: tuple[str, ...]
    match: Literal["eq", "contains"]
    value: Callable[[VMFilters], Any]


def _enum_value(value: Any) -> Any:
    return None if value is None else value.value


FILTERS: dict[str, VMFilter] = {
    "unit_id": VMFilter(("unit_id",), "eq", lambda f: f.unit_id),
    "power_state": VMFilter(("power_state",), "eq", lambda f: _enum_value(f.power_state)),
    "security_state": VMFilter(("security_state",), "eq", lambda f: _enum_value(f.security_state)),
    "lifecycle": VMFilter(
        ("lifecycle",), "eq", lambda f: None if f.lifecycle is LifecycleFilter.ALL else f.lifecycle.value
    ),
    "q": VMFilter(
        ("name", "hostname", "ip_address"),
        "contains",
        lambda f: f"%{escape_like(f.q.strip())}%" if f.q else None,
    ),
}


def filter_values(filters: VMFilters) -> dict[str, Any]:
    """The set filters and their bound values, in the order of :data:`FILTERS`."""
    values = {name: spec.value(filters) for name, spec in FILTERS.items()}
    return {name: value for name, value in values.items() if value is not None}


def vm_conditions(actor: Actor, filters: VMFilters) -> list[Any]:
    # Unit scoping lives in the query itself (kit.scope's rule): a unit's users never receive
    # another unit's rows.
    conditions: list[Any] = unit_conditions(actor, col(VM.unit_id))
    for name, value in filter_values(filters).items():
        spec = FILTERS[name]
        columns = [col(getattr(VM, column)) for column in spec.columns]
        if spec.match == "eq":
            conditions.extend(column == value for column in columns)
        else:
            conditions.append(or_(*(column.ilike(value, escape="\\") for column in columns)))
    return conditions


def list_vms(session: Session, actor: Actor, filters: VMFilters) -> tuple[list[VMRow], int]:
    """One page of the VMs the actor may see, with the total, in a single query (the total is a
    window count over the filtered rows; only a page past the end needs a second, counting query)."""
    conditions = vm_conditions(actor, filters)
    key = filters.sort.value.lstrip("-")
    column = col(getattr(VM, SORT_COLUMNS[key]))
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


# ---- power operations ---------------------------------------------------------------------------

#: An operation still to run or running: its VM may still change because of it.
UNFINISHED_OPS: tuple[str, ...] = (PowerOpState.PENDING, PowerOpState.RUNNING)


def operations_page(
    session: Session, vm_id: int, *, limit: int, offset: int
) -> tuple[list[tuple[PowerOperation, str | None]], int]:
    """One page of the VM's power history, newest first, each with the requester's username, and
    the history's length (one query: the count rides along as a window; a page past the end
    counts separately)."""
    stmt = (
        select(PowerOperation, User.username, func.count().over())
        .outerjoin(User, col(User.id) == col(PowerOperation.requested_by))
        .where(col(PowerOperation.vm_id) == vm_id)
        .order_by(col(PowerOperation.id).desc())
        .limit(limit)
        .offset(offset)
    )
    rows = session.exec(stmt).all()
    if rows:
        total = int(rows[0][2])
    else:
        total = int(
            session.exec(
                select(func.count()).select_from(PowerOperation).where(col(PowerOperation.vm_id) == vm_id)
            ).one()
        )
    return [(op, username) for op, username, _ in rows], total


def operation_with_owner(
    session: Session, operation_id: int
) -> tuple[PowerOperation, str | None, int | None] | None:
    """The operation, its requester's username and its VM's unit (for the caller's scoping)."""
    row = session.exec(
        select(PowerOperation, User.username, VM.unit_id)
        .join(VM, col(VM.id) == col(PowerOperation.vm_id))
        .outerjoin(User, col(User.id) == col(PowerOperation.requested_by))
        .where(col(PowerOperation.id) == operation_id)
    ).first()
    return (row[0], row[1], row[2]) if row is not None else None


def has_unfinished_operation(session: Session, vm_id: int) -> bool:
    """Whether an operation on the VM is queued or running."""
    queued = session.exec(
        select(func.count())
        .select_from(PowerOperation)
        .where(col(PowerOperation.vm_id) == vm_id, col(PowerOperation.state).in_(UNFINISHED_OPS))
    ).one()
    return bool(queued)


def earliest_unfinished_operation(session: Session, vm_id: int, *, up_to: int) -> PowerOperation | None:
    """The VM's oldest unfinished operation with id <= ``up_to``, re-read from the database (the
    caller holds the VM's lock, so operations are taken in the order they were requested)."""
    return session.exec(
        select(PowerOperation)
        .where(
            col(PowerOperation.vm_id) == vm_id,
            col(PowerOperation.id) <= up_to,
            col(PowerOperation.state).in_(UNFINISHED_OPS),
        )
        .order_by(col(PowerOperation.id))
        .limit(1)
        .execution_options(populate_existing=True)
    ).first()


def unfinished_operations(session: Session, vm_id: int) -> list[PowerOperation]:
    """Every operation on the VM still queued or running."""
    return list(
        session.exec(
            select(PowerOperation).where(
                col(PowerOperation.vm_id) == vm_id, col(PowerOperation.state).in_(UNFINISHED_OPS)
            )
        ).all()
    )


def order_power_requests(session: Session, vm_id: int, namespace: int) -> None:
    """Serialise power requests on one VM until the transaction ends, so that operation ids are
    handed out in commit order (PostgreSQL's advisory lock; SQLite already has one writer)."""
    if db.is_postgres(session):
        session.exec(
            sa.text("SELECT pg_advisory_xact_lock(:ns, :vm)"),  # type: ignore[call-overload]
            params={"ns": namespace, "vm": vm_id},
        )


def release_operation(session: Session, op_id: int, error: str) -> None:
    """Hand a running operation back to the queue (the hypervisor was temporarily unavailable);
    only if it is still running, so a finished one is never reopened."""
    session.exec(
        update(PowerOperation)
        .where(col(PowerOperation.id) == op_id, col(PowerOperation.state) == PowerOpState.RUNNING)
        .values(state=PowerOpState.PENDING, error=error[:2000])
    )
