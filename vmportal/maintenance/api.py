"""Planned outages over HTTP (thin: every rule is in :mod:`vmportal.maintenance.service`).

The center announces, changes and cancels them; a unit's users list those touching their unit
(another unit's answers 404); the auditor reads them all.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlmodel import Session

from policies.roles import Actor
from vmportal.identity.deps import CurrentActor, CurrentWho, require
from vmportal.kit.http import SessionDep
from vmportal.kit.scope import CENTER
from vmportal.maintenance import service
from vmportal.maintenance.models import MaintenanceWindow, ScopeKind, WindowState
from vmportal.maintenance.schemas import (
    AffectedUnitOut,
    AffectedVMOut,
    CancelIn,
    WindowChange,
    WindowIn,
    WindowOut,
)

router = APIRouter(tags=["maintenance"])
WindowId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Maintenance window id")]


def window_out(session: Session, actor: Actor, window: MaintenanceWindow) -> WindowOut:
    v = service.view(session, actor, window)
    assert window.id is not None
    return WindowOut(
        id=window.id,
        title=window.title,
        reason=window.reason,
        scope=ScopeKind(window.scope),
        connection_id=window.connection_id,
        names=list(window.names),
        starts_at=window.starts_at,
        ends_at=window.ends_at,
        state=WindowState(window.state),
        current=v.current,
        emergency=bool(window.emergency_reason),
        emergency_reason=window.emergency_reason,
        notice_hours=window.notice_hours,
        announced_at=window.announced_at,
        changed_at=window.changed_at,
        cancelled_at=window.cancelled_at,
        cancel_reason=window.cancel_reason,
        vms=[AffectedVMOut(vm_id=r.vm_id, vm_name=r.vm_name, unit_id=r.unit_id) for r in v.vms],
        units=[
            AffectedUnitOut(unit_id=u.id or 0, unit_code=u.code, unit_name=u.name_zh, vms=n)
            for u, n in v.units
        ],
    )


@router.post(
    "/maintenance",
    response_model=WindowOut,
    status_code=201,
    dependencies=[require(*CENTER)],
    summary="Announce a planned outage (agreement §9): the affected units are worked out and mailed",
    description=(
        "Scope: `connection` (its active VMs), `cluster` or `host` (names, as the connection's inventory "
        "reports them), or `vms` (ids). Refusals: 422 naming the field (`ends_at` before `starts_at`, an "
        "unknown `connection_id`, `names` or `vm_ids`); 403 `maintenance_notice` when the start is closer "
        "than the center's notice period (setting `maintenance_notice_hours`, 72 h by default) and no "
        "`emergency_reason` is given."
    ),
)
def announce(body: WindowIn, session: SessionDep, actor: CurrentActor, who: CurrentWho) -> WindowOut:
    window = service.announce(
        session,
        actor,
        who,
        title=body.title,
        reason=body.reason,
        scope=body.scope,
        connection_id=body.connection_id,
        names=body.names,
        vm_ids=body.vm_ids,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        emergency_reason=body.emergency_reason,
    )
    return window_out(session, actor, window)


@router.get(
    "/maintenance",
    response_model=list[WindowOut],
    summary="Current and coming planned outages (a unit's users: those touching their unit)",
)
def list_windows(
    session: SessionDep, actor: CurrentActor, include_past: bool = False, include_cancelled: bool = False
) -> list[WindowOut]:
    windows = service.list_windows(
        session, actor, include_past=include_past, include_cancelled=include_cancelled
    )
    return [window_out(session, actor, w) for w in windows]


@router.get(
    "/maintenance/{window_id}", response_model=WindowOut, summary="One planned outage (another unit's: 404)"
)
def get_window(window_id: WindowId, session: SessionDep, actor: CurrentActor) -> WindowOut:
    return window_out(session, actor, service.get_window(session, actor, window_id))


@router.patch(
    "/maintenance/{window_id}",
    response_model=WindowOut,
    dependencies=[require(*CENTER)],
    summary="Change a planned outage's times or text (the affected units are mailed again)",
)
def change(
    window_id: WindowId, body: WindowChange, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> WindowOut:
    window = service.change(
        session,
        actor,
        who,
        window_id,
        title=body.title,
        reason=body.reason,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        emergency_reason=body.emergency_reason,
    )
    return window_out(session, actor, window)


@router.post(
    "/maintenance/{window_id}/cancel",
    response_model=WindowOut,
    dependencies=[require(*CENTER)],
    summary="Call a planned outage off (the affected units are mailed)",
)
def cancel(
    window_id: WindowId, body: CancelIn, session: SessionDep, actor: CurrentActor, who: CurrentWho
) -> WindowOut:
    return window_out(session, actor, service.cancel(session, actor, who, window_id, reason=body.reason))
