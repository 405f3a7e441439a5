"""Every query of the clean-up domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from vmportal.cleanup.models import (
    CampaignState,
    CleanupCampaign,
    CleanupItem,
    CleanupReminder,
    ItemKind,
    ItemStatus,
)
from vmportal.unit.models import InformationSystem, Unit
from vmportal.vm.models import VM, Lifecycle

# ---- campaigns ------------------------------------------------------------------------------------


def get_campaign(session: Session, campaign_id: int) -> CleanupCampaign | None:
    return session.get(CleanupCampaign, campaign_id)


def lock_campaign(session: Session, campaign_id: int) -> CleanupCampaign | None:
    """The campaign, its row locked until the transaction ends (PostgreSQL; SQLite has one writer)."""
    return session.exec(
        select(CleanupCampaign).where(CleanupCampaign.id == campaign_id).with_for_update()
    ).first()


def list_campaigns(session: Session) -> list[CleanupCampaign]:
    return list(session.exec(select(CleanupCampaign).order_by(col(CleanupCampaign.id).desc())))


def active_campaign(session: Session) -> CleanupCampaign | None:
    return session.exec(select(CleanupCampaign).where(col(CleanupCampaign.active_slot).is_not(None))).first()


def campaigns_past_deadline(session: Session, now: datetime) -> list[int]:
    """Open campaigns whose deadline has come (the deadline step's work)."""
    rows = session.exec(
        select(CleanupCampaign.id).where(
            CleanupCampaign.state == CampaignState.OPEN, CleanupCampaign.deadline_at <= now
        )
    )
    return [n for n in rows if n is not None]


def open_campaigns(session: Session) -> list[CleanupCampaign]:
    return list(session.exec(select(CleanupCampaign).where(CleanupCampaign.state == CampaignState.OPEN)))


def latest_judged(session: Session) -> CleanupCampaign | None:
    """The latest campaign whose deadline step has run (past its deadline, or closed)."""
    return session.exec(
        select(CleanupCampaign)
        .where(col(CleanupCampaign.deadline_processed_at).is_not(None))
        .order_by(col(CleanupCampaign.deadline_at).desc(), col(CleanupCampaign.id).desc())
    ).first()


# ---- what a campaign asks about ---------------------------------------------------------------------


def active_units(session: Session) -> list[Unit]:
    return list(session.exec(select(Unit).where(col(Unit.active).is_(True)).order_by(col(Unit.id))))


def unit_vms(session: Session, unit_id: int) -> list[VM]:
    """A unit's VMs that exist (lifecycle active, registered to it)."""
    return list(
        session.exec(
            select(VM)
            .where(VM.unit_id == unit_id, VM.lifecycle == Lifecycle.ACTIVE, col(VM.registered).is_(True))
            .order_by(col(VM.id))
        )
    )


def get_vm(session: Session, vm_id: int) -> VM | None:
    return session.get(VM, vm_id)


def get_system(session: Session, system_id: int) -> InformationSystem | None:
    return session.get(InformationSystem, system_id)


def systems_of(session: Session, unit_id: int) -> list[InformationSystem]:
    return list(
        session.exec(
            select(InformationSystem)
            .where(InformationSystem.unit_id == unit_id)
            .order_by(col(InformationSystem.id))
        )
    )


# ---- items -------------------------------------------------------------------------------------------


def get_item(session: Session, item_id: int) -> CleanupItem | None:
    return session.get(CleanupItem, item_id)


def lock_item(session: Session, item_id: int) -> CleanupItem | None:
    return session.exec(select(CleanupItem).where(CleanupItem.id == item_id).with_for_update()).first()


def list_items(
    session: Session,
    campaign_id: int,
    *,
    unit_id: int | None = None,
    kinds: Sequence[str] = (),
    statuses: Sequence[str] = (),
    actions: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[CleanupItem]:
    statement = select(CleanupItem).where(CleanupItem.campaign_id == campaign_id)
    if unit_id is not None:
        statement = statement.where(CleanupItem.unit_id == unit_id)
    if kinds:
        statement = statement.where(col(CleanupItem.kind).in_(list(kinds)))
    if statuses:
        statement = statement.where(col(CleanupItem.status).in_(list(statuses)))
    if actions is not None:
        statement = statement.where(col(CleanupItem.action).in_(list(actions)))
    statement = statement.order_by(col(CleanupItem.unit_id), col(CleanupItem.kind), col(CleanupItem.id))
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.exec(statement))


def items_of_target(session: Session, campaign_id: int, kind: ItemKind, target_id: int) -> list[CleanupItem]:
    return list(
        session.exec(
            select(CleanupItem).where(
                CleanupItem.campaign_id == campaign_id,
                CleanupItem.kind == kind,
                CleanupItem.target_id == target_id,
            )
        )
    )


def counts(session: Session, campaign_id: int, unit_id: int | None = None) -> list[tuple[int, str, str, int]]:
    """(unit_id, kind, status, how many) of a campaign's items."""
    statement = (
        sa.select(col(CleanupItem.unit_id), col(CleanupItem.kind), col(CleanupItem.status), func.count())
        .where(col(CleanupItem.campaign_id) == campaign_id)
        .group_by(col(CleanupItem.unit_id), col(CleanupItem.kind), col(CleanupItem.status))
    )
    if unit_id is not None:
        statement = statement.where(col(CleanupItem.unit_id) == unit_id)
    return [(int(u), str(k), str(s), int(n)) for u, k, s, n in session.execute(statement)]


def units_with_pending(session: Session, campaign_id: int) -> list[int]:
    return [
        int(u)
        for u in session.execute(
            sa.select(col(CleanupItem.unit_id))
            .where(col(CleanupItem.campaign_id) == campaign_id, col(CleanupItem.status) == ItemStatus.PENDING)
            .group_by(col(CleanupItem.unit_id))
            .order_by(col(CleanupItem.unit_id))
        ).scalars()
    ]


# ---- reminders ---------------------------------------------------------------------------------------


def reminded(session: Session, campaign_id: int, unit_id: int, kind: str) -> bool:
    return (
        session.exec(
            select(CleanupReminder.id).where(
                CleanupReminder.campaign_id == campaign_id,
                CleanupReminder.unit_id == unit_id,
                CleanupReminder.kind == kind,
            )
        ).first()
        is not None
    )
