"""Every query of the maintenance domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from policies.roles import Actor
from vmportal.kit.scope import sees_every_unit, unit_conditions
from vmportal.maintenance.models import MaintenanceVM, MaintenanceWindow, WindowState
from vmportal.unit.models import Unit
from vmportal.vm.models import VM, Lifecycle

# ---- the inventory the scope is worked out from ----------------------------------------------------


def active_vms_of_connection(session: Session, connection_id: int) -> list[VM]:
    return list(
        session.exec(
            select(VM)
            .where(VM.connection_id == connection_id, VM.lifecycle == Lifecycle.ACTIVE)
            .order_by(col(VM.id))
        )
    )


def vms_by_ids(session: Session, vm_ids: Sequence[int]) -> list[VM]:
    if not vm_ids:
        return []
    return list(session.exec(select(VM).where(col(VM.id).in_(list(vm_ids))).order_by(col(VM.id))))


def units_by_ids(session: Session, unit_ids: Sequence[int]) -> dict[int, Unit]:
    if not unit_ids:
        return {}
    rows = session.exec(select(Unit).where(col(Unit.id).in_(list(unit_ids))))
    return {u.id: u for u in rows if u.id is not None}


# ---- windows ----------------------------------------------------------------------------------------


def lock_window(session: Session, window_id: int) -> MaintenanceWindow | None:
    """The window, its row locked until the transaction ends (PostgreSQL; SQLite has one writer)."""
    return session.exec(
        select(MaintenanceWindow).where(MaintenanceWindow.id == window_id).with_for_update()
    ).first()


def _touching(actor: Actor) -> list[Any]:
    """For a unit's people: windows with at least one of their unit's VMs (kit.scope's rule)."""
    if sees_every_unit(actor.role):
        return []
    affected = select(MaintenanceVM.window_id).where(*unit_conditions(actor, MaintenanceVM.unit_id))
    return [col(MaintenanceWindow.id).in_(affected)]


def visible_window(session: Session, actor: Actor, window_id: int) -> MaintenanceWindow | None:
    return session.exec(
        select(MaintenanceWindow).where(MaintenanceWindow.id == window_id, *_touching(actor))
    ).first()


def list_windows(
    session: Session, actor: Actor, *, now: datetime, include_past: bool, include_cancelled: bool
) -> list[MaintenanceWindow]:
    """The windows the actor may see, the soonest first; by default those not over yet."""
    statement = select(MaintenanceWindow).where(*_touching(actor))
    if not include_past:
        statement = statement.where(MaintenanceWindow.ends_at > now)
    if not include_cancelled:
        statement = statement.where(MaintenanceWindow.state == WindowState.SCHEDULED)
    return list(session.exec(statement.order_by(col(MaintenanceWindow.starts_at), col(MaintenanceWindow.id))))


def affected(session: Session, window_id: int, actor: Actor | None = None) -> list[MaintenanceVM]:
    """The VMs a window affects (with ``actor``: those of the actor's unit only, for a unit)."""
    statement = select(MaintenanceVM).where(MaintenanceVM.window_id == window_id)
    if actor is not None:
        statement = statement.where(*unit_conditions(actor, MaintenanceVM.unit_id))
    return list(session.exec(statement.order_by(col(MaintenanceVM.vm_id))))


def current_for_vm(session: Session, vm_id: int, now: datetime) -> list[MaintenanceWindow]:
    """The scheduled windows affecting ``vm_id`` that are under way at ``now``."""
    return list(
        session.exec(
            select(MaintenanceWindow)
            .join(MaintenanceVM, col(MaintenanceVM.window_id) == col(MaintenanceWindow.id))
            .where(
                MaintenanceVM.vm_id == vm_id,
                MaintenanceWindow.state == WindowState.SCHEDULED,
                MaintenanceWindow.starts_at <= now,
                MaintenanceWindow.ends_at > now,
            )
            .order_by(col(MaintenanceWindow.starts_at))
        )
    )


def windows_starting(session: Session, after: datetime, until: datetime) -> list[int]:
    """The scheduled windows starting after ``after`` and at the latest at ``until`` (the reminders'
    look-ahead), the soonest first; one indexed range read when none is."""
    return [
        int(i)
        for i in session.exec(
            select(MaintenanceWindow.id)
            .where(
                MaintenanceWindow.state == WindowState.SCHEDULED,
                MaintenanceWindow.starts_at > after,
                MaintenanceWindow.starts_at <= until,
            )
            .order_by(col(MaintenanceWindow.starts_at), col(MaintenanceWindow.id))
        )
        if i is not None
    ]
