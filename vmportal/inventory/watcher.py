"""The inventory's change stream: one watcher per hypervisor connection, acting on changes at once.

Each watcher follows ``adapter.watch`` (vSphere and the simulator: their stream; Proxmox: its
``/cluster/resources``-backed inventory polled every few seconds) and keeps the connection's
inventory as last reported. Every batch is reconciled like a full sync (:func:`service.reconcile`,
a fixed number of statements), so drift, missing and new VMs are handled by one code path and the
hooks registered on it (re-containment, the address index) run within seconds of the change. A
resync batch is the full inventory; the periodic full sync stays as the safety net.

One watcher per connection across processes: a lease taken with ``pg_try_advisory_lock`` on
PostgreSQL (held by a connection of its own while the watcher lives, freed by the server if the
process dies) or, on SQLite (one host), an ``flock`` on a file in the data folder. A process that
cannot take the lease waits and tries again, so a second worker takes over when the first stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from hypervisors import HypervisorError, VMInfo
from hypervisors.base import ChangeBatch, ChangeKind, NotSupported, Retriable
from vmportal.audit.service import Who
from vmportal.connection.models import HypervisorConnection
from vmportal.connection.service import adapter_for
from vmportal.inventory import service
from vmportal.kit import db
from vmportal.kit.settings import get_settings

log = logging.getLogger(__name__)

WHO = Who.system("inventory-watch")
#: Seconds between attempts to take a lease another process holds, or after the stream failed.
RETRY_SECONDS = 5.0


@contextlib.contextmanager
def lease(connection_id: int) -> Iterator[bool]:
    """Whether this process holds connection ``connection_id``'s watcher lease (for the block)."""
    engine = db.engine()
    if engine.dialect.name == "postgresql":
        key = zlib.crc32(f"vmportal.watch.{connection_id}".encode())
        with engine.connect() as conn:
            got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
        return
    path = get_settings().data_dir / f"watch-{connection_id}.lock"
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Watcher:
    """One connection's stream, applied batch by batch. ``version`` is where it resumes."""

    def __init__(self, connection_id: int) -> None:
        self.connection_id = connection_id
        self.version: str | None = None
        self.inventory: dict[str, VMInfo] = {}
        self.batches = 0

    def apply(self, batch: ChangeBatch) -> service.SyncReport | None:
        """Fold ``batch`` into the known inventory and reconcile the connection's rows with it."""
        if batch.resync:
            self.inventory = {vm.ref: vm for vm in batch.inventory}
        for change in batch.changes:
            if change.previous_ref:
                self.inventory.pop(change.previous_ref, None)
            if change.kind is ChangeKind.DELETED:
                self.inventory.pop(change.ref, None)
            elif change.vm is not None:
                self.inventory[change.ref] = change.vm
        self.version = batch.version
        self.batches += 1
        with db.transaction() as session:
            conn = session.get(HypervisorConnection, self.connection_id)
            if conn is None or not conn.active:
                return None
            return service.reconcile(session, conn, list(self.inventory.values()), WHO)

    def run(self, stop: threading.Event) -> None:
        """Follow the stream until ``stop``; reconnects resume from :attr:`version`."""
        while not stop.is_set():
            with db.transaction(read_only=True) as session:
                conn = session.get(HypervisorConnection, self.connection_id)
                adapter = adapter_for(conn) if conn is not None and conn.active else None
            if adapter is None:
                return
            try:
                for batch in adapter.watch(stop, since=self.version):
                    self.apply(batch)
            except NotSupported:
                log.info(
                    "connection %s has no change stream: the periodic sync covers it", self.connection_id
                )
                return
            except (Retriable, HypervisorError) as exc:
                log.warning("watch of connection %s: %s", self.connection_id, exc.message)
                stop.wait(RETRY_SECONDS)
            finally:
                adapter.close()


def watch_connection(connection_id: int, stop: threading.Event) -> None:
    """Watch one connection for as long as this process holds its lease (and ``stop`` is unset)."""
    while not stop.is_set():
        with lease(connection_id) as held:
            if held:
                Watcher(connection_id).run(stop)
                return
        stop.wait(RETRY_SECONDS)


def start(stop: threading.Event) -> list[threading.Thread]:
    """A daemon thread per active connection (the embedded portal and ``vmportal watch``)."""
    with db.transaction(read_only=True) as session:
        ids: list[Any] = list(
            session.exec(
                sa.select(HypervisorConnection.id).where(  # type: ignore[call-overload]
                    HypervisorConnection.active.is_(True)  # type: ignore[attr-defined]
                )
            ).scalars()
        )
    threads = []
    for connection_id in ids:
        thread = threading.Thread(
            target=watch_connection,
            args=(int(connection_id), stop),
            name=f"watch-{connection_id}",
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    return threads
