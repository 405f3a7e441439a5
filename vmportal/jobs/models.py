"""The transactional outbox: a task is a row written in the same transaction as the state change
that needs it, so a rolled-back change has no task and a committed one never loses its task."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from vmportal.kit.db import UTCDateTime, utcnow


class OutboxTask(SQLModel, table=True):
    __tablename__ = "outbox_task"

    id: int | None = Field(default=None, primary_key=True)
    task: str = Field(max_length=100)
    arguments: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    dispatched_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    attempts: int = 0
    last_error: str = Field(default="", max_length=2000)
    request_id: str = Field(default="", max_length=64)
