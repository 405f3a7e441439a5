"""Accounts, passwords (argon2id), bearer tokens and lock-out after repeated failures."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, col, select

from policies.roles import Actor, Role
from vmportal import errors
from vmportal.audit.service import Who, record
from vmportal.db import utcnow
from vmportal.identity.models import AuthToken, User
from vmportal.settings import get_settings

_hasher = PasswordHasher()
# Verifying against this keeps a login for an unknown user as slow as one for a known user.
_DUMMY_HASH = _hasher.hash("not-a-real-password")

MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_strength(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise errors.InvalidField(
            field, "min_length", f"must be at least {MIN_PASSWORD_LENGTH} characters",
            message_zh=f"至少 {MIN_PASSWORD_LENGTH} 个字符",
        )
    classes = sum(
        [any(c.islower() for c in password), any(c.isupper() for c in password),
         any(c.isdigit() for c in password), any(not c.isalnum() for c in password)]
    )
    if classes < 3:
        raise errors.InvalidField(
            field, "complexity", "must mix at least three of: lower case, upper case, digits, symbols",
            message_zh="须包含小写字母、大写字母、数字、符号中的至少三类",
        )


def actor_of(user: User) -> Actor:
    assert user.id is not None
    return Actor(user_id=user.id, role=Role(user.role), unit_id=user.unit_id)


def who(user: User) -> Who:
    return Who(actor=user.username, actor_id=user.id, role=user.role)


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    user: User


def login(session: Session, username: str, password: str) -> IssuedToken:
    """Check a password; count failures and lock the account after too many in a row.

    The failure counter is committed even though login raises: the caller's transaction is
    rolled back on errors, so the counter update runs in a nested savepoint that is kept.
    """
    settings = get_settings()
    user = session.exec(select(User).where(User.username == username)).first()
    now = utcnow()
    if user is None or not user.active:
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        raise errors.Unauthorized("wrong username or password", message_zh="用户名或密码错误")
    if user.locked_until is not None and user.locked_until > now:
        raise errors.Locked(
            f"account locked after {settings.lockout_threshold} failed logins until "
            f"{user.locked_until.isoformat(timespec='seconds')}",
            message_zh=f"连续登录失败次数过多，账号锁定至 {user.locked_until.isoformat(timespec='seconds')}",
            locked_until=user.locked_until.isoformat(),
        )
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        user.failed_logins += 1
        locked = user.failed_logins >= settings.lockout_threshold
        if locked:
            user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
            user.failed_logins = 0
        session.add(user)
        record(session, who(user), "login.failed", "user", user.id, result="denied",
               detail="account locked" if locked else "", unit_id=user.unit_id)
        session.commit()  # the failure must count even though this request answers an error
        raise errors.Unauthorized("wrong username or password", message_zh="用户名或密码错误") from None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    session.add(user)
    token = secrets.token_urlsafe(32)
    ttl = timedelta(minutes=settings.token_ttl_minutes)
    session.add(AuthToken(token_sha256=_token_digest(token), user_id=user.id or 0, expires_at=now + ttl))
    record(session, who(user), "login", "user", user.id, unit_id=user.unit_id)
    return IssuedToken(token=token, expires_in=int(ttl.total_seconds()), user=user)


def user_for_token(session: Session, token: str) -> User:
    row = session.exec(select(AuthToken).where(AuthToken.token_sha256 == _token_digest(token))).first()
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        raise errors.Unauthorized("missing, expired or revoked token", message_zh="令牌无效、已过期或已注销")
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        raise errors.Unauthorized("account disabled", message_zh="账号已停用")
    return user


def logout(session: Session, token: str) -> None:
    row = session.exec(select(AuthToken).where(AuthToken.token_sha256 == _token_digest(token))).first()
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)


def revoke_all(session: Session, user_id: int) -> None:
    for row in session.exec(
        select(AuthToken).where(AuthToken.user_id == user_id, col(AuthToken.revoked_at).is_(None))
    ):
        row.revoked_at = utcnow()
        session.add(row)


def create_user(
    session: Session,
    by: Who,
    *,
    username: str,
    password: str,
    role: Role,
    unit_id: int | None = None,
    display_name: str = "",
    email: str = "",
    contact_id: int | None = None,
) -> User:
    if role in (Role.UNIT_ADMIN, Role.UNIT_LEAD) and unit_id is None:
        raise errors.InvalidField("unit_id", "required", "unit roles need a unit", message_zh="单位角色必须指定单位")
    if role not in (Role.UNIT_ADMIN, Role.UNIT_LEAD) and unit_id is not None:
        raise errors.InvalidField("unit_id", "forbidden", "center roles belong to no unit",
                                  message_zh="中心角色不属于任何单位")
    if session.exec(select(User).where(User.username == username)).first() is not None:
        raise errors.Conflict(f"username '{username}' is taken", message_zh=f"用户名“{username}”已被占用",
                              field="username")
    check_password_strength(password)
    user = User(
        username=username, password_hash=hash_password(password), role=role, unit_id=unit_id,
        display_name=display_name, email=email, contact_id=contact_id,
    )
    session.add(user)
    session.flush()
    record(session, by, "user.create", "user", user.id, after={"username": username, "role": role,
           "unit_id": unit_id}, unit_id=unit_id)
    return user
