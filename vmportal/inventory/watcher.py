"""The inventory's change stream: one watcher per hypervisor connection, acting on changes at once.

Each watcher follows ``adapter.watch`` (vSphere: ``WaitForUpdatesEx``, pushed by vCenter;
Proxmox: ``/cluster/resources`` polled every few seconds; the simulator: polled) and reconciles
every batch through :func:`service.reconcile`, the full sync's own code, narrowed to the VMs the
batch names (``only``): drift, missing and new VMs are handled by one code path, the hooks
registered on it (re-containment) run within a second of the change, and a batch costs a few
statements whatever the size of the inventory. A resync batch (a watcher's first, or one whose
version was lost) is the whole inventory, reconciled in full; the periodic full sync stays as the
safety net. A watcher started again (a new process) begins with such a resync, which compares the
hypervisor's present with the database: nothing that changed while nobody watched is lost.

:func:`start` runs :func:`supervise`, which keeps a watcher thread per active connection and picks
up connections added later; the embedded portal (``app/embedded.start_watchers``) and
``vmportal watch`` (its own docker-compose service) call it.

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

from hypervisors import HypervisorError
from hypervisors.base import ChangeBatch, ChangeKind, NotSupported, Retriable
from vmportal.audit.service import Who
from vmportal.connection.models import HypervisorConnection
from vmportal.connection.service import adapter_for, close_adapters
from vmportal.inventory import repository, service
from vmportal.kit import db
from vmportal.kit.locks import advisory_lease
from vmportal.kit.settings import get_settings

log = logging.getLogger(__name__)

WHO = Who.system("inventory-watch")
#: Seconds between attempts to take a lease another process holds, or after the stream failed.
RETRY_SECONDS = 5.0
#: Seconds between two readings of the VMs a containment holds (:func:`check_holds`).
HOLD_CHECK_SECONDS = 10.0
#: Seconds between looks for connections added (or re-activated) since the watchers started.
RESCAN_SECONDS = 30.0


@contextlib.contextmanager
def lease(connection_id: int) -> Iterator[bool]:
    """Whether this process holds connection ``connection_id``'s watcher lease (for the block)."""
    engine = db.engine()
    if engine.dialect.name == "postgresql":
        key = zlib.crc32(f"vmportal.watch.{connection_id}".encode())
        with advisory_lease(engine, key) as got:
            yield got
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
        self.batches = 0
        self.last_report: service.SyncReport | None = None

    def apply(self, batch: ChangeBatch) -> service.SyncReport | None:
        """Reconcile the connection's rows with ``batch``: the whole inventory for a resync, else
        only the rows of the VMs the batch names (a few statements, whatever the inventory's size)."""
        with db.transaction() as session:
            conn = session.get(HypervisorConnection, self.connection_id)
            if conn is None or not conn.active:
                return None
            if batch.resync:
                report = service.reconcile(session, conn, list(batch.inventory), WHO)
            else:
                moved = {c.previous_ref: c.ref for c in batch.changes if c.previous_ref}
                if moved:
                    service.move_refs(session, self.connection_id, moved)
                present = [c.vm for c in batch.changes if c.kind is not ChangeKind.DELETED and c.vm]
                refs = {c.ref for c in batch.changes}
                report = service.reconcile(session, conn, present, WHO, only=refs)
        self.version = batch.version  # only once the batch is in the database
        self.batches += 1
        self.last_report = report
        return report

    def run(self, stop: threading.Event) -> None:
        """Follow the stream until ``stop`` (or the connection is deactivated or deleted);
        reconnects resume from :attr:`version`."""
        while not stop.is_set():
            with db.transaction(read_only=True) as session:
                conn = session.get(HypervisorConnection, self.connection_id)
                adapter = adapter_for(conn) if conn is not None and conn.active else None
            if adapter is None:
                return
            try:
                for batch in adapter.watch(stop, since=self.version):
                    if self.apply(batch) is None:
                        return  # deactivated or deleted meanwhile
            except NotSupported:
                log.info(
                    "connection %s has no change stream: the periodic sync covers it", self.connection_id
                )
                return
            except HypervisorError as exc:
                log.warning("watch of connection %s: %s", self.connection_id, exc.message)
                stop.wait(exc.defer if isinstance(exc, Retriable) else RETRY_SECONDS)
            except Exception:
                # The database (or a hook) failed on a batch: that batch is not applied, so start
                # again from a complete reading rather than from a version past it.
                log.exception("watch of connection %s failed; starting again", self.connection_id)
                self.version = None
                stop.wait(RETRY_SECONDS)
            finally:
                adapter.close()


def check_holds(connection_id: int) -> service.SyncReport | None:
    """Read again, from the hypervisor, every VM of the connection that a confirmed containment
    holds, and reconcile them (the re-containment hook acts on any that came loose). The change
    stream should have reported a tampered VM already; this is the backstop for a change it did not
    carry (a polled stream's change undone within one interval, an update a server dropped), so a
    loose containment is found within :data:`HOLD_CHECK_SECONDS`, not at the next full sync."""
    with db.transaction(read_only=True) as session:
        conn = session.get(HypervisorConnection, connection_id)
        if conn is None or not conn.active:
            return None
        refs = service.held_refs(session, connection_id)
        adapter = adapter_for(conn) if refs else None
    if adapter is None:
        return None
    infos = []
    # The thread's cached adapter stays open between rounds (one vCenter session for the guard's
    # life, not a log-in every round); _guard_holds closes it when the watcher ends.
    for ref in refs:
        try:
            infos.append(adapter.get_vm(ref))
        except HypervisorError as exc:  # gone or unreachable: the stream and the sync see to it
            log.debug("hold check of %s on connection %s: %s", ref, connection_id, exc.message)
    if not infos:
        return None
    with db.transaction() as session:
        conn = session.get(HypervisorConnection, connection_id)
        if conn is None or not conn.active:
            return None
        return service.reconcile(session, conn, infos, WHO, only={info.ref for info in infos}, recheck=True)


def _guard_holds(connection_id: int, stop: threading.Event, ended: threading.Event) -> None:
    try:
        while not stop.is_set() and not ended.wait(HOLD_CHECK_SECONDS):
            try:
                check_holds(connection_id)
            except Exception:  # the database or the hypervisor briefly away: the next round tries again
                log.exception("hold check of connection %s failed", connection_id)
    finally:
        close_adapters()


def watch_connection(connection_id: int, stop: threading.Event) -> None:
    """Watch one connection for as long as this process holds its lease (and ``stop`` is unset),
    with the hold check beside the stream."""
    while not stop.is_set():
        with lease(connection_id) as held:
            if held:
                log.info("watching connection %s", connection_id)
                ended = threading.Event()
                guard = threading.Thread(
                    target=_guard_holds,
                    args=(connection_id, stop, ended),
                    name=f"holds-{connection_id}",
                    daemon=True,
                )
                guard.start()
                try:
                    Watcher(connection_id).run(stop)
                finally:
                    ended.set()
                    guard.join(timeout=10)
                return
        stop.wait(RETRY_SECONDS)


def _active_connections() -> list[int]:
    with db.transaction(read_only=True) as session:
        return repository.active_connection_ids(session)


def supervise(stop: threading.Event, *, rescan: float = RESCAN_SECONDS) -> None:
    """A watcher thread per active connection, for as long as ``stop`` is unset: connections added
    or re-activated later are picked up within ``rescan`` seconds, and a watcher whose connection
    went away ends by itself (and is started again if the connection comes back)."""
    threads: dict[int, threading.Thread] = {}
    while not stop.is_set():
        try:
            ids = _active_connections()
        except Exception:  # the database is briefly away: try again at the next look
            log.exception("listing the connections to watch failed")
            ids = []
        for connection_id in ids:
            thread = threads.get(connection_id)
            if thread is not None and thread.is_alive():
                continue
            thread = threading.Thread(
                target=watch_connection,
                args=(connection_id, stop),
                name=f"watch-{connection_id}",
                daemon=True,
            )
            thread.start()
            threads[connection_id] = thread
        if stop.wait(rescan):
            break
    for thread in threads.values():
        thread.join(timeout=5)


def start(stop: threading.Event) -> list[threading.Thread]:
    """Start :func:`supervise` in a daemon thread (the embedded portal, ``vmportal watch``, a
    worker); the one thread is returned."""
    thread = threading.Thread(target=supervise, args=(stop,), name="watch-supervisor", daemon=True)
    thread.start()
    return [thread]
