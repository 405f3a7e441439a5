"""The append-only, hash-chained audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from vmportal.kit.db import UTCDateTime, utcnow


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    actor_id: int | None = Field(default=None)  # no FK: the log outlives users
    actor: str = Field(max_length=100)  # username, or "system", or "alert-source:<name>"
    actor_role: str = Field(default="", max_length=20)
    unit_id: int | None = Field(default=None, index=True)
    action: str = Field(max_length=64, index=True)
    target_type: str = Field(max_length=40)
    target_id: str = Field(max_length=64)
    before: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    result: str = Field(default="ok", max_length=20)  # ok | denied | failed
    detail: str = Field(default="", max_length=2000)
    request_id: str = Field(default="", max_length=64)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """A single row holding the chain's tip. Appending locks it, so concurrent writers on
    PostgreSQL cannot both link to the same predecessor and fork the chain."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    last_id: int = 0
    last_hash: str = Field(default="0" * 64, max_length=64)
