"""VMs the portal governs, their one-time credentials and the power operations on them."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from vmportal.kit.db import EncryptedString, UTCDateTime, utcnow


class Lifecycle(enum.StrEnum):
    PROVISIONING = "provisioning"  # row written before the clone, so a retried task resumes it
    ACTIVE = "active"
    DECOMMISSIONED = "decommissioned"
    MISSING = "missing"  # deleted on the hypervisor behind the portal's back (found by a sync)


class VM(SQLModel, table=True):
    __tablename__ = "vm"
    __table_args__ = (
        sa.UniqueConstraint("connection_id", "hypervisor_ref", name="uq_vm_connection_ref"),
        # "List my VMs": a unit's active VMs in id order, straight from the index.
        sa.Index("ix_vm_unit_lifecycle_id", "unit_id", "lifecycle", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)  # None: unregistered
    system_id: int | None = Field(default=None, foreign_key="information_system.id", index=True)
    request_id: int | None = Field(default=None, foreign_key="vm_request.id")
    connection_id: int = Field(foreign_key="hypervisor_connection.id", index=True)
    hypervisor_ref: str = Field(max_length=200)
    name: str = Field(max_length=200)
    hostname: str = Field(default="", max_length=63)
    template_name: str = Field(default="", max_length=200)
    vcpus: int = 0
    memory_gib: int = 0
    disk_gib: int = 0
    ip_address: str | None = Field(default=None, max_length=64, index=True)
    ips: list[str] = Field(default_factory=list, sa_type=sa.JSON)  # from inventory
    macs: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    admin_account: str = Field(default="", max_length=64)
    power_state: str = Field(default="unknown", max_length=20)  # hypervisors.PowerState
    network_connected: bool = True
    security_state: str = Field(default="normal", max_length=30)  # policies.power.SecurityState
    lifecycle: str = Field(default=Lifecycle.ACTIVE, max_length=20, index=True)
    registered: bool = True  # False: found on a hypervisor, not yet assigned to a unit
    # Set by the center (incidents.service.set_protected): an alert never contains it automatically.
    protected: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    synced_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decommissioned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = 0  # bumped on every change of power or security state (compare-and-set)
    # The VM as the API shows it (VMOut's JSON), written by a PostgreSQL trigger on every insert and
    # update (migration 0004) for the read path of vmportal/vm/reads.py; NULL on SQLite. Never set
    # from Python.
    api_json: str | None = Field(default=None, sa_type=sa.Text)


class DeliveryCredential(SQLModel, table=True):
    """The initial password between provisioning and its one fetch (agreement §4).

    The password is encrypted while it waits and erased (set NULL) in the transaction that
    answers the fetch; the row stays as the record that it was fetched, by whom and when.
    """

    __tablename__ = "delivery_credential"

    vm_id: int = Field(foreign_key="vm.id", primary_key=True)
    account: str = Field(max_length=64)
    password: str | None = Field(default=None, sa_type=EncryptedString)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    fetched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    fetched_by: int | None = Field(default=None, foreign_key="user.id")


class PowerOpState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PowerOperation(SQLModel, table=True):
    __tablename__ = "power_operation"

    id: int | None = Field(default=None, primary_key=True)
    vm_id: int = Field(foreign_key="vm.id", index=True)
    action: str = Field(max_length=20)  # hypervisors.PowerAction
    requested_by: int | None = Field(default=None, foreign_key="user.id")  # None: the portal itself
    reason: str = Field(default="", max_length=500)
    state: str = Field(default=PowerOpState.PENDING, max_length=20)
    power_before: str = Field(default="", max_length=20)
    power_after: str = Field(default="", max_length=20)
    error: str = Field(default="", max_length=2000)
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
