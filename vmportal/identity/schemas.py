"""Request and answer shapes for log-in and account management."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from policies.roles import Role
from vmportal.identity.service import MAX_PASSWORD_LENGTH
from vmportal.unit.models import ContactRole
from vmportal.unit.schemas import Email

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


class AccountWanted(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact: ContactRole = Field(description="security_admin → unit_admin, security_lead → unit_lead")
    username: Username | None = Field(
        default=None, description="Derived from the staff number, else the e-mail, when left out."
    )


class UnitAccountsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts: list[AccountWanted] = Field(
        default_factory=lambda: [
            AccountWanted(contact=ContactRole.SECURITY_ADMIN),
            AccountWanted(contact=ContactRole.SECURITY_LEAD),
        ],
        min_length=1,
        max_length=2,
    )


class CreatedAccountOut(BaseModel):
    contact: ContactRole
    user: UserOut
    initial_password: str = Field(description="Shown in this answer only; the portal keeps no copy.")


class UnitAccountsOut(BaseModel):
    accounts: list[CreatedAccountOut]
    notice: str = (
        "Initial passwords are shown once: hand them to their owners, who should change them at first "
        "log-in (POST /users/{id}/password). 初始密码仅显示一次。"
    )
