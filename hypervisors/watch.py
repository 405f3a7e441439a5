"""What every change stream shares: the last reported state, its versions, and retrying.

A change stream (:meth:`~hypervisors.base.HypervisorAdapter.watch`) is built the same way for every
hypervisor: the adapter learns, by whatever means its hypervisor offers (vSphere pushes property
updates, Proxmox and the simulator are polled), the current :class:`~hypervisors.base.VMInfo` of
some VMs, and :class:`Stream` turns that into :class:`~hypervisors.base.ChangeBatch` es by comparing
with what it reported last. Keeping that comparison here, and not in each adapter, is what makes the
contract's promises hold everywhere:

* **Versions are ours, not the hypervisor's.** vCenter's collector versions die with the session
  that made them and Proxmox has none, so a version is ``<lineage>.<n>``: a random lineage for one
  run of reports, and the count of batches in it. Each batch's snapshot (key to VMInfo) is kept as a
  process-wide checkpoint (:data:`CHECKPOINTS`, the last few per connection), so a stream restarted
  from a version, by a new adapter of the same process even, compares the hypervisor's present
  against that snapshot and reports exactly what changed meanwhile.
* **A resync only when continuity is truly unknown**: no ``since``, a version no checkpoint holds
  (made up, from another process, too old), or a server whose identity differs from the one the
  checkpoint was taken on (a replaced vCenter, a reset simulator world).
* **Reconnects are comparisons too**: after a lost session an adapter hands :meth:`Stream.full` the
  whole present inventory and only the differences come out.

Checkpoints cost one dict of references per batch (the VMInfo records are shared, immutable): for
5,000 VMs about half a megabyte each, :data:`CHECKPOINTS_PER_SCOPE` of them per connection.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hypervisors.base import (
    WATCHED_FIELDS,
    ChangeBatch,
    ChangeKind,
    ConnectionConfig,
    Retriable,
    VMChange,
    VMInfo,
)

log = logging.getLogger(__name__)

#: Versions per connection a stream can resume from: the newest and a few before it, so a
#: consumer that crashed before recording its last batch or two still resumes without a resync.
CHECKPOINTS_PER_SCOPE = 8
#: Connections remembered per process (least recently used forgotten first).
MAX_SCOPES = 64

#: How long transient failures are retried inside ``watch`` before it raises (seconds).
DEFAULT_RETRY_WINDOW = 60.0


def differences(old: VMInfo, new: VMInfo) -> dict[str, Any]:
    """The watched fields of ``new`` that differ from ``old``, with ``new``'s values."""
    return {name: getattr(new, name) for name in WATCHED_FIELDS if getattr(old, name) != getattr(new, name)}


def all_fields(vm: VMInfo) -> dict[str, Any]:
    return {name: getattr(vm, name) for name in WATCHED_FIELDS}


@dataclass(frozen=True)
class Checkpoint:
    """What a stream had reported at one version, and on which server."""

    snapshot: Mapping[str, VMInfo]  # stream key -> VM
    server: str


class Checkpoints:
    """Process-wide store of checkpoints, by connection scope and version. Thread-safe."""

    def __init__(self, per_scope: int = CHECKPOINTS_PER_SCOPE, scopes: int = MAX_SCOPES) -> None:
        self.per_scope = per_scope
        self.scopes = scopes
        self._lock = threading.Lock()
        self._data: OrderedDict[str, OrderedDict[str, Checkpoint]] = OrderedDict()

    def save(self, scope: str, version: str, checkpoint: Checkpoint) -> None:
        with self._lock:
            versions = self._data.setdefault(scope, OrderedDict())
            self._data.move_to_end(scope)
            versions[version] = checkpoint
            versions.move_to_end(version)
            while len(versions) > self.per_scope:
                versions.popitem(last=False)
            while len(self._data) > self.scopes:
                self._data.popitem(last=False)

    def load(self, scope: str, version: str) -> Checkpoint | None:
        with self._lock:
            versions = self._data.get(scope)
            return None if versions is None else versions.get(version)

    def forget(self, scope: str | None = None) -> None:
        """Drop the checkpoints of one connection, or of all (tests, a reconfigured connection)."""
        with self._lock:
            if scope is None:
                self._data.clear()
            else:
                self._data.pop(scope, None)


CHECKPOINTS = Checkpoints()


def _parse_version(version: str) -> tuple[str, int] | None:
    lineage, _, count = version.rpartition(".")
    if not lineage or not count.isdigit():
        return None
    return lineage, int(count)


class Stream:
    """One change stream's memory: what it last reported (by key), and its version.

    ``scope`` names the connection (URL and account, never a secret): a version resumes only within
    its scope. ``key`` gives a VM's identity in the snapshot; the ref by default, the vmid for
    Proxmox, whose refs change when a VM migrates. Not thread-safe: one generator owns it.
    """

    def __init__(
        self,
        scope: str,
        *,
        key: Callable[[VMInfo], str] = lambda vm: vm.ref,
        checkpoints: Checkpoints = CHECKPOINTS,
    ) -> None:
        self.scope = scope
        self.key = key
        self.checkpoints = checkpoints
        self.server = ""
        self._snapshot: dict[str, VMInfo] | None = None
        self._lineage = ""
        self._count = 0
        self._resync_reason = "the stream starts without a version: here is the whole inventory"

    # ---- where it starts ----------------------------------------------------------------------

    def resume(self, since: str | None) -> bool:
        """Start after ``since``; False (and the next :meth:`full` is a resync) when it cannot."""
        if since is None:
            return False
        parsed = _parse_version(since)
        checkpoint = self.checkpoints.load(self.scope, since) if parsed else None
        if parsed is None or checkpoint is None:
            self._resync_reason = (
                f"version {since!r} cannot be resumed here (unknown to this process, or older than "
                f"its last {self.checkpoints.per_scope} batches): here is the whole inventory"
            )
            return False
        self._lineage, self._count = parsed
        self._snapshot = dict(checkpoint.snapshot)
        self.server = checkpoint.server
        return True

    @property
    def version(self) -> str:
        return f"{self._lineage}.{self._count}"

    @property
    def started(self) -> bool:
        """Whether the stream has a baseline (reported an inventory, or resumed from one)."""
        return self._snapshot is not None

    def known(self, key: str) -> VMInfo | None:
        return None if self._snapshot is None else self._snapshot.get(key)

    def keys(self) -> set[str]:
        return set() if self._snapshot is None else set(self._snapshot)

    # ---- what it reports ----------------------------------------------------------------------

    def full(
        self, inventory: Iterable[VMInfo], *, server: str = "", received_at: float | None = None
    ) -> ChangeBatch | None:
        """The present inventory, complete: a resync batch when the stream has no baseline (or the
        server is not the one it had), else the differences (None when there are none)."""
        present = list(inventory)
        when = time.time() if received_at is None else received_at
        if self._snapshot is not None and server and self.server and server != self.server:
            self._resync_reason = (
                f"the hypervisor is not the one this version was taken on (server {self.server} "
                f"then, {server} now): here is the whole inventory"
            )
            self._snapshot = None
        if self._snapshot is None:
            self.server = server
            self._snapshot = {self.key(vm): vm for vm in present}
            self._lineage, self._count = secrets.token_hex(6), 1
            batch = ChangeBatch(
                version=self.version,
                resync=True,
                inventory=tuple(present),
                reason=self._resync_reason,
                received_at=when,
            )
            self._checkpoint()
            return batch
        self.server = server or self.server
        gone = set(self._snapshot) - {self.key(vm) for vm in present}
        return self.update(present, gone, received_at=when)

    def update(
        self,
        upserts: Iterable[VMInfo],
        removed: Iterable[str] = (),
        *,
        changed: Collection[str] = (),
        received_at: float | None = None,
    ) -> ChangeBatch | None:
        """Some VMs as they are now (``upserts``) and keys of VMs that are gone; the batch of what
        differs from the last report, or None when nothing does.

        ``changed``: keys the hypervisor itself says were modified (vCenter's update set). Such a
        VM is reported even when it ends as the stream last saw it: a change undone between two
        reads (a NIC cut by the portal's containment and ticked again by hand) leaves the stream's
        snapshot equal, but the consumer's record moved in between, and only it can tell."""
        assert self._snapshot is not None, "full() or resume() first"
        snapshot = self._snapshot
        changes: list[VMChange] = []
        for vm in upserts:
            key = self.key(vm)
            old = snapshot.get(key)
            if old is None:
                changes.append(VMChange(ref=vm.ref, kind=ChangeKind.CREATED, vm=vm, fields=all_fields(vm)))
            else:
                fields = differences(old, vm)
                if not fields and key not in changed:
                    continue
                previous = old.ref if old.ref != vm.ref else None
                changes.append(
                    VMChange(ref=vm.ref, kind=ChangeKind.CHANGED, vm=vm, fields=fields, previous_ref=previous)
                )
            snapshot[key] = vm
        for key in removed:
            old = snapshot.pop(key, None)
            if old is not None:
                changes.append(VMChange(ref=old.ref, kind=ChangeKind.DELETED, vm=None))
        if not changes:
            return None
        self._count += 1
        self._checkpoint()
        return ChangeBatch(
            version=self.version,
            changes=tuple(changes),
            received_at=time.time() if received_at is None else received_at,
        )

    def _checkpoint(self) -> None:
        assert self._snapshot is not None
        self.checkpoints.save(self.scope, self.version, Checkpoint(dict(self._snapshot), self.server))


class RetryWindow:
    """Transient failures inside ``watch``: wait (1, 2, 4 ... ``cap`` s) until ``window`` seconds
    have passed since the first failure of a run, then let the caller have the error."""

    def __init__(
        self, window: float = DEFAULT_RETRY_WINDOW, *, first: float = 1.0, cap: float = 15.0
    ) -> None:
        self.window = window
        self.first = first
        self.cap = cap
        self._since: float | None = None
        self._delay = first

    def failed(self, exc: Retriable, stop: threading.Event) -> bool:
        """Wait before the next attempt; False when ``stop`` was set meanwhile. Raises ``exc``
        once the failures have lasted longer than the window."""
        now = time.monotonic()
        if self._since is None:
            self._since, self._delay = now, self.first
        elapsed = now - self._since
        if elapsed >= self.window:
            raise exc
        delay = min(self._delay, self.cap, max(self.window - elapsed, 0.05))
        self._delay = min(self._delay * 2, self.cap)
        log.warning("change stream: %s; retrying in %.0f s", exc.message, delay)
        return not stop.wait(delay)

    def succeeded(self) -> None:
        self._since = None


#: How often a polled stream looks (seconds): "every few seconds" for hypervisors without push.
DEFAULT_POLL_INTERVAL = 3.0


def scope_of(config: ConnectionConfig) -> str:
    """A connection's checkpoint scope: its kind, URL and account (never a secret)."""
    return f"{config.kind}:{config.url}:{config.username}"


def poll(
    stream: Stream,
    inventory: Callable[[], Iterable[VMInfo]],
    stop: threading.Event,
    since: str | None,
    *,
    interval: float = DEFAULT_POLL_INTERVAL,
    server: Callable[[], str] = lambda: "",
    retry: RetryWindow | None = None,
) -> Iterator[ChangeBatch]:
    """A change stream for a hypervisor that cannot push: read the whole inventory every
    ``interval`` seconds and report only what differs (the contract of ``watch``)."""
    stream.resume(since)
    window = retry or RetryWindow()
    while not stop.is_set():
        try:
            present = list(inventory())
            where = server()
        except Retriable as exc:
            if not window.failed(exc, stop):
                return
            continue
        window.succeeded()
        batch = stream.full(present, server=where)
        if batch is not None:
            yield batch
        if stop.wait(interval):
            return
