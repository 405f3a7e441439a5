"""Request and answer shapes for log-in and account management."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from policies.roles import Role
from vmportal.identity.models import User
from vmportal.identity.service import MAX_PASSWORD_LENGTH
from vmportal.kit.db import utcnow
from vmportal.kit.fields import Email

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")


def _username(value: str) -> str:
    value = value.strip().lower()
    if not _USERNAME.fullmatch(value):
        raise PydanticCustomError(
            "format",
            "must be 2–64 characters: lower-case letters, digits, '.', '_' or '-', starting "
            "with a letter or digit",
        )
    return value


Username = Annotated[str, StringConstraints(max_length=64), AfterValidator(_username)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_LENGTH)]


class LoginIn(BaseModel):
    # No format rules here: a log-in with a malformed name is simply a wrong log-in (401).
    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    password: Password
    #: ``local``: the portal's own account (the break-glass admin; always accepted here); ``ldap``:
    #: the center directory, when VMPORTAL_LOGIN_METHODS offers it. CAS has no password: its log-in
    #: is the browser's round trip through /auth/cas/login.
    method: Literal["local", "ldap"] = "local"


class UserBrief(BaseModel):
    id: int
    username: str
    role: Role
    unit_id: int | None
    display_name: str


class UserOut(UserBrief):
    email: str
    contact_id: int | None
    active: bool
    locked: bool = Field(description="True while a lock-out after failed log-ins is in force.")
    locked_until: datetime | None
    last_login_at: datetime | None
    created_at: datetime


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the scheme's name, not a secret
    expires_in: int = Field(description="Seconds until the token expires.")
    user: UserBrief


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    password: Password
    role: Role
    unit_id: int | None = Field(default=None, ge=1, description="Required for unit_admin and unit_lead.")
    display_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""
    email: Email | None = None


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = None
    email: Email | None = None
    active: bool | None = None


class PasswordChange(BaseModel):
    """``old_password`` is required when you change your own password; a center_admin resetting
    someone else's leaves it out."""

    model_config = ConfigDict(extra="forbid")

    old_password: Password | None = None
    new_password: Password


def user_out(user: User) -> UserOut:
    """An account as the API and the pages show it (never its hash; the lock only while it holds)."""
    assert user.id is not None
    locked = user.locked_until is not None and user.locked_until > utcnow()
    return UserOut(
        id=user.id,
        username=user.username,
        role=Role(user.role),
        unit_id=user.unit_id,
        display_name=user.display_name,
        email=user.email,
        contact_id=user.contact_id,
        active=user.active,
        locked=locked,
        locked_until=user.locked_until if locked else None,
        last_login_at=user.last_login_at,
        created_at=user.created_at,
    )


def user_brief(user: User) -> UserBrief:
    assert user.id is not None
    return UserBrief(
        id=user.id,
        username=user.username,
        role=Role(user.role),
        unit_id=user.unit_id,
        display_name=user.display_name,
    )
