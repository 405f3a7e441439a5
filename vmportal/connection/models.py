"""Hypervisor connections registered by the center."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from vmportal.kit.db import EncryptedString, UTCDateTime, utcnow


class HypervisorConnection(SQLModel, table=True):
    __tablename__ = "hypervisor_connection"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, sa_column_kwargs={"unique": True}, nullable=False)
    kind: str = Field(max_length=20)  # hypervisors.HypervisorKind
    url: str = Field(max_length=500)
    username: str = Field(default="", max_length=200)
    token_id: str = Field(default="", max_length=200)
    secret: str | None = Field(default=None, sa_type=EncryptedString)
    verify_tls: bool = True
    ca_file: str | None = Field(default=None, max_length=500)
    defaults: dict[str, str] = Field(default_factory=dict, sa_type=sa.JSON)
    active: bool = True
    last_check_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_check_ok: bool | None = None
    last_check_message: str = Field(default="", max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
