"""Building adapters for registered hypervisor connections."""

from __future__ import annotations

import threading

from sqlmodel import Session

from hypervisors import ConnectionConfig, HypervisorAdapter, HypervisorKind, create
from vmportal import errors
from vmportal.connection.models import HypervisorConnection

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


def get_connection(session: Session, connection_id: int) -> HypervisorConnection:
    conn = session.get(HypervisorConnection, connection_id)
    if conn is None:
        raise errors.NotFound("hypervisor connection", connection_id)
    return conn
