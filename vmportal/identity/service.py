"""Accounts, passwords (argon2id), bearer tokens and lock-out after repeated failures."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from zxcvbn import zxcvbn

from policies.roles import ROLE_NAMES_ZH, Actor, Role
from vmportal.audit.service import Who, record
from vmportal.identity import repository, throttle
from vmportal.identity.models import AuthToken, User
from vmportal.kit import errors
from vmportal.kit.db import utcnow
from vmportal.kit.paging import Page, PageRequest
from vmportal.kit.scope import can_see_unit
from vmportal.kit.settings import Settings, get_settings

_hasher = PasswordHasher()
# Verifying against this keeps a login for an unknown user as slow as one for a known user.
_DUMMY_HASH = _hasher.hash("not-a-real-password")

MIN_PASSWORD_LENGTH = 10
#: argon2 hashes any length, but an unbounded input is a cheap way to burn the server's CPU.
MAX_PASSWORD_LENGTH = 128
#: zxcvbn's score (0-4) a password must reach: 3 is "safely unguessable" against an online attack
#: with throttling (about 10^8 guesses), which refuses Password123, Qwerty12345 and Aaaaaaaaaa1.
MIN_PASSWORD_SCORE = 3
_GENERATED_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789-_.!@#%+="


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def generate_password(length: int = 16) -> str:
    """A random initial password (secrets) that passes :func:`check_password_strength`; no
    look-alike characters (0/O, 1/l/I), since it is read off a screen and typed in once."""
    while True:
        candidate = "".join(secrets.choice(_GENERATED_ALPHABET) for _ in range(length))
        try:
            check_password_strength(candidate)
        except errors.InvalidField:
            continue
        return candidate


def check_password_strength(password: str, field: str = "password", *, username: str | None = None) -> None:
    if len(password) > MAX_PASSWORD_LENGTH:
        raise errors.InvalidField(
            field,
            "max_length",
            f"must be at most {MAX_PASSWORD_LENGTH} characters",
            message_zh=f"最多 {MAX_PASSWORD_LENGTH} 个字符",
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise errors.InvalidField(
            field,
            "min_length",
            f"must be at least {MIN_PASSWORD_LENGTH} characters",
            message_zh=f"至少 {MIN_PASSWORD_LENGTH} 个字符",
        )
    classes = sum(
        [
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        ]
    )
    if classes < 3:
        raise errors.InvalidField(
            field,
            "complexity",
            "must mix at least three of: lower case, upper case, digits, symbols",
            message_zh="须包含小写字母、大写字母、数字、符号中的至少三类",
        )
    if username and len(username) >= 3 and username.casefold() in password.casefold():
        raise errors.InvalidField(
            field,
            "contains_username",
            "must not contain the username",
            message_zh="不得包含用户名",
        )
    # Mixing character classes is not enough: "Password123" mixes three. zxcvbn estimates how many
    # guesses an attacker needs (common passwords, dictionary words, keyboard walks, repetitions,
    # dates and the user's own name), so the common and the guessable are refused as such.
    estimate = zxcvbn(password, user_inputs=[username] if username else [])
    if int(estimate["score"]) < MIN_PASSWORD_SCORE:
        raise errors.InvalidField(
            field,
            "guessable",
            "is too common or too easy to guess (a common password, dictionary word, keyboard pattern "
            "or repetition with digits added); choose a longer, less predictable one",
            message_zh="密码过于常见或容易被猜到（常用密码、字典单词、键盘序列或重复字符加数字等），"
            "请换一个更长、更难猜的密码",
        )


def actor_of(user: User) -> Actor:
    assert user.id is not None
    return Actor(user_id=user.id, role=Role(user.role), unit_id=user.unit_id)


def who(user: User) -> Who:
    return Who(actor=user.username, actor_id=user.id, role=user.role)


def token_digest(token: str) -> str:
    """What auth_token stores of a bearer token (vmportal/vm/repository/sql.py compares it in SQL)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    user: User


def _locked(settings: Settings, until: datetime) -> errors.Locked:
    return errors.Locked(
        f"account locked after {settings.lockout_threshold} failed logins until "
        f"{until.isoformat(timespec='seconds')}",
        message_zh=f"连续登录失败次数过多，账号锁定至 {until.isoformat(timespec='seconds')}",
        locked_until=until.isoformat(),
    )


def login(session: Session, username: str, password: str, *, address: str | None = None) -> IssuedToken:
    """Check a password; count failures and lock the account after too many in a row.

    Every attempt costs one argon2 verification before anything is decided, and a name without an
    account counts failures and locks exactly like an account: unknown, wrong and locked answer
    alike in time and kind, so log-in reveals no account's existence.

    The failure counter is committed even though login raises: the caller's transaction is
    rolled back on errors, so the counter update (and its audit row) is committed here first.
    Nothing else has been written in the login's transaction at that point, so nothing half-done
    is committed with it. ``address`` (the client's, behind trusted proxies) is limited in how
    many failures it may make per window (:mod:`vmportal.identity.throttle`), and a lock-out
    holds only for the address whose failures imposed it: a flood from one address cannot lock
    the account (the only center admin, say) for anyone logging in from elsewhere.
    """
    settings = get_settings()
    if address:
        throttle.check(settings, address)  # a flooding address is stopped before any work
    user = repository.user_by_name(session, username)
    now = utcnow()
    place = address or ""
    if user is None or not user.active:
        # The same work and the same counting as a real account: one argon2 verification, the run
        # of failures of this (name, address) in the same store, a lock for this address only.
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        until = throttle.lock_of(settings, username, place)
        if until is not None:
            raise _locked(settings, until)
        if throttle.count_failure(settings, username, place) >= settings.lockout_threshold:
            throttle.impose_lock(settings, username, place)
        if address:
            throttle.failed(settings, address)
        raise errors.Unauthorized("wrong username or password", message_zh="用户名或密码错误")
    try:
        _hasher.verify(user.password_hash, password)
        right = True
    except VerificationError:
        right = False
    except InvalidHashError:
        # An account with no local password (CAS or LDAP vouches for it): the same argon2 work as
        # any other name, or its quick refusal would tell that the name exists.
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        right = False
    if (
        user.locked_until is not None
        and user.locked_until > now
        and (user.locked_address is None or user.locked_address == address)
    ):
        raise _locked(settings, user.locked_until)
    if not right:
        if address:
            throttle.failed(settings, address)
        # Failures are counted per address: a run from one address (a flood that stops short of
        # the threshold) never adds up with a typo at another, which would lock that one out.
        user.failed_logins = throttle.count_failure(settings, username, place)
        locked = user.failed_logins >= settings.lockout_threshold
        if locked:
            # The account's row holds one lock; a second address reaching the threshold while
            # another's lock holds takes the row over (the first stays stopped by the rate limit).
            user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
            user.locked_address = address  # the lock shuts out this address only (issue 13)
            user.failed_logins = 0
            throttle.clear_failures(settings, username, place)
        session.add(user)
        record(
            session,
            who(user),
            "login.failed",
            "user",
            user.id,
            result="denied",
            detail="account locked" if locked else "",
            unit_id=user.unit_id,
        )
        session.commit()  # the failure must count even though this request answers an error
        raise errors.Unauthorized("wrong username or password", message_zh="用户名或密码错误") from None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    throttle.clear_failures(settings, username, place)
    user.failed_logins = 0
    if user.locked_until is None or user.locked_until <= now:
        # A lock still in force was imposed from another address: it keeps shutting that one out.
        user.locked_until = None
        user.locked_address = None
    return issue_token(session, user, method="password")


def issue_token(session: Session, user: User, *, method: str) -> IssuedToken:
    """A new bearer token for ``user``, who has just proved who they are by ``method`` (password,
    cas, ldap): every method lands here, so all share one token rule and one audit row. The token
    is always new (a log-in never reuses a session id, so none can be planted beforehand)."""
    if not user.active:
        raise errors.Unauthorized("account disabled", message_zh="账号已停用")
    settings = get_settings()
    now = utcnow()
    user.last_login_at = now
    session.add(user)
    token = secrets.token_urlsafe(32)
    ttl = timedelta(minutes=settings.token_ttl_minutes)
    session.add(AuthToken(token_sha256=token_digest(token), user_id=user.id or 0, expires_at=now + ttl))
    detail = "" if method == "password" else f"via {method}"
    record(session, who(user), "login", "user", user.id, unit_id=user.unit_id, detail=detail)
    return IssuedToken(token=token, expires_in=int(ttl.total_seconds()), user=user)


def user_for_token(session: Session, token: str) -> User:
    digest = token_digest(token)
    user = repository.live_token_user(session, digest, utcnow())
    if user is not None:
        return user
    # Not good for a request (repository.live_token_rule): say which part failed.
    row = repository.token_by_digest(session, digest)
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        raise errors.Unauthorized("missing, expired or revoked token", message_zh="令牌无效、已过期或已注销")
    raise errors.Unauthorized("account disabled", message_zh="账号已停用")


def logout(session: Session, token: str, by: Who | None = None) -> None:
    row = repository.token_by_digest(session, token_digest(token))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        if by is not None:
            record(session, by, "logout", "user", row.user_id)


def revoke_all(session: Session, user_id: int, *, keep_token: str | None = None) -> int:
    """Revoke every live token of a user (but ``keep_token``, the caller's own); returns how many."""
    keep = token_digest(keep_token) if keep_token else None
    count = 0
    for row in repository.live_tokens(session, user_id):
        if row.token_sha256 == keep:
            continue
        row.revoked_at = utcnow()
        session.add(row)
        count += 1
    return count


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
    detail: str = "",
) -> User:
    if role in (Role.UNIT_ADMIN, Role.UNIT_LEAD) and unit_id is None:
        raise errors.InvalidField(
            "unit_id", "required", "unit roles need a unit", message_zh="单位角色必须指定单位"
        )
    if role not in (Role.UNIT_ADMIN, Role.UNIT_LEAD) and unit_id is not None:
        raise errors.InvalidField(
            "unit_id", "forbidden", "center roles belong to no unit", message_zh="中心角色不属于任何单位"
        )
    if unit_id is not None and not repository.unit_exists(session, unit_id):
        raise errors.InvalidField(
            "unit_id", "not_found", f"unit {unit_id} does not exist", message_zh=f"单位 {unit_id} 不存在"
        )
    if repository.username_taken(session, username):
        raise errors.Conflict(
            f"username '{username}' is taken", message_zh=f"用户名“{username}”已被占用", field="username"
        )
    check_password_strength(password, username=username)
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        unit_id=unit_id,
        display_name=display_name,
        email=email,
        contact_id=contact_id,
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError:  # the same name was taken concurrently since the check above
        raise errors.Conflict(
            f"username '{username}' is taken", message_zh=f"用户名“{username}”已被占用", field="username"
        ) from None
    record(
        session, by, "user.create", "user", user.id, after=user_snapshot(user), detail=detail, unit_id=unit_id
    )
    return user


# ---- account management ------------------------------------------------------------------------


def user_snapshot(user: User) -> dict[str, object]:
    """What the audit log keeps of an account (never the hash)."""
    return {
        "username": user.username,
        "role": user.role,
        "unit_id": user.unit_id,
        "display_name": user.display_name,
        "email": user.email,
        "active": user.active,
        "contact_id": user.contact_id,
    }


def get_user(session: Session, user_id: int) -> User:
    user = repository.get_user(session, user_id)
    if user is None:
        raise errors.NotFound("user", user_id)
    return user


def visible_user(session: Session, actor: Actor, user_id: int) -> User:
    """The account ``actor`` may see: a unit's users see their own unit's accounts only; any other
    account answers 404 (it does not exist for them)."""
    user = repository.get_user(session, user_id)
    if user is None or not can_see_unit(actor, user.unit_id):
        raise errors.NotFound("user", user_id)
    return user


def username_taken(session: Session, username: str) -> bool:
    return repository.username_taken(session, username)


def active_user_of_contact(session: Session, contact_id: int) -> User | None:
    """The live account made from one row of a unit's contact registry, if any."""
    return repository.active_user_of_contact(session, contact_id)


def list_users(
    session: Session,
    actor: Actor | None = None,
    *,
    unit_id: int | None = None,
    role: Role | None = None,
    active: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[User]:
    """Accounts by filter; ``actor`` sees only what the scoping rule lets them (None: every account,
    for the CLI and tasks)."""
    return repository.list_users(
        session, actor, unit_id=unit_id, role=role, active=active, limit=limit, offset=offset
    )


def page_users(
    session: Session,
    actor: Actor | None,
    *,
    unit_id: int | None = None,
    role: Role | None = None,
    active: bool | None = None,
    q: str | None = None,
    request: PageRequest | None = None,
) -> Page[User]:
    """One page of accounts by filter with the total (the accounts page): sorted by
    ``request.sort`` (a key of :data:`USER_SORTS`, "-key" descending), scoped as :func:`list_users`;
    ``q`` matches the user name, the display name or the e-mail."""
    request = request or PageRequest()
    items, total = repository.page_users(
        session, actor, unit_id=unit_id, role=role, active=active, q=q, request=request
    )
    return Page(items, total, request.limit, request.offset)


USER_SORTS = tuple(repository.USER_SORTS)


def _active_center_admins(session: Session) -> int:
    return repository.active_center_admins(session)


def update_user(
    session: Session,
    by: Who,
    user: User,
    *,
    display_name: str | None = None,
    email: str | None = None,
    active: bool | None = None,
) -> User:
    """Edit an account; deactivating one revokes its tokens at once (its sessions end now)."""
    before = user_snapshot(user)
    if active is False and user.active:
        if by.actor_id == user.id:
            raise errors.InvalidField(
                "active", "self", "you cannot deactivate your own account", message_zh="不能停用自己的账号"
            )
        if user.role == Role.CENTER_ADMIN and _active_center_admins(session) <= 1:
            raise errors.Conflict(
                "the last active center_admin cannot be deactivated",
                message_zh="不能停用最后一个有效的信息中心管理员账号",
                field="active",
            )
    if display_name is not None:
        user.display_name = display_name
    if email is not None:
        user.email = email
    if active is not None:
        user.active = active
    after = user_snapshot(user)
    if after == before:
        return user
    session.add(user)
    revoked = 0
    if before["active"] and not user.active:
        assert user.id is not None
        revoked = revoke_all(session, user.id)
    if before["active"] != user.active:
        action = "user.activate" if user.active else "user.deactivate"
    else:
        action = "user.update"
    record(
        session,
        by,
        action,
        "user",
        user.id,
        before=before,
        after=after,
        unit_id=user.unit_id,
        detail=f"{revoked} token(s) revoked" if revoked else "",
    )
    return user


def retire_account(session: Session, by: Who, user: User, *, detail: str) -> int:
    """Deactivate an account whose person no longer holds the post it was made for (the registry
    names someone else): every token and session of it ends now. Returns how many were revoked."""
    if not user.active:
        return 0
    before = user_snapshot(user)
    user.active = False
    session.add(user)
    assert user.id is not None
    revoked = revoke_all(session, user.id)
    record(
        session,
        by,
        "user.deactivate",
        "user",
        user.id,
        before=before,
        after=user_snapshot(user),
        unit_id=user.unit_id,
        detail=f"{detail}; {revoked} token(s) revoked",
    )
    return revoked


def reset_password(session: Session, by: Who, user: User, new_password: str) -> None:
    """A center_admin sets another user's password: every session of that user ends."""
    check_password_strength(new_password, "new_password", username=user.username)
    user.password_hash = hash_password(new_password)
    user.failed_logins = 0
    user.locked_until = None
    user.locked_address = None
    session.add(user)
    assert user.id is not None
    revoked = revoke_all(session, user.id)
    record(
        session,
        by,
        "user.password_reset",
        "user",
        user.id,
        unit_id=user.unit_id,
        detail=f"{revoked} token(s) revoked",
    )


def change_own_password(
    session: Session, user: User, old_password: str, new_password: str, *, keep_token: str | None = None
) -> None:
    """A user changes their own password, proving the old one; their other sessions end."""
    try:
        _hasher.verify(user.password_hash, old_password)
    except (VerificationError, InvalidHashError):
        raise errors.InvalidField(
            "old_password", "mismatch", "is not your current password", message_zh="与当前密码不符"
        ) from None
    if new_password == old_password:
        raise errors.InvalidField(
            "new_password",
            "unchanged",
            "must differ from the current password",
            message_zh="不能与当前密码相同",
        )
    check_password_strength(new_password, "new_password", username=user.username)
    user.password_hash = hash_password(new_password)
    session.add(user)
    assert user.id is not None
    revoked = revoke_all(session, user.id, keep_token=keep_token)
    record(
        session,
        who(user),
        "user.password_change",
        "user",
        user.id,
        unit_id=user.unit_id,
        detail=f"{revoked} other token(s) revoked",
    )


def unlock(session: Session, by: Who, user: User) -> User:
    before = {
        "failed_logins": user.failed_logins,
        "locked_until": user.locked_until.isoformat() if user.locked_until else None,
    }
    user.failed_logins = 0
    user.locked_until = None
    user.locked_address = None
    session.add(user)
    record(
        session,
        by,
        "user.unlock",
        "user",
        user.id,
        before=before,
        after={"failed_logins": 0, "locked_until": None},
        unit_id=user.unit_id,
    )
    return user


def ensure_role(actor: Actor, roles: Iterable[Role]) -> None:
    """403 for an actor whose role is not one of ``roles``, naming the roles allowed."""
    allowed = tuple(roles)
    if actor.role in allowed:
        return
    names = ", ".join(r.value for r in allowed)
    names_zh = "、".join(ROLE_NAMES_ZH[r] for r in allowed)
    raise errors.Forbidden(
        f"role '{actor.role}' may not do this (allowed: {names})",
        message_zh=f"“{ROLE_NAMES_ZH[actor.role]}”角色无权执行此操作（允许：{names_zh}）",
        role=actor.role.value,
    )


# ---- accounts the campus directories vouch for (CAS list, LDAP groups) ----------------------------

#: What an account a directory vouches for keeps as its password hash: no argon2 hash, so no
#: password ever verifies against it (the local log-in counts a failure, like any wrong password).
NO_LOCAL_PASSWORD = "!directory"  # noqa: S105 (a hash no password matches)
DIRECTORY_SOURCES = ("cas", "ldap")


class SignOnRefused(errors.Unauthorized):
    """A campus sign-on (CAS or LDAP) that does not open a session; ``reason`` says why, for the page
    that explains it (unknown_user, invalid_ticket, invalid_service, replayed, unavailable, ...)."""

    def __init__(self, reason: str, message: str, *, message_zh: str, **extra: object) -> None:
        super().__init__(message, message_zh=message_zh, reason=reason, **extra)
        self.reason = reason


def directory_account(
    session: Session,
    *,
    username: str,
    role: Role,
    source: str,
    display_name: str = "",
    email: str = "",
) -> User:
    """The center account of a person a directory vouches for (the CAS center list or an LDAP group
    mapped to ``role``): made at their first log-in, its role and name brought up to date at each
    one, re-activated when the directory vouches for them again after a sync retired it.

    A *local* account of the same name is never taken over: a directory cannot change what the
    center set up by hand (the break-glass admin above all); the log-in is refused, naming why.
    """
    assert source in DIRECTORY_SOURCES and role not in (Role.UNIT_ADMIN, Role.UNIT_LEAD)
    by = Who(actor=f"{source}:{username}", role=role.value)
    user = repository.user_by_name(session, username)
    if user is None:
        user = User(
            username=username,
            password_hash=NO_LOCAL_PASSWORD,
            role=role,
            display_name=display_name[:100],
            email=email[:254],
            auth_source=source,
        )
        session.add(user)
        try:
            session.flush()
        except IntegrityError:  # made concurrently by the same person's other log-in
            raise SignOnRefused(
                "retry", "the account is being set up; log in again", message_zh="账号正在创建，请重新登录"
            ) from None
        record(
            session,
            by,
            "user.create",
            "user",
            user.id,
            after=user_snapshot(user),
            detail=f"at first log-in through {source}",
        )
        return user
    if user.auth_source not in DIRECTORY_SOURCES:
        raise SignOnRefused(
            "local_account",
            f"a local account is already named '{username}'; the center admin must rename it first",
            message_zh=f"已有同名本地账号“{username}”，请联系信息中心管理员处理",
        )
    before = user_snapshot(user)
    user.role = role
    user.unit_id = None
    user.active = True
    if display_name:
        user.display_name = display_name[:100]
    if email:
        user.email = email[:254]
    after = user_snapshot(user)
    if after != before:
        session.add(user)
        action = "user.activate" if not before["active"] else "user.update"
        record(
            session,
            by,
            action,
            "user",
            user.id,
            before=before,
            after=after,
            detail=f"as {source} vouches at log-in",
        )
    return user


def retire_directory_account(session: Session, user: User, *, source: str, detail: str) -> int:
    """The directory no longer vouches for the account (disabled, removed, out of every mapped group):
    deactivated, every session and token revoked, audited. Returns the tokens revoked."""
    return retire_account(session, Who.system(f"{source}-sync"), user, detail=detail)


def directory_accounts(session: Session, source: str, *, active: bool = True) -> list[User]:
    return repository.users_by_source(session, source, active=active)


def unit_account_of_staff_number(session: Session, staff_no: str) -> User | None:
    """The active unit account made from a contact-registry row with this staff number (工号); when
    the person holds two rows (security admin and lead), the unit_admin account."""
    users = repository.active_users_of_staff_number(session, staff_no)
    users.sort(key=lambda u: (u.role != Role.UNIT_ADMIN.value, u.id or 0))
    return users[0] if users else None
