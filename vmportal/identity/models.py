"""Local accounts and bearer tokens."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from vmportal.kit.db import UTCDateTime, utcnow


class User(SQLModel, table=True):
    __tablename__ = "user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, sa_column_kwargs={"unique": True}, nullable=False)
    password_hash: str = Field(max_length=255)
    role: str = Field(max_length=20)  # policies.roles.Role
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    display_name: str = Field(default="", max_length=100)
    email: str = Field(default="", max_length=254)
    contact_id: int | None = Field(default=None, foreign_key="contact.id")
    active: bool = True
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AuthToken(SQLModel, table=True):
    """A bearer token; only its SHA-256 is stored, so a database leak yields no usable token."""

    __tablename__ = "auth_token"

    id: int | None = Field(default=None, primary_key=True)
    token_sha256: str = Field(max_length=64, sa_column_kwargs={"unique": True}, nullable=False)
    user_id: int = Field(foreign_key="user.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
