"""The vSphere change stream: ``WaitForUpdatesEx`` on a PropertyCollector of the stream's own.

vCenter pushes property changes; nothing is polled. One stream is one SOAP session of its own (the
adapter's other calls keep theirs), and in it:

* a PropertyCollector made for the stream (``CreatePropertyCollector``), so cancelling its wait
  touches nobody else's, with one filter over a ContainerView of every VM (traversal spec
  ``view``) reading exactly :data:`~hypervisors.vsphere.inventory.VM_PROPERTIES`, the properties
  :meth:`~hypervisors.vsphere.inventory.Inventory.list_vms` reads. Power state
  (``runtime.powerState``), the NICs' connectable state (``config.hardware.device``), addresses
  (``guest.net``, ``guest.ipAddress``) and the name are among them; a VM entering or leaving the
  view is a VM created or deleted. Watching the same properties as the inventory is what makes a
  change's ``vm`` the record ``get_vm`` would return, so a consumer can apply it without a re-read.
* ``WaitForUpdatesEx(version, maxWaitSeconds)``: the call blocks in vCenter until something
  changes or the wait ends, so a quiet inventory costs one idle request every
  :data:`WAIT_SECONDS` and no CPU. A thread beside the wait calls ``CancelWaitForUpdates`` when
  the caller's ``stop`` is set, so stopping takes well under a second.
* The first answer (version ``""``) is every VM; it is handed to :meth:`Stream.full`, which on a
  fresh stream is the resync batch and on a resumed one (a reconnect, or ``since`` of this
  process) only the differences from what was last reported. Later answers are folded into the
  per-VM property values kept here and handed to :meth:`Stream.update`.
* **Lost versions.** ``InvalidCollectorVersion`` (vCenter restarted its collector, or the version
  aged out), ``NotAuthenticated`` (the session expired) and a lost connection all end the session;
  the next one starts again from version ``""``, and the comparison in :meth:`Stream.full` turns
  that full reading into just what changed meanwhile. Transient failures are retried within the
  contract's window (:class:`~hypervisors.watch.RetryWindow`).

A change vCenter reports below a watched path (``config.hardware.device[4000].connectable``,
possible with real vCenter's partial updates) is not patched in place: the VM is re-read in one
round trip instead, so the record is always whole.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from pyVmomi import vim, vmodl

from hypervisors.base import ChangeBatch, ConnectionConfig, Retriable, VMInfo
from hypervisors.vsphere.collector import PC, Collector, Names, moid
from hypervisors.vsphere.endpoint import Endpoint
from hypervisors.vsphere.inventory import VM_PROPERTIES, referenced, vm_info
from hypervisors.vsphere.session import Session, service
from hypervisors.watch import RetryWindow, Stream, scope_of

log = logging.getLogger(__name__)

#: Longest single wait in vCenter (seconds): an idle stream makes one request this often. Kept
#: below the socket timeout (``ConnectionConfig.timeout``), which would otherwise cut the wait.
WAIT_SECONDS = 10
_WATCHED = frozenset(VM_PROPERTIES)


class _Restart(Exception):
    """The session's collector can no longer continue: start again from version ``""``."""


class VSphereStream:
    """One run of the stream; :meth:`batches` is the generator ``watch`` returns."""

    def __init__(
        self,
        config: ConnectionConfig,
        endpoint: Endpoint,
        collector: Collector,
        *,
        wait_seconds: int = WAIT_SECONDS,
        retry: RetryWindow | None = None,
    ) -> None:
        self.config = config
        self.endpoint = endpoint
        self.collector = collector
        self.wait_seconds = max(1, min(wait_seconds, int(config.timeout) - 5))
        self.retry = retry or RetryWindow()
        self.stream = Stream(scope_of(config))
        # The VM each moref stood for when last reported: a "leave" carries no properties, and
        # the stream is keyed by instance UUID.
        self._by_moref: dict[str, VMInfo] = {}

    def batches(self, stop: threading.Event, since: str | None) -> Iterator[ChangeBatch]:
        self.stream.resume(since)
        while not stop.is_set():
            session = Session(self.config, self.endpoint)
            try:
                yield from self._follow(session, stop)
            except _Restart as why:
                log.info("change stream of %s starts again: %s", self.endpoint, why)
            except Retriable as exc:
                if not self.retry.failed(exc, stop):
                    return
            finally:
                session.close()

    # ---- one session --------------------------------------------------------------------------

    def _follow(self, session: Session, stop: threading.Event) -> Iterator[ChangeBatch]:
        translate = session.translate
        content = session.call("log in", lambda c: c)
        with translate("create the change stream's property collector"):
            server = str(getattr(content.about, "instanceUuid", "") or "")
            pc = service(content.propertyCollector, "PropertyCollector").CreatePropertyCollector()
            view = service(content.viewManager, "ViewManager").CreateContainerView(
                content.rootFolder, [vim.VirtualMachine], True
            )
            pc.CreateFilter(self.collector.view_spec(view, vim.VirtualMachine, VM_PROPERTIES), True)
        halt = threading.Event()
        canceller = threading.Thread(
            target=self._cancel_on_stop, args=(pc, stop, halt), name="vsphere-watch-cancel", daemon=True
        )
        canceller.start()
        values: dict[str, dict[str, Any]] = {}  # moref -> property values as last reported
        objects: dict[str, Any] = {}  # moref -> managed object
        names = Names()
        version = ""
        reported = False  # the first (complete) reading of this session went to Stream.full
        try:
            while not stop.is_set():
                update = self._wait(session, pc, version, stop)
                if stop.is_set():
                    return
                if update is None:  # the wait ended with nothing new
                    continue
                version = str(update.version)
                touched, left, reread = self._fold(update, values, objects)
                if reread:
                    self._reread(session, reread, values, objects)
                if update.truncated:  # vCenter hands the rest out on the next call
                    continue
                infos = self._infos(session, touched if reported else set(values), values, objects, names)
                self.retry.succeeded()
                if not reported:
                    reported = True
                    present_all = [info for info in infos.values() if info is not None]
                    batch = self.stream.full(present_all, server=server)
                else:
                    gone = {ref for ref, info in infos.items() if info is None}
                    present = [info for info in infos.values() if info is not None]
                    removed = [self.stream.key(old) for ref in left | gone if (old := self._known(ref))]
                    # Every VM here is one vCenter says changed, even if it ended as it was.
                    changed = {self.stream.key(info) for info in present}
                    batch = self.stream.update(present, removed, changed=changed)
                if batch is not None:
                    yield batch
        finally:
            halt.set()
            with contextlib.suppress(Exception):
                pc.DestroyPropertyCollector()
            with contextlib.suppress(Exception):
                view.Destroy()

    def _cancel_on_stop(self, pc: Any, stop: threading.Event, halt: threading.Event) -> None:
        # Wakes once a second at most; a set ``stop`` cancels the wait vCenter is holding open.
        while not halt.is_set():
            if stop.wait(1.0):
                if not halt.is_set():
                    with contextlib.suppress(Exception):
                        pc.CancelWaitForUpdates()
                return

    def _wait(self, session: Session, pc: Any, version: str, stop: threading.Event) -> Any:
        options = PC.WaitOptions(maxWaitSeconds=0 if stop.is_set() else self.wait_seconds)
        try:
            with session.translate("wait for changes"):
                try:
                    return pc.WaitForUpdatesEx(version, options)
                except vmodl.fault.RequestCanceled:
                    return None  # our own cancel: stop is set
                except vmodl.query.InvalidCollectorVersion as exc:
                    raise _Restart(f"vCenter no longer knows version {version!r}") from exc
                except vim.fault.NotAuthenticated as exc:
                    raise _Restart("the session expired") from exc
        except Retriable:
            if stop.is_set():
                return None
            raise

    # ---- folding updates ----------------------------------------------------------------------

    @staticmethod
    def _fold(
        update: Any, values: dict[str, dict[str, Any]], objects: dict[str, Any]
    ) -> tuple[set[str], set[str], set[str]]:
        """Apply one UpdateSet to ``values``; the morefs touched, the ones that left, and those to
        re-read because a change came below a watched path."""
        touched: set[str] = set()
        left: set[str] = set()
        reread: set[str] = set()
        for filter_update in update.filterSet or []:
            for obj_update in filter_update.objectSet or []:
                ref = moid(obj_update.obj)
                kind = str(obj_update.kind)
                if kind == "leave":
                    values.pop(ref, None)
                    objects.pop(ref, None)
                    touched.discard(ref)
                    left.add(ref)
                    continue
                left.discard(ref)
                objects[ref] = obj_update.obj
                current = values.setdefault(ref, {})
                if kind == "enter":  # the whole object: nothing of an earlier reading stays
                    current.clear()
                for change in obj_update.changeSet or []:
                    name = str(change.name)
                    if name not in _WATCHED:
                        reread.add(ref)
                    elif str(change.op) in ("remove", "indirectRemove"):
                        current.pop(name, None)
                    else:
                        current[name] = change.val
                touched.add(ref)
        return touched, left, reread

    def _reread(
        self, session: Session, refs: set[str], values: dict[str, dict[str, Any]], objects: dict[str, Any]
    ) -> None:
        for ref in refs:
            obj = objects.get(ref)
            if obj is None:
                continue

            def read(content: vim.ServiceInstanceContent, target: Any = obj) -> dict[str, Any]:
                return self.collector.read(content, target, VM_PROPERTIES)

            try:
                values[ref] = session.call(f"re-read VM {ref}", read)
            except Exception as exc:  # gone meanwhile: its "leave" follows
                log.debug("re-reading %s after a partial update failed: %s", ref, exc)

    def _infos(
        self,
        session: Session,
        refs: set[str],
        values: dict[str, dict[str, Any]],
        objects: dict[str, Any],
        names: Names,
    ) -> dict[str, VMInfo | None]:
        """The records of ``refs`` (None: no configuration, as the inventory leaves such VMs out),
        naming first any host, pool, folder or network not named yet (one bulk retrieve)."""
        unnamed = {
            moid(o): o
            for ref in refs
            if ref in values
            for o in referenced(values[ref])
            if o is not None and moid(o) not in names.entities
        }
        if unnamed:
            found = session.call("name VM placements", lambda c: self.collector.names(c, unnamed.values()))
            names.entities.update(found.entities)
            names.portgroups.update(found.portgroups)
        infos: dict[str, VMInfo | None] = {}
        for ref in refs:
            if ref in values:
                infos[ref] = vm_info(objects[ref], values[ref], names)
        self._by_moref.update({ref: info for ref, info in infos.items() if info is not None})
        return infos

    def _known(self, ref: str) -> VMInfo | None:
        return self._by_moref.pop(ref, None)


def watch(
    config: ConnectionConfig,
    endpoint: Endpoint,
    collector: Collector,
    stop: threading.Event,
    since: str | None = None,
    *,
    wait_seconds: int = WAIT_SECONDS,
) -> Iterator[ChangeBatch]:
    """The contract's ``watch`` for vCenter (see the module docstring)."""
    return VSphereStream(config, endpoint, collector, wait_seconds=wait_seconds).batches(stop, since)
