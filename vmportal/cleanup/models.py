"""A clean-up campaign, the items each unit confirms or corrects in it, and the reminders sent for it."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from vmportal.kit.db import UTCDateTime, utcnow


class CampaignState(enum.StrEnum):
    OPEN = "open"  # units confirm or correct their items
    DEADLINE_PASSED = "deadline_passed"  # the deadline step ran: the unconfirmed are listed for the center
    CLOSED = "closed"  # the center closed it; nothing changes any more


class ItemKind(enum.StrEnum):
    VM = "vm"  # target_id: vm.id
    SYSTEM = "system"  # target_id: information_system.id
    DOMAIN = "domain"  # target_id: the information system whose domain it is; ``domain`` names it


class ItemStatus(enum.StrEnum):
    PENDING = "pending"  # not confirmed yet ("unconfirmed" once the deadline has passed)
    CONFIRMED = "confirmed"  # still in use, as registered
    CORRECTED = "corrected"  # still in use, with the unit's corrections applied
    RETIRED = "retired"  # no longer needed: a system or domain removed, a VM handed back to the center


class ItemAction(enum.StrEnum):
    """What the center did to an unconfirmed (or retired) VM after the deadline."""

    NONE = ""
    POWERED_OFF = "powered_off"
    DECOMMISSIONED = "decommissioned"


class ReminderKind(enum.StrEnum):
    WEEK = "week"  # 7 days or less before the deadline
    DAY = "day"  # 24 hours or less before the deadline
    DEADLINE = "deadline"  # the deadline passed with items unconfirmed


class CleanupCampaign(SQLModel, table=True):
    __tablename__ = "cleanup_campaign"
    __table_args__ = (sa.UniqueConstraint("active_slot", name="uq_cleanup_campaign_active_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    deadline_at: datetime = Field(sa_type=UTCDateTime)
    grace_days: int = 14
    state: str = Field(default=CampaignState.OPEN, max_length=20, index=True)
    #: 1 while the campaign is not closed, NULL once it is: the unique constraint lets one campaign at
    #: a time be open (NULLs are distinct on SQLite and PostgreSQL), even under concurrent openings.
    active_slot: int | None = Field(default=1)
    opened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    opened_by: int | None = Field(default=None, foreign_key="user.id")
    deadline_processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by: int | None = Field(default=None, foreign_key="user.id")


class CleanupItem(SQLModel, table=True):
    """One VM, information system or domain a unit is asked to confirm in a campaign.

    ``target_id`` carries no foreign key on purpose: a system a unit retires is deleted, and the
    item stays as the record of what was asked and answered (``label`` is its snapshot)."""

    __tablename__ = "cleanup_item"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "kind", "target_id", "domain", name="uq_cleanup_item"),
        sa.Index("ix_cleanup_item_campaign_unit_status", "campaign_id", "unit_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="cleanup_campaign.id")
    unit_id: int = Field(foreign_key="unit.id", index=True)
    kind: str = Field(max_length=10)
    target_id: int
    domain: str = Field(default="", max_length=253)
    label: str = Field(max_length=300)
    status: str = Field(default=ItemStatus.PENDING, max_length=20)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: int | None = Field(default=None, foreign_key="user.id")
    via: str = Field(default="", max_length=20)  # api | page | register (附件4) | center
    note: str = Field(default="", max_length=500)
    changes: dict[str, object] | None = Field(default=None, sa_type=sa.JSON)
    action: str = Field(default=ItemAction.NONE, max_length=20)
    action_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CleanupReminder(SQLModel, table=True):
    """A reminder queued for a unit in a campaign, once per kind (the row, not the mail, is the record)."""

    __tablename__ = "cleanup_reminder"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "unit_id", "kind", name="uq_cleanup_reminder"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="cleanup_campaign.id")
    unit_id: int = Field(foreign_key="unit.id")
    kind: str = Field(max_length=20)
    queued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
