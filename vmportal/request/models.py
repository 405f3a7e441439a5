"""VM requests (虚拟机服务申请) and their lifecycle."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from vmportal.kit.db import UTCDateTime, utcnow


class RequestState(enum.StrEnum):
    SUBMITTED = "submitted"
    ENDORSED = "endorsed"
    APPROVED = "approved"
    REJECTED = "rejected"
    PROVISIONING = "provisioning"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class VMRequest(SQLModel, table=True):
    __tablename__ = "vm_request"

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    system_id: int | None = Field(default=None, foreign_key="information_system.id")
    requested_by: int = Field(foreign_key="user.id")
    state: str = Field(default=RequestState.SUBMITTED, max_length=20, index=True)

    # What the VM is for (policy "purpose"); copied from the request so the decision can be re-read.
    purpose: str = Field(max_length=20)
    beneficiary: str = Field(default="unit", max_length=10)
    system_name: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)

    hostname: str = Field(max_length=63)
    connection_id: int = Field(foreign_key="hypervisor_connection.id")
    template_ref: str = Field(max_length=200)
    template_name: str = Field(default="", max_length=200)
    vcpus: int
    memory_gib: int
    disk_gib: int
    pool_id: int | None = Field(default=None, foreign_key="ip_pool.id")

    submitted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    due_at: datetime = Field(sa_type=UTCDateTime, index=True)
    endorsed_by: int | None = Field(default=None, foreign_key="user.id")
    endorsed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: int | None = Field(default=None, foreign_key="user.id")
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decision_reason: str = Field(default="", max_length=2000)
    override_reason: str = Field(default="", max_length=2000)
    provisioning_attempts: int = 0
    failure_reason: str = Field(default="", max_length=2000)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # No foreign key: vm.request_id already points here, and a cycle of FKs cannot be created in order.
    vm_id: int | None = Field(default=None, index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ReminderKind(enum.StrEnum):
    """The provisioning-deadline reminders a request can receive, each at most once."""

    DUE_SOON = "due_soon"  # 48 h or less before the due time, to the center
    OVERDUE = "overdue"  # past the due time, to the center and the requesting unit's admin


class RequestReminder(SQLModel, table=True):
    """That a deadline reminder of a request was queued. The unique pair is the once-only guard: two
    beat runs (or a redelivered beat task) racing for the same reminder cannot both insert it. Kept
    apart from the ``notification`` row on purpose: sent mails are pruned after a retention period,
    and a request still overdue then must not be reminded again."""

    __tablename__ = "vm_request_reminder"
    __table_args__ = (sa.UniqueConstraint("request_id", "kind", name="uq_vm_request_reminder"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="vm_request.id")
    kind: str = Field(max_length=20)  # ReminderKind
    due_at: datetime = Field(sa_type=UTCDateTime)  # the due time the reminder was about
    queued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
