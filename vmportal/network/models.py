"""IP address pools and the addresses handed out from them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from vmportal.kit.db import UTCDateTime, utcnow


class IPPool(SQLModel, table=True):
    __tablename__ = "ip_pool"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, sa_column_kwargs={"unique": True}, nullable=False)
    cidr: str = Field(max_length=64)
    gateway: str = Field(max_length=64)
    dns: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    excluded: list[str] = Field(default_factory=list, sa_type=sa.JSON)  # addresses and ranges "a-b"
    network: str = Field(default="", max_length=200)  # port group / bridge the pool lives on
    connection_id: int | None = Field(default=None, foreign_key="hypervisor_connection.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class IPAllocation(SQLModel, table=True):
    """An address given to a VM. The partial unique index makes the database itself refuse a
    second live allocation of the same address, in any pool, whatever the code above it does
    (migration 0014; before it the index held per pool, and two overlapping pools handed one
    address to two VMs). Addresses are stored in ``ipaddress``'s canonical text, so one address
    has one spelling."""

    __tablename__ = "ip_allocation"
    __table_args__ = (
        sa.Index(
            "uq_ip_allocation_live_address",
            "address",
            unique=True,
            sqlite_where=sa.text("released_at IS NULL"),
            postgresql_where=sa.text("released_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    pool_id: int = Field(foreign_key="ip_pool.id", index=True)
    address: str = Field(max_length=64)
    request_id: int | None = Field(default=None, foreign_key="vm_request.id", index=True)
    vm_id: int | None = Field(default=None, foreign_key="vm.id", index=True)
    allocated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
