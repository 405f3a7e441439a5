"""PostgreSQL advisory locks held by a connection of their own: a lease across processes.

A lease is not a domain's query (it locks no row, only a number every process agrees on), so it lives
here, beside the engine, for whoever needs "one of us at a time, across processes": the inventory
watcher takes one per hypervisor connection. The server frees a session lock when its connection
closes, so a process that dies lets the next one take over without any clean-up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine

_TRY = {1: sa.text("SELECT pg_try_advisory_lock(:a)"), 2: sa.text("SELECT pg_try_advisory_lock(:a, :b)")}
_UNLOCK = {1: sa.text("SELECT pg_advisory_unlock(:a)"), 2: sa.text("SELECT pg_advisory_unlock(:a, :b)")}


def _params(keys: tuple[int, ...]) -> dict[str, int]:
    if len(keys) not in _TRY:
        raise ValueError("an advisory lock takes one bigint key or two int keys")
    return dict(zip(("a", "b"), keys, strict=False))


@contextlib.contextmanager
def advisory_lease(engine: Engine, *keys: int) -> Iterator[bool]:
    """Whether this process holds the session advisory lock ``keys`` (one bigint, or two ints) for
    the block, without waiting: False when another connection holds it. PostgreSQL only.

    The lock is taken on a connection of its own, kept open for the block: a transaction that ends
    (the caller's commits and rollbacks) does not free a session lock, and the block's own work runs
    on other connections. Each statement is committed at once so the lease's connection never sits
    idle in a transaction."""
    params = _params(keys)
    with engine.connect() as conn:
        got = bool(conn.execute(_TRY[len(keys)], params).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(_UNLOCK[len(keys)], params)
                conn.commit()
