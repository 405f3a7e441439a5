"""The center's staff directory (LDAP, ldap3): bind authentication for center staff, directory
groups mapped to center roles, and the sync that retires the accounts the directory no longer
vouches for.

Transport: ``ldaps://`` or ``ldap://`` with StartTLS before any bind, the server certificate
verified against ``ldap_ca_file`` (or the system CAs) and its host name checked; a password never
travels in clear. Every operation is bounded by ``ldap_timeout`` (connect and receive).

Connections: searches go through the service account (``ldap_bind_dn``) on connections kept open
and reused (at most ``ldap_pool_size`` idle per process; one that failed is dropped, not reused).
A person's password is checked by a bind of its own on a fresh connection, closed at once: the
pooled connections never change identity.

A person may log in when the directory finds exactly one entry for the name, the bind with their
password succeeds, and they are in a group of ``ldap_group_roles`` (the highest mapped role wins).
Their account is made or brought up to date then (:func:`vmportal.identity.service.directory_account`).
:func:`sync` retires (deactivates, every session and token revoked) the LDAP accounts whose person
was removed, is locked by an administrator, or is in no mapped group any more; and the CAS center
accounts no longer in ``cas_center_users``. A directory that cannot be reached retires no one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import re
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from sqlmodel import Session

from policies.roles import Role
from vmportal.audit.service import Who, record
from vmportal.identity import service, throttle
from vmportal.identity.service import IssuedToken, SignOnRefused
from vmportal.kit import errors
from vmportal.kit.settings import Settings, get_settings

log = logging.getLogger(__name__)

#: When a person maps to several roles, the one with the most rights wins.
_ROLE_ORDER = (Role.CENTER_ADMIN, Role.CENTER_OPERATOR, Role.AUDITOR)
#: ppolicy's "locked by an administrator until unlocked" (a lock after wrong passwords expires).
PERMANENT_LOCK = "000001010000Z"
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_ATTRIBUTES = ["uid", "cn", "displayName", "mail", "employeeNumber", "memberOf", "pwdAccountLockedTime"]


class DirectoryUnavailable(errors.UpstreamError):
    """The directory cannot be reached, refuses the service account, or its certificate does not verify."""


@dataclass(frozen=True)
class Person:
    dn: str
    username: str
    display_name: str
    email: str
    groups: frozenset[str] = field(default_factory=frozenset)  # DNs, lower-cased
    locked: bool = False  # locked by an administrator (ppolicy's permanent lock)


def _norm(dn: str) -> str:
    return ",".join(part.strip() for part in dn.split(",")).lower()


def role_of(person: Person, settings: Settings) -> Role | None:
    granted = {Role(role) for dn, role in settings.ldap_group_roles.items() if _norm(dn) in person.groups}
    return next((r for r in _ROLE_ORDER if r in granted), None)


def enabled(settings: Settings | None = None) -> bool:
    settings = settings or get_settings()
    return "ldap" in settings.login_methods and bool(settings.ldap_url)


class Directory:
    """One configured directory: its ldap3 server and the pool of service-account connections."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        url = urlsplit(settings.ldap_url)
        if url.scheme not in ("ldap", "ldaps") or not url.hostname:
            raise DirectoryUnavailable(
                f"VMPORTAL_LDAP_URL must be ldaps://host[:port] or ldap://host[:port], "
                f"not {settings.ldap_url!r}",
                message_zh="VMPORTAL_LDAP_URL 配置错误（须为 ldaps:// 或 ldap:// 地址）",
            )
        self.ldaps = url.scheme == "ldaps"
        tls = ldap3.Tls(
            ca_certs_file=settings.ldap_ca_file or None,
            validate=ssl.CERT_REQUIRED,
            version=ssl.PROTOCOL_TLS_CLIENT,
        )
        self.server = ldap3.Server(
            url.hostname,
            port=url.port or (636 if self.ldaps else 389),
            use_ssl=self.ldaps,
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=settings.ldap_timeout,
        )
        self._idle: queue.LifoQueue[ldap3.Connection] = queue.LifoQueue(maxsize=settings.ldap_pool_size)

    def _bound(self, user: str, password: str) -> ldap3.Connection:
        """A connection bound as ``user`` over TLS; raises LDAPException (LDAPBindError when refused)."""
        return ldap3.Connection(
            self.server,
            user=user,
            password=password,
            auto_bind=ldap3.AUTO_BIND_NO_TLS if self.ldaps else ldap3.AUTO_BIND_TLS_BEFORE_BIND,
            receive_timeout=max(1, math.ceil(self.settings.ldap_timeout)),  # ldap3 packs it as an int
            read_only=True,
            raise_exceptions=False,
        )

    @contextlib.contextmanager
    def service(self) -> Iterator[ldap3.Connection]:
        """A service-account connection from the pool (opened when none is idle), back after use."""
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            password = self.settings.ldap_bind_password
            try:
                conn = self._bound(
                    self.settings.ldap_bind_dn, password.get_secret_value() if password else ""
                )
            except LDAPException as exc:
                raise DirectoryUnavailable(
                    f"the directory cannot be reached or refuses the service account: {exc}",
                    message_zh="无法连接目录服务器，或服务账号被拒绝",
                ) from None
        healthy = False
        try:
            yield conn
            healthy = conn.bound and not conn.closed
        except LDAPException as exc:
            raise DirectoryUnavailable(
                f"the directory failed during a search: {exc}", message_zh="目录服务器查询失败"
            ) from None
        finally:
            if healthy:
                try:
                    self._idle.put_nowait(conn)
                except queue.Full:
                    conn.unbind()
            else:
                with contextlib.suppress(LDAPException):
                    conn.unbind()

    def close(self) -> None:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            with contextlib.suppress(LDAPException):
                conn.unbind()

    def find(self, username: str) -> Person | None:
        """The person with this log-in name, or None (none, or more than one: ambiguous is nobody)."""
        query = self.settings.ldap_user_filter.replace("{username}", escape_filter_chars(username))
        with self.service() as conn:
            ok = conn.search(
                self.settings.ldap_user_base,
                query,
                attributes=_ATTRIBUTES,
                size_limit=2,
                time_limit=max(1, int(self.settings.ldap_timeout)),
            )
            if not ok and conn.result.get("description") not in (
                "success",
                "noSuchObject",
                "sizeLimitExceeded",
            ):
                raise DirectoryUnavailable(
                    f"the directory refused the search: {conn.result.get('description')}",
                    message_zh="目录服务器拒绝了查询",
                )
            entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
            if len(entries) != 1:
                return None
            entry = entries[0]
            attributes = entry.get("attributes", {})
            groups = {_norm(str(g)) for g in attributes.get("memberOf", []) or []}
            if self.settings.ldap_group_base:
                conn.search(
                    self.settings.ldap_group_base,
                    f"(&(objectClass=groupOfNames)(member={escape_filter_chars(entry['dn'])}))",
                    attributes=[],
                    time_limit=max(1, int(self.settings.ldap_timeout)),
                )
                groups |= {_norm(e["dn"]) for e in conn.response or [] if e.get("type") == "searchResEntry"}
        locked = [str(v) for v in _values(attributes.get("pwdAccountLockedTime"))]

        def first(name: str) -> str:
            return next((str(v) for v in _values(attributes.get(name)) if str(v).strip()), "")

        return Person(
            dn=str(entry["dn"]),
            username=first("uid") or username,
            display_name=first("displayName") or first("cn"),
            email=first("mail"),
            groups=frozenset(groups),
            locked=PERMANENT_LOCK in locked,
        )

    def password_ok(self, dn: str, password: str) -> bool:
        """A bind as the person: True when the directory accepts the password."""
        if not password:  # an empty password is an anonymous bind, which "succeeds": never
            return False
        try:
            conn = self._bound(dn, password)
        except ldap3.core.exceptions.LDAPBindError:
            return False
        except LDAPException as exc:
            raise DirectoryUnavailable(
                f"the directory cannot be reached: {exc}", message_zh="无法连接目录服务器"
            ) from None
        bound = bool(conn.bound)
        with contextlib.suppress(LDAPException):
            conn.unbind()
        return bound


def _values(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


_directory: Directory | None = None
_directory_lock = threading.Lock()


def directory(settings: Settings | None = None) -> Directory:
    """The process's directory for these settings (its pool is kept between requests)."""
    global _directory
    settings = settings or get_settings()
    with _directory_lock:
        if _directory is None or _directory.settings is not settings:
            if _directory is not None:
                _directory.close()
            _directory = Directory(settings)
        return _directory


def _wrong() -> errors.Unauthorized:
    return errors.Unauthorized("wrong username or password", message_zh="用户名或密码错误")


def login(session: Session, username: str, password: str, *, address: str | None = None) -> IssuedToken:
    """Log a center staff member in with their directory password (the local log-in's token rules and
    audit row: ``issue_token(method="ldap")``). A wrong password, an unknown name and a person in no
    portal group are counted against the address like the local log-in's failures."""
    settings = get_settings()
    if not enabled(settings):
        raise errors.InvalidField(
            "method", "not_offered", "directory log-in is not enabled here", message_zh="本系统未启用目录登录"
        )
    if address:
        throttle.check(settings, address)
    username = username.strip()
    source = directory(settings)

    def refuse(exc: errors.PortalError, detail: str) -> errors.PortalError:
        if address:
            throttle.failed(settings, address)
        record(
            session,
            Who(actor=f"ldap:{username[:64]}"),
            "login.failed",
            "user",
            None,
            result="denied",
            detail=f"ldap: {detail}",
        )
        session.commit()  # the refusal is kept although the request answers an error
        return exc

    if not _USERNAME.match(username) or not password or len(password) > service.MAX_PASSWORD_LENGTH:
        raise refuse(_wrong(), "malformed")
    person = source.find(username)
    if person is None or person.locked or not source.password_ok(person.dn, password):
        raise refuse(_wrong(), "wrong password, locked or unknown")
    role = role_of(person, settings)
    if role is None:
        raise refuse(
            SignOnRefused(
                "no_group",
                "your directory account is in no group that may use this portal",
                message_zh="您的目录账号不在本系统授权的任何用户组中",
            ),
            "in no mapped group",
        )
    user = service.directory_account(
        session,
        username=person.username,
        role=role,
        source="ldap",
        display_name=person.display_name,
        email=person.email,
    )
    return service.issue_token(session, user, method="ldap")


@dataclass
class SyncResult:
    checked: int = 0
    retired: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


def sync(session: Session, settings: Settings | None = None) -> SyncResult:
    """Retire the directory-vouched accounts nobody vouches for any more; bring roles up to date.

    Raises :class:`DirectoryUnavailable` (and changes nothing) when the directory cannot be asked.
    """
    settings = settings or get_settings()
    result = SyncResult()
    if settings.ldap_url:
        source = directory(settings)
        for user in service.directory_accounts(session, "ldap"):
            result.checked += 1
            person = source.find(user.username)
            if person is None:
                why = "removed from the directory"
            elif person.locked:
                why = "disabled in the directory"
            elif (role := role_of(person, settings)) is None:
                why = "in no portal group of the directory"
            else:
                if role != user.role:
                    service.directory_account(session, username=user.username, role=role, source="ldap")
                    result.updated.append(user.username)
                continue
            service.retire_directory_account(session, user, source="ldap", detail=why)
            result.retired.append(user.username)
    for user in service.directory_accounts(session, "cas"):
        result.checked += 1
        role_name = settings.cas_center_users.get(user.username)
        if role_name is None:
            service.retire_directory_account(
                session, user, source="cas", detail="no longer in the configured CAS center users"
            )
            result.retired.append(user.username)
        elif role_name != user.role:
            service.directory_account(session, username=user.username, role=Role(role_name), source="cas")
            result.updated.append(user.username)
    if result.retired or result.updated:
        log.info("directory sync: retired %s, updated %s", result.retired, result.updated)
    return result
