"""The notification outbox: an e-mail rendered by the domain that reports the event, waiting to be sent.

Mail knows no domain: ``related_type``/``related_id`` and ``kind`` are the reporter's words, kept for
the center's view and for the hooks a domain registers on delivery (``mail.service.on_delivered``).
"""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from vmportal.kit.db import UTCDateTime, utcnow


class NotificationState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # gave up after the last attempt


class Notification(SQLModel, table=True):
    """An e-mail waiting to be sent (an outbox of its own: delivery retries never delay containment)."""

    __tablename__ = "notification"

    id: int | None = Field(default=None, primary_key=True)
    to: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    cc: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    subject: str = Field(max_length=500)
    body: str = Field(sa_type=sa.Text)
    kind: str = Field(default="", max_length=40)  # containment | rectification_decision | finding | …
    related_type: str = Field(default="", max_length=40)
    related_id: str = Field(default="", max_length=64)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    dedup_key: str | None = Field(default=None, max_length=200, sa_column_kwargs={"unique": True})
    state: str = Field(default=NotificationState.PENDING, max_length=20, index=True)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    last_error: str = Field(default="", max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
