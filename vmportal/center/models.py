"""Center-wide settings changed at run time by a center_admin (e.g. endorsement on/off)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from vmportal.kit.db import UTCDateTime, utcnow


class CenterSetting(SQLModel, table=True):
    __tablename__ = "center_setting"

    key: str = Field(max_length=64, primary_key=True)
    value: Any = Field(sa_type=sa.JSON)
    updated_by: int | None = Field(default=None, foreign_key="user.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
