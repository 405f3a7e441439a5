"""Hypervisor connections: building adapters for them, and the center's administration of them."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session

from hypervisors import ConnectionConfig, HypervisorAdapter, HypervisorKind, create
from hypervisors.base import ConnectionCheck, HypervisorError, TemplateInfo
from vmportal.audit.service import Who, record
from vmportal.connection import repository
from vmportal.connection.models import HypervisorConnection
from vmportal.kit import errors
from vmportal.kit.db import utcnow
from vmportal.kit.settings import get_settings

_local = threading.local()


def config_of(conn: HypervisorConnection) -> ConnectionConfig:
    return ConnectionConfig(
        kind=HypervisorKind(conn.kind),
        url=conn.url,
        username=conn.username,
        secret=conn.secret or "",
        token_id=conn.token_id,
        verify_tls=conn.verify_tls,
        ca_file=conn.ca_file,
        defaults=dict(conn.defaults or {}),
    )


def adapter_for(conn: HypervisorConnection) -> HypervisorAdapter:
    """One adapter per connection per thread (adapters are not thread-safe; sessions are reused).

    The cache key includes the connection's settings, so an edited connection gets a new adapter.
    """
    cache: dict[tuple[object, ...], HypervisorAdapter] = getattr(_local, "adapters", None) or {}
    _local.adapters = cache
    cfg = config_of(conn)
    key = (
        conn.id,
        cfg.kind,
        cfg.url,
        cfg.username,
        cfg.token_id,
        cfg.secret,
        cfg.verify_tls,
        cfg.ca_file,
        tuple(sorted(cfg.defaults.items())),
    )
    adapter = cache.get(key)
    if adapter is None:
        for old_key in [k for k in cache if k[0] == conn.id]:
            cache.pop(old_key).close()
        adapter = cache[key] = create(cfg)
    return adapter


def close_adapters() -> None:
    """Close and forget this thread's cached adapters (a thread that ends, e.g. a watcher's guard)."""
    cache: dict[tuple[object, ...], HypervisorAdapter] = getattr(_local, "adapters", None) or {}
    for adapter in cache.values():
        adapter.close()
    cache.clear()


def get_connection(session: Session, connection_id: int) -> HypervisorConnection:
    conn = repository.get_connection(session, connection_id)
    if conn is None:
        raise errors.NotFound("hypervisor connection", connection_id)
    return conn


# ---- the center's connection administration ----------------------------------------------------
#
# Adapter calls are network I/O that may take the adapter's whole timeout. On SQLite a request's
# transaction holds the database's single writer lock from its first statement (BEGIN IMMEDIATE),
# so routes that only read before calling a hypervisor end that read transaction first
# (:func:`end_read_transaction`) instead of stalling every other writer of the portal meanwhile.

log = logging.getLogger(__name__)

#: Templates change rarely; the request form and every submission ask for them.
TEMPLATE_TTL_SECONDS = 60.0
#: After a connection failed to list its templates, the request form leaves it out for this long
#: without asking again: a vCenter that hangs would otherwise cost every form load its timeout.
TEMPLATE_FAILURE_TTL_SECONDS = 30.0
_templates_cache: dict[tuple[object, ...], tuple[float, list[TemplateInfo]]] = {}
_templates_failures: dict[tuple[object, ...], float] = {}
_templates_lock = threading.Lock()


def end_read_transaction(session: Session) -> bool:
    """Finish a transaction that has written nothing, so slow hypervisor I/O holds no database lock.

    Returns False, and keeps the transaction, when the session holds unflushed changes: committing
    here must never make half of a use case durable. (Slower for other writers, never wrong.)
    """
    if session.new or session.dirty or session.deleted:
        log.debug("end_read_transaction: pending changes, keeping the transaction open")
        return False
    session.commit()
    return True


def snapshot(conn: HypervisorConnection) -> dict[str, Any]:
    """What the audit log keeps of a connection: everything but the secret, which it only notes."""
    return {
        "name": conn.name,
        "kind": conn.kind,
        "url": conn.url,
        "username": conn.username,
        "token_id": conn.token_id,
        "has_secret": bool(conn.secret),
        "verify_tls": conn.verify_tls,
        "ca_file": conn.ca_file,
        "defaults": dict(conn.defaults or {}),
        "active": conn.active,
    }


def list_connections(session: Session, *, active: bool | None = None) -> list[HypervisorConnection]:
    return repository.connections_by_id(session, active=active)


def _check_url(kind: HypervisorKind, url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if kind is HypervisorKind.SIMULATOR:
        # A simulator writes its state file wherever its URL says: keep that inside the data
        # directory so a connection cannot be used to write files elsewhere on the server.
        if parts.scheme == "simulator" and parts.netloc == "memory":
            return url
        data_dir = get_settings().data_dir.resolve()
        path = Path(os.path.abspath(parts.path)) if parts.path else None
        if parts.scheme != "simulator" or parts.netloc not in ("", "localhost") or path is None:
            raise errors.InvalidField(
                "url",
                "simulator_url",
                "a simulator URL is simulator://memory/<name> or simulator:///<state file>",
                message_zh="模拟器地址须为 simulator://memory/<名称> 或 simulator:///<状态文件路径>",
            )
        if not path.is_relative_to(data_dir):
            raise errors.InvalidField(
                "url",
                "inside_data_dir",
                f"a simulator state file must lie under the data directory {data_dir}",
                message_zh=f"模拟器状态文件须位于数据目录 {data_dir} 之下",
            )
        return url
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise errors.InvalidField(
            "url",
            "http_url",
            f"a {kind} URL is https://host[:port][/path]",
            message_zh=f"{kind} 的地址须为 https://主机[:端口][/路径]",
        )
    if parts.username or parts.password:
        raise errors.InvalidField(
            "url",
            "no_credentials",
            "put credentials in username and secret, not in the URL",
            message_zh="用户名和密码请填写在 username 和 secret 中，不要写在地址里",
        )
    return url


def _check_credentials(kind: HypervisorKind, username: str, token_id: str, has_secret: bool) -> None:
    if kind is HypervisorKind.VSPHERE and not username:
        raise errors.InvalidField(
            "username",
            "required",
            "a vSphere connection needs a username",
            message_zh="vSphere 连接须填写用户名",
        )
    if kind is HypervisorKind.PROXMOX and not (token_id or username):
        raise errors.InvalidField(
            "token_id",
            "required",
            "a Proxmox connection needs an API token id (user@realm!name) or a username",
            message_zh="Proxmox 连接须填写 API 令牌 ID（user@realm!name）或用户名",
        )
    if kind is not HypervisorKind.SIMULATOR and not has_secret:
        raise errors.InvalidField(
            "secret",
            "required",
            f"a {kind} connection needs a password or token secret",
            message_zh=f"{kind} 连接须填写密码或令牌密钥",
        )


def _check_ca_file(ca_file: str | None) -> str | None:
    if not ca_file:
        return None
    if not Path(ca_file).is_file():
        raise errors.InvalidField(
            "ca_file",
            "exists",
            f"no file {ca_file} on the portal's server",
            message_zh=f"服务器上不存在文件 {ca_file}",
        )
    return ca_file


def _check_name(session: Session, name: str, connection_id: int | None = None) -> None:
    if repository.name_taken(session, name, connection_id):
        raise errors.Conflict(
            f"a connection named '{name}' exists already", message_zh=f"连接“{name}”已存在", field="name"
        )


def create_connection(
    session: Session,
    who: Who,
    *,
    kind: HypervisorKind,
    name: str,
    url: str,
    username: str = "",
    token_id: str = "",
    secret: str | None = None,
    verify_tls: bool = True,
    ca_file: str | None = None,
    defaults: dict[str, str] | None = None,
    active: bool = True,
) -> HypervisorConnection:
    kind = HypervisorKind(kind)
    name = name.strip()
    conn = HypervisorConnection(
        name=name,
        kind=kind.value,
        url=_check_url(kind, url),
        username=username.strip(),
        token_id=token_id.strip(),
        secret=secret or None,
        verify_tls=verify_tls,
        ca_file=_check_ca_file(ca_file),
        defaults=dict(defaults or {}),
        active=active,
    )
    _check_credentials(kind, conn.username, conn.token_id, bool(conn.secret))
    _check_name(session, name)
    session.add(conn)
    session.flush()
    record(session, who, "connection.create", "connection", conn.id, after=snapshot(conn))
    return conn


def update_connection(
    session: Session, who: Who, conn: HypervisorConnection, changes: dict[str, Any]
) -> HypervisorConnection:
    before = snapshot(conn)
    kind = HypervisorKind(conn.kind)
    if changes.get("name") is not None:
        conn.name = str(changes["name"]).strip()
        _check_name(session, conn.name, conn.id)
    if changes.get("url") is not None:
        conn.url = _check_url(kind, changes["url"])
    for field in ("username", "token_id"):
        if changes.get(field) is not None:
            setattr(conn, field, str(changes[field]).strip())
    if "secret" in changes and changes["secret"] is not None:
        conn.secret = changes["secret"] or None
    if changes.get("verify_tls") is not None:
        conn.verify_tls = bool(changes["verify_tls"])
    if "ca_file" in changes:
        conn.ca_file = _check_ca_file(changes["ca_file"])
    if changes.get("defaults") is not None:
        conn.defaults = dict(changes["defaults"])
    if changes.get("active") is not None:
        conn.active = bool(changes["active"])
    _check_credentials(kind, conn.username, conn.token_id, bool(conn.secret))
    after = snapshot(conn)
    secret_changed = "secret" in changes and changes["secret"] is not None
    if after != before or secret_changed:
        session.add(conn)
        record(
            session,
            who,
            "connection.update",
            "connection",
            conn.id,
            before=before,
            after=after,
            detail="secret replaced" if secret_changed else "",
        )
    return conn


def check_connection(session: Session, who: Who, conn: HypervisorConnection) -> ConnectionCheck:
    """Log in and read product, version and counts; the outcome is kept on the row and audited.

    ``check()`` never raises by contract; an adapter that does anyway is reported as a failure.
    """
    end_read_transaction(session)
    try:
        result = adapter_for(conn).check()
    except HypervisorError as exc:
        result = ConnectionCheck(ok=False, message=exc.message)
    if result.ok:
        with _templates_lock:  # reachable again: the request form may ask it at once
            _templates_failures.pop(_template_key(conn), None)
    conn.last_check_at = utcnow()
    conn.last_check_ok = result.ok
    conn.last_check_message = result.message[:1000]
    session.add(conn)
    record(
        session,
        who,
        "connection.test",
        "connection",
        conn.id,
        after={"ok": result.ok, "product": result.product, "version": result.version},
        result="ok" if result.ok else "failed",
        detail=result.message,
    )
    return result


def _template_key(conn: HypervisorConnection) -> tuple[object, ...]:
    cfg = config_of(conn)
    # A digest of the secret, not the secret: a corrected (or revoked) password must not keep
    # serving what the old one listed, and the cache key must not hold the secret itself.
    secret = hashlib.sha256(cfg.secret.encode()).hexdigest()[:16]
    return (conn.id, cfg.kind, cfg.url, cfg.username, cfg.token_id, cfg.verify_tls, cfg.ca_file, secret)


def templates_of(conn: HypervisorConnection, *, fresh: bool = False) -> list[TemplateInfo]:
    """The connection's templates, cached for ``TEMPLATE_TTL_SECONDS``. Raises HypervisorError."""
    key = _template_key(conn)
    now = time.monotonic()
    if not fresh:
        with _templates_lock:
            hit = _templates_cache.get(key)
        if hit is not None and now - hit[0] < TEMPLATE_TTL_SECONDS:
            return list(hit[1])
    try:
        templates = adapter_for(conn).list_templates()
    except HypervisorError:
        with _templates_lock:
            _templates_failures[key] = time.monotonic()
        raise
    with _templates_lock:
        _templates_cache[key] = (now, list(templates))
        _templates_failures.pop(key, None)
    return list(templates)


def _recently_failed(conn: HypervisorConnection) -> bool:
    with _templates_lock:
        failed_at = _templates_failures.get(_template_key(conn))
    return failed_at is not None and time.monotonic() - failed_at < TEMPLATE_FAILURE_TTL_SECONDS


def forget_templates() -> None:
    with _templates_lock:
        _templates_cache.clear()
        _templates_failures.clear()


def find_template(conn: HypervisorConnection, ref: str) -> TemplateInfo | None:
    """The template ``ref`` of the connection, or None when the hypervisor does not have it.
    Raises HypervisorError when the hypervisor cannot be asked."""
    for template in templates_of(conn):
        if template.ref == ref:
            return template
    # A template added a moment ago is not in the cache yet: ask once more before saying no.
    for template in templates_of(conn, fresh=True):
        if template.ref == ref:
            return template
    return None


def all_templates(
    session: Session,
) -> tuple[list[tuple[HypervisorConnection, TemplateInfo]], list[HypervisorConnection]]:
    """Templates of every active connection, and the connections that could not be asked."""
    connections = list_connections(session, active=True)
    end_read_transaction(session)
    found: list[tuple[HypervisorConnection, TemplateInfo]] = []
    failed: list[HypervisorConnection] = []
    for conn in connections:
        if _recently_failed(conn):
            failed.append(conn)  # asked moments ago and failed: do not make the form wait again
            continue
        try:
            found.extend((conn, t) for t in templates_of(conn))
        except HypervisorError as exc:
            log.warning("templates of connection %s unavailable: %s", conn.name, exc.message)
            failed.append(conn)
    return found, failed
