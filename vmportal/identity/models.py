"""Accounts (local, or vouched for by the campus CAS or the center's LDAP), bearer tokens, and the
CAS service tickets that opened a session (for single log-out)."""

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
    # The client address whose failures imposed the lock: the lock holds for that address only, so
    # a flood from one address cannot shut the account out everywhere (issue 13). None = everywhere.
    locked_address: str | None = Field(default=None, max_length=45)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Who vouches for the account: "local" (its own password; unit accounts made from the registry
    # and the break-glass admin), "ldap" or "cas" (a center account a directory group or the
    # configured CAS list grants; no usable password, role refreshed at each log-in, LDAP sync
    # deactivates it when the directory no longer knows the person).
    auth_source: str = Field(default="local", max_length=10, sa_column_kwargs={"server_default": "local"})


class AuthToken(SQLModel, table=True):
    """A bearer token; only its SHA-256 is stored, so a database leak yields no usable token."""

    __tablename__ = "auth_token"

    id: int | None = Field(default=None, primary_key=True)
    token_sha256: str = Field(max_length=64, sa_column_kwargs={"unique": True}, nullable=False)
    user_id: int = Field(foreign_key="user.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CasSession(SQLModel, table=True):
    """The CAS service ticket a page session was opened with: the server's single log-out names the
    ticket (SAML ``SessionIndex``), and the session it opened ends. Only digests are stored; a
    ticket digest is unique, so a ticket can open at most one session even if a server accepted it
    twice."""

    __tablename__ = "cas_session"

    id: int | None = Field(default=None, primary_key=True)
    ticket_sha256: str = Field(max_length=64, sa_column_kwargs={"unique": True}, nullable=False)
    token_id: int = Field(foreign_key="auth_token.id", index=True)
    cas_user: str = Field(default="", max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
