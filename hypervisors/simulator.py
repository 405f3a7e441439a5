"""An in-process hypervisor: the embedded default, demos, and the app's tests.

It keeps the whole :class:`~hypervisors.base.HypervisorAdapter` contract with no server behind it.
Where its state lives is chosen by the connection URL:

``simulator:///abs/path/state.json``
    A JSON file, re-read whenever another adapter or process changed it and rewritten atomically
    (temporary file + ``os.replace``) after every change, under a thread lock and an ``fcntl`` lock
    on ``state.json.lock``, so the API process and in-process tasks can share it and the inventory
    survives a restart of the embedded portal.
``simulator://memory``
    A private in-memory world, fresh for every adapter (unit tests).
``simulator://memory/<name>``
    An in-memory world shared by every adapter of this process built with the same name (an app
    that builds one adapter per call keeps its VMs). :meth:`SimulatorAdapter.drop_memory_worlds`
    forgets them.

A new world is seeded with OS templates (CentOS 7.9, Rocky Linux 9, Ubuntu 22.04, Debian 12,
Windows Server 2019), networks (``VM Network``, ``campus-servers``, ``campus-dmz``) and two
datastores: ``sim-ds-01`` (the default, ample) and ``sim-ds-full`` (10 GiB, so a clone placed there
with ``placement={"datastore": "sim-ds-full"}`` fails as a real task would, leaving no VM).

Connection defaults (``ConnectionConfig.defaults``): ``network``, ``datastore``, ``folder``,
``cluster``, ``host`` set the default placement; ``fail`` arms faults (below); ``lacks`` names
capabilities the simulated hypervisor does not have (``"guest_power"``, ``"web_block"``, or both
comma-separated): ``capabilities`` says so, and guest shutdown/reboot or ``set_web_block`` then
raise :class:`~hypervisors.base.NotSupported` as a real adapter without them would.

Faults, for tests
-----------------
:meth:`SimulatorAdapter.inject_fault` makes the next call(s) of one operation raise an error of the
:class:`~hypervisors.base.HypervisorError` tree::

    adapter.inject_fault("clone", TaskFailed("datastore on fire"))     # next clone fails
    adapter.inject_fault("power", Retriable, times=2)                  # next two power calls
    adapter.inject_fault("*", Unreachable, times=None)                 # every call, until cleared

Operations are the adapter's method names (``check``, ``list_vms``, ``list_templates``,
``get_vm``, ``find_by_marker``, ``clone``, ``power``, ``set_network``, ``set_web_block``, ``delete``,
``wait_task``) or ``*`` for any. Faults live in the world's state, so a fault injected into a
file-backed world by a test is seen by the portal process using that file. A ``TaskFailed`` fault on
a mutating call is also recorded as a failed task; ``check()`` reports any fault as ``ok=False``.

The same from the configuration: ``defaults={"fail": "clone"}``, or a comma-separated list of
``operation[:kind[:times]]`` with kind one of ``task_failed`` (the default), ``retriable``,
``unreachable``, ``auth_failed``, ``tls_failed``, ``not_found``, ``not_supported``,
``invalid_spec`` and times a count (default 1) or ``always``: ``"clone:retriable:2,delete"``,
``"*:unreachable:always"``. Each distinct ``fail`` string is armed once per world (not once per
adapter), so "the first clone on this simulator fails" holds even when the app builds a new adapter
for every call, and a retry then succeeds.

Drift, for inventory reconciliation tests: :meth:`SimulatorAdapter.add_unmanaged_vm` creates a VM
behind the portal's back, :meth:`SimulatorAdapter.set_power_state` changes a power state without a
task or a transition check. :meth:`SimulatorAdapter.verify_admin_password` checks the password a VM
was cloned with against the salted hash, the only form in which it is kept.
"""

from __future__ import annotations

import abc
import base64
import contextlib
import copy
import dataclasses
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hypervisors.base import (
    POWER_ACTION_ALLOWED_FROM,
    POWER_ACTION_RESULT,
    AuthFailed,
    Capabilities,
    ChangeBatch,
    CloneSpec,
    ConnectionCheck,
    ConnectionConfig,
    DiskInfo,
    HypervisorError,
    HypervisorKind,
    InvalidSpec,
    NICInfo,
    NotFound,
    NotSupported,
    PowerAction,
    PowerState,
    Retriable,
    TaskFailed,
    TaskResult,
    TemplateInfo,
    TLSFailed,
    Unreachable,
    VMInfo,
)
from hypervisors.registry import register
from hypervisors.watch import Stream, poll, scope_of

PRODUCT = "vmportal hypervisor simulator"
VERSION = "1.0"
STATE_VERSION = 1

#: Task records kept per world; older ones are dropped so the state file does not grow forever.
TASK_LOG_LIMIT = 500

#: The hash only lets tests confirm the password a VM was cloned with; the simulator guards no
#: real secret, so the work factor is kept low enough that the app's tests can clone thousands.
_PBKDF2_ITERATIONS = 5_000

FAULT_KINDS: Mapping[str, type[HypervisorError]] = {
    "task_failed": TaskFailed,
    "retriable": Retriable,
    "unreachable": Unreachable,
    "auth_failed": AuthFailed,
    "tls_failed": TLSFailed,
    "not_found": NotFound,
    "not_supported": NotSupported,
    "invalid_spec": InvalidSpec,
}

OPERATIONS = frozenset(
    {
        "check",
        "list_vms",
        "list_templates",
        "get_vm",
        "find_by_marker",
        "clone",
        "power",
        "set_network",
        "set_web_block",
        "delete",
        "wait_task",
    }
)
_MUTATING = frozenset({"clone", "power", "set_network", "set_web_block", "delete"})

#: ref, name, guest OS, vcpus, memory MiB, disk GiB
_SEED_TEMPLATES: tuple[tuple[str, str, str, int, int, int], ...] = (
    ("tpl-centos-7.9", "CentOS 7.9", "CentOS Linux 7.9 (64-bit)", 2, 4096, 40),
    ("tpl-rocky-9", "Rocky Linux 9", "Rocky Linux 9.4 (64-bit)", 2, 4096, 40),
    ("tpl-ubuntu-22.04", "Ubuntu 22.04 LTS", "Ubuntu Linux 22.04 (64-bit)", 2, 4096, 40),
    ("tpl-debian-12", "Debian 12", "Debian GNU/Linux 12 (64-bit)", 1, 2048, 30),
    ("tpl-windows-2019", "Windows Server 2019", "Microsoft Windows Server 2019 (64-bit)", 4, 8192, 80),
)
_SEED_NETWORKS: tuple[dict[str, Any], ...] = (
    {"name": "VM Network", "vlan": 0, "cidr": "192.168.0.0/24"},
    {"name": "campus-servers", "vlan": 101, "cidr": "10.10.101.0/24"},
    {"name": "campus-dmz", "vlan": 200, "cidr": "10.10.200.0/24"},
)
_SEED_DATASTORES: Mapping[str, int] = {"sim-ds-01": 1_000_000, "sim-ds-full": 10}
_DEFAULT_PLACEMENT: Mapping[str, str] = {
    "datacenter": "sim-dc",
    "cluster": "sim-cluster",
    "host": "sim-esx-01",
    "datastore": "sim-ds-01",
    "folder": "vmportal",
}
_PLACEMENT_DEFAULT_KEYS = ("datastore", "folder", "cluster", "host", "pool", "node")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _seed_state() -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "created_at": _now(),
        "templates": {
            ref: {
                "ref": ref,
                "name": name,
                "os": guest_os,
                "vcpus": vcpus,
                "memory_mib": memory_mib,
                "disk_gib": disk_gib,
                "network": "VM Network",
            }
            for ref, name, guest_os, vcpus, memory_mib, disk_gib in _SEED_TEMPLATES
        },
        "networks": {n["name"]: dict(n) for n in _SEED_NETWORKS},
        "datastores": {name: {"capacity_gib": cap, "used_gib": 0} for name, cap in _SEED_DATASTORES.items()},
        "vms": {},
        "tasks": {},
        "faults": [],
        "armed": [],
        "counters": {"vm": 1000, "task": 0, "mac": 0},
    }


# --------------------------------------------------------------------------------------------
# Where a world's state lives
# --------------------------------------------------------------------------------------------


class _World(abc.ABC):
    """One simulated hypervisor's state, handed out one transaction at a time."""

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[_Txn]: ...

    @abc.abstractmethod
    def describe(self) -> str: ...


@dataclass
class _Txn:
    state: dict[str, Any]
    dirty: bool = False


class _MemoryWorld(_World):
    def __init__(self, name: str | None) -> None:
        self.name = name
        self._lock = threading.RLock()
        self._state = _seed_state()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Txn]:
        # Operations validate before they mutate, so nothing needs rolling back on an error.
        with self._lock:
            yield _Txn(self._state)

    def describe(self) -> str:
        return f"in-memory world {self.name!r}" if self.name else "private in-memory world"


class _FileWorld(_World):
    """State in a JSON file shared by threads and processes.

    The lock is taken on a sidecar ``.lock`` file because ``os.replace`` gives the state file a new
    inode at every write, and a lock held on the old inode would protect nothing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._thread_lock = threading.RLock()
        self._cache: dict[str, Any] | None = None
        self._cache_stamp: tuple[int, int, int] | None = None

    def describe(self) -> str:
        return f"state file {self.path}"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Txn]:
        with self._thread_lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise Unreachable(f"simulator cannot open {self.lock_path}: {exc.strerror}") from exc
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                txn = _Txn(self._load())
                try:
                    yield txn
                except HypervisorError:
                    # Deliberate errors leave deliberate changes (a failed task record, a consumed
                    # fault): keep them.
                    if txn.dirty:
                        self._save(txn.state)
                    raise
                except BaseException:
                    self._cache = None  # possibly half-changed: re-read from disk next time
                    raise
                if txn.dirty:
                    self._save(txn.state)
            finally:
                os.close(lock_fd)  # closing releases the flock

    @staticmethod
    def _stamp(st: os.stat_result) -> tuple[int, int, int]:
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            state = _seed_state()
            self._save(state)
            return state
        if self._cache is not None and self._cache_stamp == self._stamp(st):
            return self._cache
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            # Leave the file as it is for a human to inspect; never seed over it.
            raise HypervisorError(f"simulator state file {self.path} is unreadable: {exc}") from exc
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise HypervisorError(
                f"simulator state file {self.path} has an unknown format (expected version {STATE_VERSION})"
            )
        self._cache, self._cache_stamp = state, self._stamp(st)
        return state

    def _save(self, state: dict[str, Any]) -> None:
        # No fsync: the point is that a crashed or killed process never leaves a torn file, which
        # os.replace guarantees; surviving a power cut is not worth slowing every clone for.
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                # Compact on purpose: only then does json use its C encoder, several times faster
                # on a large inventory. `python -m json.tool` makes it readable.
                fh.write(json.dumps(state, ensure_ascii=False, separators=(",", ":")))
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._cache, self._cache_stamp = state, self._stamp(self.path.stat())


# Adapters of one process that name the same world share one object: one thread lock, one parsed
# copy of the file. Other processes are kept out by the file lock.
_MEMORY_WORLDS: dict[str, _MemoryWorld] = {}
_FILE_WORLDS: dict[Path, _FileWorld] = {}
_WORLDS_GUARD = threading.Lock()


def _world_for(url: str) -> _World:
    parts = urlsplit(url)
    if parts.scheme != HypervisorKind.SIMULATOR.value:
        raise InvalidSpec(f"simulator URL must start with simulator://, got {url!r}")
    if parts.netloc == "memory":
        name = parts.path.strip("/")
        if not name:
            return _MemoryWorld(None)
        with _WORLDS_GUARD:
            if name not in _MEMORY_WORLDS:
                _MEMORY_WORLDS[name] = _MemoryWorld(name)
            return _MEMORY_WORLDS[name]
    if parts.netloc in ("", "localhost") and parts.path.startswith("/") and len(parts.path) > 1:
        path = Path(os.path.abspath(parts.path))
        with _WORLDS_GUARD:
            if path not in _FILE_WORLDS:
                _FILE_WORLDS[path] = _FileWorld(path)
            return _FILE_WORLDS[path]
    raise InvalidSpec(
        f"simulator URL {url!r} names neither memory (simulator://memory[/name]) "
        "nor an absolute state file (simulator:///abs/path/state.json)"
    )


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


def _fault_kind(error: HypervisorError | type[HypervisorError] | str) -> tuple[str, str, float | None]:
    """(kind, message, defer) for an error instance, class or kind name."""
    if isinstance(error, str):
        if error not in FAULT_KINDS:
            raise InvalidSpec(f"unknown fault kind {error!r}; use one of {', '.join(sorted(FAULT_KINDS))}")
        return error, "", None
    cls = error if isinstance(error, type) else type(error)
    for klass in cls.__mro__:
        for kind, known in FAULT_KINDS.items():
            if klass is known:
                message = error.message if isinstance(error, HypervisorError) else ""
                defer = error.defer if isinstance(error, Retriable) else None
                return kind, message, defer
    raise InvalidSpec(f"{cls.__name__} is not an error of the HypervisorError tree a fault can raise")


def _parse_fail_spec(text: str) -> list[dict[str, Any]]:
    faults = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        operation, _, rest = item.partition(":")
        kind, _, times_text = rest.partition(":")
        kind = kind or "task_failed"
        if operation != "*" and operation not in OPERATIONS:
            raise InvalidSpec(f"defaults['fail']: unknown operation {operation!r} in {item!r}")
        if kind not in FAULT_KINDS:
            raise InvalidSpec(f"defaults['fail']: unknown fault kind {kind!r} in {item!r}")
        if times_text in ("", "always"):
            times = None if times_text == "always" else 1
        elif times_text.isdigit() and int(times_text) > 0:
            times = int(times_text)
        else:
            raise InvalidSpec(f"defaults['fail']: times must be a positive count or 'always' in {item!r}")
        faults.append(
            {"operation": operation, "kind": kind, "message": "", "defer": None, "remaining": times}
        )
    return faults


def _hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"pbkdf2_sha256${_PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def _password_matches(encoded: str, password: str) -> bool:
    algorithm, iterations, salt, digest = encoded.split("$")
    if algorithm != "pbkdf2_sha256":
        return False
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(candidate, base64.b64decode(digest))


def _capabilities_lacking(spec: str) -> Capabilities:
    """The simulator's capabilities without those named in ``spec`` (``"guest_power,web_block"``)."""
    known = {f.name for f in dataclasses.fields(Capabilities)}
    lacking = {name.strip() for name in spec.split(",") if name.strip()}
    unknown = lacking - known
    if unknown:
        raise InvalidSpec(
            f"defaults['lacks'] names unknown capabilities {sorted(unknown)}; known: {sorted(known)}",
            detail={"field": "defaults.lacks"},
        )
    return dataclasses.replace(SimulatorAdapter.capabilities, **dict.fromkeys(lacking, False))


# --------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------


class SimulatorAdapter:
    """The whole adapter contract, in-process. See the module docstring for URLs and test hooks."""

    kind = HypervisorKind.SIMULATOR
    capabilities = Capabilities(guest_power=True, web_block=True, watch=True)

    def __init__(self, config: ConnectionConfig | str = "simulator://memory") -> None:
        if isinstance(config, str):
            config = ConnectionConfig(kind=HypervisorKind.SIMULATOR, url=config)
        self.config = config
        self._world: _World | None = None
        # A bad URL or fault spec is reported by check() and raised by every other call rather
        # than at construction: registry.create() promises not to fail before the first call.
        self._config_error: HypervisorError | None = None
        try:
            self.capabilities = _capabilities_lacking(config.defaults.get("lacks", ""))
            self._world = _world_for(config.url)
            self._arm_configured_faults()
        except HypervisorError as exc:
            self._config_error = exc

    def __repr__(self) -> str:
        return f"SimulatorAdapter({self.config.url!r})"

    # ---- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _txn(self, operation: str | None = None) -> Iterator[_Txn]:
        if self._config_error is not None:
            raise self._config_error
        assert self._world is not None
        with self._world.transaction() as txn:
            if operation is not None:
                self._raise_fault(txn, operation)
            yield txn

    def _arm_configured_faults(self) -> None:
        spec = self.config.defaults.get("fail", "").strip()
        if not spec:
            return
        faults = _parse_fail_spec(spec)
        with self._txn() as txn:
            if spec in txn.state["armed"]:
                return
            txn.state["armed"].append(spec)
            txn.state["faults"].extend(faults)
            txn.dirty = True

    def _raise_fault(self, txn: _Txn, operation: str) -> None:
        faults: list[dict[str, Any]] = txn.state["faults"]
        for index, fault in enumerate(faults):
            if fault["operation"] not in (operation, "*"):
                continue
            if fault["remaining"] is not None:
                fault["remaining"] -= 1
                if fault["remaining"] <= 0:
                    del faults[index]
                txn.dirty = True
            cls = FAULT_KINDS[fault["kind"]]
            message = fault["message"] or f"simulated {fault['kind']} fault injected into {operation}"
            detail = {"operation": operation, "injected": True}
            if fault["kind"] == "task_failed" and operation in _MUTATING:
                self._record_task(txn, operation, None, ok=False, message=message)
            if issubclass(cls, Retriable):
                defer = fault["defer"]
                raise cls(message, defer=5.0 if defer is None else defer, detail=detail)
            raise cls(message, detail=detail)

    def _record_task(
        self, txn: _Txn, operation: str, vm_ref: str | None, *, ok: bool = True, message: str = ""
    ) -> str:
        state = txn.state
        state["counters"]["task"] += 1
        task_ref = f"task-{state['counters']['task']}"
        tasks: dict[str, Any] = state["tasks"]
        tasks[task_ref] = {
            "operation": operation,
            "vm_ref": vm_ref,
            "ok": ok,
            "message": message,
            "finished_at": _now(),
        }
        while len(tasks) > TASK_LOG_LIMIT:
            del tasks[next(iter(tasks))]
        txn.dirty = True
        return task_ref

    def _fail_task(self, txn: _Txn, operation: str, vm_ref: str | None, message: str) -> TaskFailed:
        task_ref = self._record_task(txn, operation, vm_ref, ok=False, message=message)
        return TaskFailed(message, detail={"task_ref": task_ref, "vm_ref": vm_ref})

    @staticmethod
    def _vm_record(txn: _Txn, ref: str) -> dict[str, Any]:
        record = txn.state["vms"].get(ref)
        if record is None:
            if ref in txn.state["templates"]:
                raise InvalidSpec(f"{ref} is a template, not a VM", detail={"ref": ref})
            raise NotFound(f"VM {ref} does not exist", detail={"ref": ref})
        return record

    @staticmethod
    def _vm_info(record: Mapping[str, Any]) -> VMInfo:
        try:
            power = PowerState(record["power_state"])
        except ValueError:
            power = PowerState.UNKNOWN
        return VMInfo(
            ref=record["ref"],
            name=record["name"],
            power_state=power,
            vcpus=record["vcpus"],
            memory_mib=record["memory_mib"],
            disks=tuple(DiskInfo(d["key"], d["capacity_gib"]) for d in record["disks"]),
            nics=tuple(
                NICInfo(
                    key=n["key"],
                    mac=n["mac"],
                    network=n["network"],
                    connected=n["connected"],
                    start_connected=n["start_connected"],
                )
                for n in record["nics"]
            ),
            ips=tuple(record["ips"]),
            marker=record["marker"],
            web_blocked=record["web_blocked"],
            placement=dict(record["placement"]),
            extra={
                "os": record["os"],
                "template_ref": record["template_ref"],
                "hostname": record["hostname"],
                "admin_user": record["admin_user"],
                "managed": record["managed"],
                "guest_tools": record["guest_tools"],
                "boot_count": record["boot_count"],
                "created_at": record["created_at"],
            },
        )

    @staticmethod
    def _template_vm_info(template: Mapping[str, Any]) -> VMInfo:
        return VMInfo(
            ref=template["ref"],
            name=template["name"],
            power_state=PowerState.STOPPED,
            vcpus=template["vcpus"],
            memory_mib=template["memory_mib"],
            disks=(DiskInfo("disk-0", template["disk_gib"]),),
            nics=(NICInfo(key="nic-0", network=template["network"]),),
            is_template=True,
            placement=dict(_DEFAULT_PLACEMENT),
            extra={"os": template["os"]},
        )

    @staticmethod
    def _template_info(template: Mapping[str, Any]) -> TemplateInfo:
        return TemplateInfo(
            ref=template["ref"],
            name=template["name"],
            os=template["os"],
            vcpus=template["vcpus"],
            memory_mib=template["memory_mib"],
            disk_gib=template["disk_gib"],
            extra={"network": template["network"]},
        )

    @staticmethod
    def _next_mac(txn: _Txn) -> str:
        txn.state["counters"]["mac"] += 1
        n = txn.state["counters"]["mac"]
        # VMware's range for manually assigned MACs, so the numbers look like what operators see.
        return f"00:50:56:{(n >> 16) & 0x3F:02x}:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}"

    def _new_vm_record(
        self,
        txn: _Txn,
        *,
        name: str,
        vcpus: int,
        memory_mib: int,
        disk_gib: float,
        network: str,
        ips: tuple[str, ...],
        marker: str | None,
        power_state: PowerState,
        placement: Mapping[str, str],
        os_name: str,
        template_ref: str | None,
        managed: bool,
        guest_tools: bool = True,
    ) -> dict[str, Any]:
        txn.state["counters"]["vm"] += 1
        ref = f"vm-{txn.state['counters']['vm']}"
        record: dict[str, Any] = {
            "ref": ref,
            "name": name,
            "power_state": power_state.value,
            "vcpus": vcpus,
            "memory_mib": memory_mib,
            "disks": [{"key": "disk-0", "capacity_gib": disk_gib}],
            "nics": [
                {
                    "key": "nic-0",
                    "mac": self._next_mac(txn),
                    "network": network,
                    "connected": True,
                    "start_connected": True,
                }
            ],
            "ips": list(ips),
            "marker": marker,
            "web_blocked": False,
            "placement": dict(placement),
            "os": os_name,
            "template_ref": template_ref,
            "hostname": None,
            "admin_user": None,
            "admin_password_hash": None,
            "managed": managed,
            "guest_tools": guest_tools,
            "boot_count": 1 if power_state is PowerState.RUNNING else 0,
            "created_at": _now(),
        }
        txn.state["vms"][ref] = record
        self._charge_datastore(txn, record, disk_gib)
        txn.dirty = True
        return record

    def _placement(self, overrides: Mapping[str, str]) -> dict[str, str]:
        placement = dict(_DEFAULT_PLACEMENT)
        for key in _PLACEMENT_DEFAULT_KEYS:
            if self.config.defaults.get(key):
                placement[key] = self.config.defaults[key]
        placement.update(overrides)
        return placement

    @staticmethod
    def _datastore_free_gib(txn: _Txn, datastore: str) -> float:
        store = txn.state["datastores"][datastore]
        return float(store["capacity_gib"] - store["used_gib"])

    @staticmethod
    def _charge_datastore(txn: _Txn, record: Mapping[str, Any], gib: float) -> None:
        # A running total rather than a sum over every VM keeps a clone O(1) in big inventories.
        store = txn.state["datastores"].get(record["placement"].get("datastore"))
        if store is not None:
            store["used_gib"] = max(0, store["used_gib"] + gib)

    # ---- the contract -----------------------------------------------------------------------

    def check(self) -> ConnectionCheck:
        try:
            with self._txn("check") as txn:
                assert self._world is not None
                return ConnectionCheck(
                    ok=True,
                    message=f"simulator ready ({self._world.describe()})",
                    product=PRODUCT,
                    version=VERSION,
                    vm_count=len(txn.state["vms"]),
                    template_count=len(txn.state["templates"]),
                )
        except HypervisorError as exc:
            return ConnectionCheck(ok=False, message=exc.message, product=PRODUCT, version=VERSION)

    def list_vms(self) -> list[VMInfo]:
        with self._txn("list_vms") as txn:
            templates = [self._template_vm_info(t) for t in txn.state["templates"].values()]
            return templates + [self._vm_info(r) for r in txn.state["vms"].values()]

    def list_templates(self) -> list[TemplateInfo]:
        with self._txn("list_templates") as txn:
            return [self._template_info(t) for t in txn.state["templates"].values()]

    def get_vm(self, ref: str) -> VMInfo:
        with self._txn("get_vm") as txn:
            template = txn.state["templates"].get(ref)
            if template is not None:
                return self._template_vm_info(template)
            return self._vm_info(self._vm_record(txn, ref))

    def find_by_marker(self, marker: str) -> VMInfo | None:
        with self._txn("find_by_marker") as txn:
            record = self._find_marker(txn, marker)
            return None if record is None else self._vm_info(record)

    @staticmethod
    def _find_marker(txn: _Txn, marker: str) -> dict[str, Any] | None:
        if not marker:
            return None
        for record in txn.state["vms"].values():
            if record["marker"] == marker:
                return record
        return None

    def clone(self, spec: CloneSpec) -> VMInfo:
        if not spec.marker:
            raise InvalidSpec("CloneSpec.marker is required: it is what makes a retried clone safe")
        if spec.vcpus < 1 or spec.memory_mib < 1:
            raise InvalidSpec(f"vcpus ({spec.vcpus}) and memory_mib ({spec.memory_mib}) must be positive")
        with self._txn("clone") as txn:
            existing = self._find_marker(txn, spec.marker)
            if existing is not None:
                return self._complete_clone(txn, existing, spec)

            template = txn.state["templates"].get(spec.template_ref)
            if template is None:
                raise NotFound(
                    f"template {spec.template_ref} does not exist", detail={"ref": spec.template_ref}
                )
            if not spec.name.strip():
                raise InvalidSpec("CloneSpec.name must not be empty")
            disk_gib = template["disk_gib"] if spec.disk_gib is None else spec.disk_gib
            if disk_gib < template["disk_gib"]:
                raise InvalidSpec(
                    f"disk_gib {spec.disk_gib} is smaller than template {template['name']}'s "
                    f"{template['disk_gib']} GiB disk; disks can only grow",
                    detail={"field": "disk_gib"},
                )
            network = spec.network or self.config.defaults.get("network") or template["network"]
            if network not in txn.state["networks"]:
                raise NotFound(f"network {network!r} does not exist", detail={"network": network})
            placement = self._placement(spec.placement)
            datastore = placement["datastore"]
            if datastore not in txn.state["datastores"]:
                raise NotFound(f"datastore {datastore!r} does not exist", detail={"datastore": datastore})

            # Only now does the clone task "run"; a failure of the task leaves no VM behind.
            free = self._datastore_free_gib(txn, datastore)
            if disk_gib > free:
                raise self._fail_task(
                    txn,
                    "clone",
                    None,
                    f"Insufficient disk space on datastore '{datastore}': "
                    f"{disk_gib} GiB needed, {free:g} GiB free",
                )

            power = PowerState.RUNNING if spec.power_on else PowerState.STOPPED
            record = self._new_vm_record(
                txn,
                name=spec.name,
                vcpus=spec.vcpus,
                memory_mib=spec.memory_mib,
                disk_gib=disk_gib,
                network=network,
                ips=(spec.ip.address,) if spec.ip else (),
                marker=spec.marker,
                power_state=power,
                placement=placement,
                os_name=template["os"],
                template_ref=template["ref"],
                managed=True,
            )
            record["hostname"] = spec.hostname or spec.name
            record["admin_user"] = spec.admin_user
            if spec.admin_password:
                record["admin_password_hash"] = _hash_password(spec.admin_password)
            if spec.ip:
                record["ip_settings"] = {
                    "prefix_length": spec.ip.prefix_length,
                    "gateway": spec.ip.gateway,
                    "dns": list(spec.ip.dns),
                }
            self._record_task(
                txn, "clone", record["ref"], message=f"cloned {template['name']} as {spec.name}"
            )
            return self._vm_info(record)

    def _complete_clone(self, txn: _Txn, record: dict[str, Any], spec: CloneSpec) -> VMInfo:
        """A retried clone: bring the VM the first attempt made up to the spec."""
        disk = record["disks"][0] if record["disks"] else None
        if spec.disk_gib is not None and disk is not None and spec.disk_gib < disk["capacity_gib"]:
            raise InvalidSpec(
                f"disk_gib {spec.disk_gib} is smaller than VM {record['ref']}'s "
                f"{disk['capacity_gib']} GiB disk; disks can only grow",
                detail={"field": "disk_gib"},
            )
        record["vcpus"] = spec.vcpus
        record["memory_mib"] = spec.memory_mib
        if spec.disk_gib is not None and disk is not None:
            self._charge_datastore(txn, record, spec.disk_gib - disk["capacity_gib"])
            disk["capacity_gib"] = spec.disk_gib
        if spec.power_on and record["power_state"] != PowerState.RUNNING:
            record["power_state"] = PowerState.RUNNING.value
            record["boot_count"] += 1
        self._record_task(txn, "clone", record["ref"], message="clone resumed: existing VM completed")
        return self._vm_info(record)

    def power(self, ref: str, action: PowerAction) -> VMInfo:
        action = PowerAction(action)
        with self._txn("power") as txn:
            record = self._vm_record(txn, ref)
            if action in (PowerAction.SHUTDOWN, PowerAction.REBOOT) and not self.capabilities.guest_power:
                # Refused whatever the power state: the hypervisor cannot do it at all.
                raise NotSupported(
                    f"this hypervisor cannot ask the guest OS of {record['name']} ({ref}) to "
                    f"{action.value}; use stop or restart",
                    detail={"ref": ref},
                )
            try:
                current = PowerState(record["power_state"])
            except ValueError:
                current = PowerState.UNKNOWN
            allowed = POWER_ACTION_ALLOWED_FROM[action]
            if current not in allowed:
                needs = " or ".join(sorted(s.value for s in allowed))
                raise self._fail_task(
                    txn,
                    "power",
                    ref,
                    f"cannot {action.value} VM {record['name']} ({ref}): it is {current.value}, "
                    f"{action.value} needs it {needs}",
                )
            guest_action = action in (PowerAction.SHUTDOWN, PowerAction.REBOOT)
            if guest_action and current is PowerState.RUNNING and not record["guest_tools"]:
                raise self._fail_task(
                    txn,
                    "power",
                    ref,
                    f"cannot {action.value} VM {record['name']} ({ref}): guest tools are not running",
                )
            target = POWER_ACTION_RESULT[action]
            if target is PowerState.RUNNING and (
                current is not PowerState.RUNNING or action is not PowerAction.START
            ):
                record["boot_count"] += 1
            was = current.value
            record["power_state"] = target.value
            message = f"{action.value}: {was} -> {target.value}"
            if current is target and action in (PowerAction.START, PowerAction.STOP, PowerAction.SHUTDOWN):
                message = f"{action.value}: already {target.value}, nothing to do"
            self._record_task(txn, "power", ref, message=message)
            return self._vm_info(record)

    def set_network(self, ref: str, connected: bool) -> VMInfo:
        with self._txn("set_network") as txn:
            record = self._vm_record(txn, ref)
            for nic in record["nics"]:
                nic["connected"] = connected
                nic["start_connected"] = connected
            state = "connected" if connected else "disconnected"
            self._record_task(txn, "set_network", ref, message=f"{len(record['nics'])} NIC(s) {state}")
            return self._vm_info(record)

    def set_web_block(self, ref: str, blocked: bool) -> VMInfo:
        with self._txn("set_web_block") as txn:
            record = self._vm_record(txn, ref)
            if not self.capabilities.web_block:
                raise NotSupported(
                    "this hypervisor has no per-VM firewall for inbound 80/443; isolate the VM's "
                    "network instead",
                    detail={"ref": ref},
                )
            record["web_blocked"] = blocked
            verb = "dropping" if blocked else "accepting"
            self._record_task(txn, "set_web_block", ref, message=f"firewall {verb} inbound 80/443")
            return self._vm_info(record)

    def delete(self, ref: str) -> None:
        with self._txn("delete") as txn:
            if ref in txn.state["templates"]:
                raise InvalidSpec(
                    f"{ref} is a template; the portal never deletes templates", detail={"ref": ref}
                )
            record = txn.state["vms"].pop(ref, None)
            if record is not None:
                self._charge_datastore(txn, record, -sum(d["capacity_gib"] for d in record["disks"]))
            message = "already absent" if record is None else f"powered off and destroyed {record['name']}"
            self._record_task(txn, "delete", ref, message=message)

    def wait_task(self, task_ref: str, timeout: float | None = None) -> TaskResult:
        # Every simulated task has finished by the time its call returned: there is nothing to wait for.
        with self._txn("wait_task") as txn:
            task = txn.state["tasks"].get(task_ref)
            if task is None:
                raise NotFound(f"task {task_ref} is unknown (or older than the last {TASK_LOG_LIMIT})")
            return self._task_result(task_ref, task)

    @staticmethod
    def _task_result(task_ref: str, task: Mapping[str, Any]) -> TaskResult:
        return TaskResult(
            ok=task["ok"],
            task_ref=task_ref,
            message=task["message"],
            result_ref=task["vm_ref"],
            extra={"operation": task["operation"], "finished_at": task["finished_at"]},
        )

    def watch(self, stop: threading.Event, since: str | None = None) -> Iterator[ChangeBatch]:
        # The simulated world is polled (its state file may be changed by another process).
        return poll(Stream(scope_of(self.config)), self.list_vms, stop, since)

    def close(self) -> None:
        """Nothing to release: there is no session. Safe to call any number of times."""

    # ---- test hooks -------------------------------------------------------------------------

    def inject_fault(
        self,
        operation: str,
        error: HypervisorError | type[HypervisorError] | str = TaskFailed,
        *,
        times: int | None = 1,
    ) -> None:
        """Make the next ``times`` calls of ``operation`` (a method name, or ``*`` for any) raise
        ``error``: an instance (its message and, for Retriable, ``defer`` are kept), a class, or a
        kind name (``"retriable"``). ``times=None`` keeps failing until :meth:`clear_faults`."""
        if operation != "*" and operation not in OPERATIONS:
            raise InvalidSpec(
                f"unknown operation {operation!r}; use one of {', '.join(sorted(OPERATIONS))} or *"
            )
        if times is not None and times < 1:
            raise InvalidSpec("times must be at least 1, or None for always")
        kind, message, defer = _fault_kind(error)
        fault = {"operation": operation, "kind": kind, "message": message, "defer": defer, "remaining": times}
        with self._txn() as txn:
            txn.state["faults"].append(fault)
            txn.dirty = True

    def pending_faults(self) -> list[dict[str, Any]]:
        """The faults still armed: dicts with operation, kind, message, defer, remaining."""
        with self._txn() as txn:
            return copy.deepcopy(txn.state["faults"])

    def clear_faults(self) -> None:
        with self._txn() as txn:
            if txn.state["faults"]:
                txn.state["faults"].clear()
                txn.dirty = True

    def add_unmanaged_vm(
        self,
        name: str,
        *,
        power_state: PowerState | str = PowerState.RUNNING,
        vcpus: int = 1,
        memory_mib: int = 1024,
        disk_gib: float = 20,
        network: str = "VM Network",
        ips: tuple[str, ...] | list[str] = (),
        marker: str | None = None,
        guest_os: str = "Other Linux (64-bit)",
        guest_tools: bool = True,
        placement: Mapping[str, str] | None = None,
    ) -> VMInfo:
        """Create a VM behind the portal's back, as someone using the vSphere client would: no task,
        no template, no marker unless given. Returns it as ``get_vm`` would."""
        with self._txn() as txn:
            if network not in txn.state["networks"]:
                raise NotFound(f"network {network!r} does not exist", detail={"network": network})
            where = self._placement(placement or {})
            if where["datastore"] not in txn.state["datastores"]:
                raise NotFound(f"datastore {where['datastore']!r} does not exist")
            record = self._new_vm_record(
                txn,
                name=name,
                vcpus=vcpus,
                memory_mib=memory_mib,
                disk_gib=disk_gib,
                network=network,
                ips=tuple(ips),
                marker=marker,
                power_state=PowerState(power_state),
                placement=where,
                os_name=guest_os,
                template_ref=None,
                managed=False,
                guest_tools=guest_tools,
            )
            return self._vm_info(record)

    def set_power_state(self, ref: str, state: PowerState | str) -> VMInfo:
        """Change a VM's power state behind the portal's back (drift): no task, no transition
        check; any state, UNKNOWN included. Raises NotFound for an unknown ref."""
        state = PowerState(state)
        with self._txn() as txn:
            record = self._vm_record(txn, ref)
            record["power_state"] = state.value
            txn.dirty = True
            return self._vm_info(record)

    def verify_admin_password(self, ref: str, password: str) -> bool:
        """Whether ``password`` is the one VM ``ref`` was cloned with (only a salted hash is kept)."""
        with self._txn() as txn:
            encoded = self._vm_record(txn, ref)["admin_password_hash"]
        return encoded is not None and _password_matches(encoded, password)

    def task_log(self, vm_ref: str | None = None) -> list[TaskResult]:
        """Recorded tasks, oldest first (at most the last TASK_LOG_LIMIT), optionally for one VM."""
        with self._txn() as txn:
            return [
                self._task_result(task_ref, task)
                for task_ref, task in txn.state["tasks"].items()
                if vm_ref is None or task["vm_ref"] == vm_ref
            ]

    def reset(self) -> None:
        """Forget every VM, task and fault: back to the freshly seeded world."""
        with self._txn() as txn:
            txn.state.clear()
            txn.state.update(_seed_state())
            txn.dirty = True

    @property
    def state_path(self) -> Path | None:
        """The state file of a file-backed world, else None."""
        return self._world.path if isinstance(self._world, _FileWorld) else None

    @staticmethod
    def drop_memory_world(name: str) -> None:
        """Forget the in-memory world ``simulator://memory/<name>`` of this process, if any."""
        with _WORLDS_GUARD:
            _MEMORY_WORLDS.pop(name, None)

    @staticmethod
    def drop_memory_worlds() -> None:
        """Forget every named in-memory world of this process (``simulator://memory/<name>``)."""
        with _WORLDS_GUARD:
            _MEMORY_WORLDS.clear()


@register(HypervisorKind.SIMULATOR)
def create_simulator(config: ConnectionConfig) -> SimulatorAdapter:
    return SimulatorAdapter(config)
