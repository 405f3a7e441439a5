"""A planned outage the center announces (agreement §9) and the VMs it was worked out to affect."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from vmportal.kit.db import UTCDateTime, utcnow


class ScopeKind(enum.StrEnum):
    CONNECTION = "connection"  # every active VM of a hypervisor connection
    CLUSTER = "cluster"  # the VMs the connection reports in the named clusters
    HOST = "host"  # the VMs the connection reports on the named hosts (Proxmox: nodes)
    VMS = "vms"  # the VMs named by id


class WindowState(enum.StrEnum):
    SCHEDULED = "scheduled"  # announced; current while starts_at <= now < ends_at
    CANCELLED = "cancelled"  # called off (the units were told)


class MaintenanceWindow(SQLModel, table=True):
    __tablename__ = "maintenance_window"
    __table_args__ = (sa.Index("ix_maintenance_window_state_ends", "state", "ends_at"),)

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    reason: str = Field(max_length=2000)
    scope: str = Field(max_length=20)  # ScopeKind
    connection_id: int | None = Field(default=None, foreign_key="hypervisor_connection.id")
    #: The clusters or hosts named (scope cluster/host), as the center wrote them.
    names: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    state: str = Field(default=WindowState.SCHEDULED, max_length=20)
    #: Set when announced inside the notice period: why the rule maintenance_notice was overridden.
    emergency_reason: str = Field(default="", max_length=1000)
    notice_hours: int = 72  # the notice period in force when announced (center setting)
    announced_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    announced_by: int | None = Field(default=None, foreign_key="user.id")
    changed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancel_reason: str = Field(default="", max_length=1000)


class MaintenanceVM(SQLModel, table=True):
    """One VM the outage affects, worked out from the inventory when announced (a snapshot: the
    units mailed are the units of these rows)."""

    __tablename__ = "maintenance_vm"
    __table_args__ = (sa.Index("ix_maintenance_vm_vm", "vm_id"),)

    window_id: int = Field(foreign_key="maintenance_window.id", primary_key=True)
    vm_id: int = Field(foreign_key="vm.id", primary_key=True)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)  # None: unregistered
    vm_name: str = Field(max_length=200)
