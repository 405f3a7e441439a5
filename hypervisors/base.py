"""The hypervisor adapter contract.

Every hypervisor vmportal governs (vSphere through pyvmomi, Proxmox VE through proxmoxer, and the
in-process simulator) is reached through an object that satisfies :class:`HypervisorAdapter`.
The rest of the project never sees a pyVmomi managed object, a Proxmox UPID or a vmid: adapters
speak in the plain dataclasses below and raise only the errors of the :class:`HypervisorError` tree.

This package imports nothing of ``vmportal`` or ``policies``.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class HypervisorKind(enum.StrEnum):
    SIMULATOR = "simulator"
    VSPHERE = "vsphere"
    PROXMOX = "proxmox"


class PowerState(enum.StrEnum):
    """The hypervisor's power state, mapped from each provider's own vocabulary.

    Anything an adapter does not recognise becomes UNKNOWN, never an exception.
    """

    RUNNING = "running"
    STOPPED = "stopped"
    SUSPENDED = "suspended"
    UNKNOWN = "unknown"


class PowerAction(enum.StrEnum):
    START = "start"
    STOP = "stop"  # hard power off
    RESTART = "restart"  # hard reset
    SHUTDOWN = "shutdown"  # guest OS shutdown (needs guest tools / agent)
    REBOOT = "reboot"  # guest OS reboot (needs guest tools / agent)


#: The power state each action leaves a VM in once the hypervisor has finished it.
POWER_ACTION_RESULT: Mapping[PowerAction, PowerState] = {
    PowerAction.START: PowerState.RUNNING,
    PowerAction.STOP: PowerState.STOPPED,
    PowerAction.RESTART: PowerState.RUNNING,
    PowerAction.SHUTDOWN: PowerState.STOPPED,
    PowerAction.REBOOT: PowerState.RUNNING,
}

#: Power states in which an action makes sense. START on a running VM and STOP on a stopped one
#: are accepted as no-ops (idempotency); restart and the guest actions need a running VM.
POWER_ACTION_ALLOWED_FROM: Mapping[PowerAction, frozenset[PowerState]] = {
    PowerAction.START: frozenset({PowerState.STOPPED, PowerState.SUSPENDED, PowerState.RUNNING}),
    PowerAction.STOP: frozenset({PowerState.RUNNING, PowerState.SUSPENDED, PowerState.STOPPED}),
    PowerAction.RESTART: frozenset({PowerState.RUNNING}),
    PowerAction.SHUTDOWN: frozenset({PowerState.RUNNING, PowerState.STOPPED}),
    PowerAction.REBOOT: frozenset({PowerState.RUNNING}),
}


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class HypervisorError(Exception):
    """Base of every error an adapter raises. ``message`` is meant for a human operator."""

    def __init__(self, message: str, *, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = dict(detail or {})


class Retriable(HypervisorError):
    """A transient failure (host unreachable, session expired mid-call, busy lock).

    Callers retry after ``defer`` seconds at the earliest; tasks turn this into a Celery retry.
    """

    def __init__(self, message: str, *, defer: float = 5.0, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, detail=detail)
        self.defer = defer


class Unreachable(Retriable):
    """The endpoint could not be reached at all (connection refused, DNS, timeout)."""


class AuthFailed(HypervisorError):
    """Credentials or API token were refused. Retrying with the same secret will not help."""


class TLSFailed(HypervisorError):
    """The server's certificate could not be verified against the configured trust."""


class NotFound(HypervisorError):
    """The VM, template, network or other object does not exist on the hypervisor."""


class NotSupported(HypervisorError):
    """The adapter or the hypervisor cannot do this (see :class:`Capabilities`)."""


class TaskFailed(HypervisorError):
    """A hypervisor task ended in error; ``message`` carries the hypervisor's own fault text."""


class InvalidSpec(HypervisorError):
    """The request is malformed for this hypervisor (e.g. a disk smaller than the template's)."""


# --------------------------------------------------------------------------------------------
# Plain data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capabilities:
    """What an adapter may lack, so callers can decide before asking (and not learn by failing).

    Everything else in :class:`HypervisorAdapter` is required of every adapter: cutting and
    restoring the network (:meth:`~HypervisorAdapter.set_network`, the containment every VM must
    be open to), setting the admin account and initial password at clone time (the portal hands
    them to the unit once), and growing the first disk to ``CloneSpec.disk_gib``.
    """

    #: Guest OS shutdown and reboot (VMware Tools, ACPI / QEMU agent). When False,
    #: ``power(ref, SHUTDOWN | REBOOT)`` raises :class:`NotSupported`; callers refuse those actions
    #: up front and offer stop / restart. Read by the contract suite and the VM power service.
    guest_power: bool = True
    #: A per-VM firewall able to drop inbound 80/443. When False, ``set_web_block`` raises
    #: :class:`NotSupported` and containment falls back to cutting the network.
    web_block: bool = False
    #: A change stream (:meth:`~HypervisorAdapter.watch`). When False, ``watch`` raises
    #: :class:`NotSupported` and the portal learns of changes only by its periodic full sync.
    watch: bool = False


@dataclass(frozen=True)
class NICInfo:
    key: str  # provider's stable id of the NIC within the VM (vSphere device key, Proxmox "net0")
    mac: str | None = None
    network: str | None = None
    connected: bool = True
    start_connected: bool = True


@dataclass(frozen=True)
class DiskInfo:
    key: str
    capacity_gib: float


@dataclass(frozen=True)
class VMInfo:
    """One VM (or template) as the hypervisor reports it."""

    ref: str  # the adapter's stable id: vSphere instance UUID, Proxmox "node/vmid", simulator id
    name: str
    power_state: PowerState
    vcpus: int
    memory_mib: int
    disks: tuple[DiskInfo, ...] = ()
    nics: tuple[NICInfo, ...] = ()
    ips: tuple[str, ...] = ()
    is_template: bool = False
    marker: str | None = None  # the portal's idempotency marker (annotation / description / tag)
    web_blocked: bool = False
    placement: Mapping[str, str] = field(default_factory=dict)  # folder, pool, host, cluster, dc, node
    extra: Mapping[str, Any] = field(default_factory=dict)  # provider leftovers, for display only

    @property
    def network_connected(self) -> bool:
        """True when at least one NIC is connected; a VM without NICs counts as isolated."""
        return any(n.connected for n in self.nics)

    @property
    def disk_gib(self) -> float:
        return sum(d.capacity_gib for d in self.disks)


@dataclass(frozen=True)
class TemplateInfo:
    ref: str
    name: str
    os: str = ""
    vcpus: int = 1
    memory_mib: int = 1024
    disk_gib: float = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IPSettings:
    address: str
    prefix_length: int
    gateway: str
    dns: tuple[str, ...] = ()


@dataclass(frozen=True)
class CloneSpec:
    """Everything an adapter needs to create a VM from a template.

    ``marker`` is unique per portal request (e.g. ``vmportal:request:42``). Adapters record it on
    the VM (annotation, description, custom attribute) so a retried clone finds its earlier VM.
    """

    name: str
    template_ref: str
    marker: str
    vcpus: int
    memory_mib: int
    disk_gib: int | None = None  # grow the first disk to this size; None keeps the template's
    network: str | None = None  # port group / bridge; None keeps the template's
    ip: IPSettings | None = None
    hostname: str | None = None
    admin_user: str | None = None
    admin_password: str | None = field(default=None, repr=False)  # never in a log line
    power_on: bool = True
    placement: Mapping[str, str] = field(default_factory=dict)  # folder/pool/datastore/node overrides


@dataclass(frozen=True)
class TaskResult:
    ok: bool
    task_ref: str
    message: str = ""
    result_ref: str | None = None  # e.g. the VM a clone task created
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    message: str
    product: str = ""
    version: str = ""
    vm_count: int = 0
    template_count: int = 0


@dataclass(frozen=True)
class ConnectionConfig:
    """How to reach one hypervisor. Secrets arrive decrypted and must never be logged."""

    kind: HypervisorKind
    url: str
    username: str = ""
    secret: str = ""  # password, or Proxmox API token secret
    token_id: str = ""  # Proxmox "user@realm!tokenname"
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: float = 30.0
    task_timeout: float = 600.0
    defaults: Mapping[str, str] = field(default_factory=dict)  # folder, pool, datastore, node, network

    def __repr__(self) -> str:  # never let a secret reach a log line through repr()
        return f"ConnectionConfig(kind={self.kind!s}, url={self.url!r}, username={self.username!r})"


# --------------------------------------------------------------------------------------------
# Change streams (HypervisorAdapter.watch)
# --------------------------------------------------------------------------------------------


class ChangeKind(enum.StrEnum):
    CREATED = "created"  # a VM (or template) the stream had not reported appeared
    CHANGED = "changed"  # one or more of WATCHED_FIELDS differ from what was last reported
    DELETED = "deleted"  # a VM the stream had reported no longer exists


#: The :class:`VMInfo` attributes a change stream compares. ``extra`` is for display only and never
#: makes a change on its own; a change to anything else is reported with the attribute's new value.
WATCHED_FIELDS: tuple[str, ...] = (
    "ref",
    "name",
    "power_state",
    "vcpus",
    "memory_mib",
    "disks",
    "nics",
    "ips",
    "is_template",
    "marker",
    "web_blocked",
    "placement",
)


@dataclass(frozen=True)
class VMChange:
    """One VM that appeared, changed or went away, in the adapter's plain vocabulary.

    ``vm`` is the whole record as the hypervisor reports it now (what :meth:`HypervisorAdapter.get_vm`
    would return, with ``web_blocked`` judged as :meth:`~HypervisorAdapter.list_vms` judges it);
    None for DELETED. ``fields`` maps the :data:`WATCHED_FIELDS` that differ from the stream's last
    report to their new values: every watched field for CREATED, nothing for DELETED.
    ``previous_ref`` is set when the VM is the same one under a new ref (a Proxmox migration
    changes ``node/vmid``): the change is then CHANGED, ``fields`` holds ``"ref"``, and a consumer
    keyed by ref moves its record instead of losing it.
    """

    ref: str
    kind: ChangeKind
    vm: VMInfo | None
    fields: Mapping[str, Any] = field(default_factory=dict)
    previous_ref: str | None = None


@dataclass(frozen=True)
class ChangeBatch:
    """What one step of a change stream learned, and the version to resume after it.

    A normal batch (``resync`` False) holds at least one change. A resync batch says the stream
    cannot vouch for continuity with what the caller knew (no ``since``, a version this process
    never issued or has forgotten, or a server that is not the one the version came from):
    ``inventory`` is then the complete inventory, as :meth:`HypervisorAdapter.list_vms` returns it,
    ``changes`` is empty, ``reason`` says why in words for an operator, and the caller reconciles
    everything (a full sync from ``inventory``) before applying later batches.
    """

    version: str
    changes: tuple[VMChange, ...] = ()
    resync: bool = False
    inventory: tuple[VMInfo, ...] = ()
    reason: str = ""
    received_at: float = 0.0  # time.time() when the adapter learned of it (for lag metrics)


# --------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------


@runtime_checkable
class HypervisorAdapter(Protocol):
    """What vmportal needs from a hypervisor.

    General rules every implementation keeps:

    * Every mutating call returns only after the hypervisor has finished the work (the adapter
      waits for its own tasks) and returns the VM as re-read from the hypervisor, so the caller
      sees confirmed state, not intent.
    * Calls are idempotent where the world allows it: starting a running VM, disconnecting a
      disconnected NIC or deleting a missing VM succeed without doing anything.
    * Only errors of the :class:`HypervisorError` tree escape; provider exceptions are translated.
    * Adapters are used by one thread at a time; callers create one per worker thread or lock.
    """

    kind: HypervisorKind
    capabilities: Capabilities

    def check(self) -> ConnectionCheck:
        """Log in and read the product, version and object counts. Never raises: a failure is
        reported as ``ok=False`` with a message an operator can act on."""
        ...

    def list_vms(self) -> list[VMInfo]:
        """The whole inventory (templates included, flagged), in as few round trips as the
        provider allows: never one round trip per VM for the common properties."""
        ...

    def list_templates(self) -> list[TemplateInfo]:
        """The templates a VM can be cloned from."""
        ...

    def get_vm(self, ref: str) -> VMInfo:
        """Re-read one VM. Raises :class:`NotFound` when it no longer exists."""
        ...

    def find_by_marker(self, marker: str) -> VMInfo | None:
        """The VM that carries this portal marker, or None."""
        ...

    def clone(self, spec: CloneSpec) -> VMInfo:
        """Create a VM from ``spec.template_ref``, sized and customised as specified.

        Idempotent: if a VM with ``spec.marker`` already exists (a retry after a crash), it is
        completed where needed (sized, powered on) and returned; no second VM is created.
        If the clone task fails, any partial VM is removed before :class:`TaskFailed` is raised.
        Raises :class:`NotFound` when the template does not exist.
        """
        ...

    def power(self, ref: str, action: PowerAction) -> VMInfo:
        """Perform a power action and return the VM once the hypervisor reports the result.

        START on a running VM and STOP on a stopped VM are no-ops. Guest actions on a VM without
        running guest tools raise :class:`NotSupported` or :class:`TaskFailed` with the reason;
        when ``capabilities.guest_power`` is false they raise :class:`NotSupported` whatever the
        VM's state.
        """
        ...

    def set_network(self, ref: str, connected: bool) -> VMInfo:
        """Connect or disconnect every virtual NIC of the VM (and its connect-at-power-on flag),
        so the VM stays isolated across a reboot. Returns the VM re-read from the hypervisor after
        the change: its power state, every NIC and its addresses as read now (what confirms the
        change); ``placement`` may be left empty (``get_vm`` has it)."""
        ...

    def set_web_block(self, ref: str, blocked: bool) -> VMInfo:
        """Drop (or stop dropping) inbound 80/443 at the hypervisor's firewall.

        Raises :class:`NotSupported` when ``capabilities.web_block`` is false; callers fall back
        to :meth:`set_network`.
        """
        ...

    def delete(self, ref: str) -> None:
        """Power off and destroy the VM. Deleting a VM that does not exist succeeds."""
        ...

    def wait_task(self, task_ref: str, timeout: float | None = None) -> TaskResult:
        """Wait for one hypervisor task. A task that fails is returned with ``ok=False`` and the
        provider's fault text; a timeout raises :class:`Retriable`."""
        ...

    def watch(self, stop: threading.Event, since: str | None = None) -> Iterator[ChangeBatch]:
        """The hypervisor's changes to its VMs, as they happen, until ``stop`` is set.

        Contract, the same for every adapter:

        * **Start.** ``since=None`` begins with a resync batch (the complete inventory). ``since``
          a version an earlier batch of this process carried (for the same connection) resumes
          after it: the first batch holds what changed since then, or nothing is yielded when
          nothing did. A version the adapter cannot resume from (made up, from another process,
          forgotten, or from a server that has since been replaced) begins with a resync batch.
        * **Order and delivery.** Batches come in the order the hypervisor reported the changes;
          a VM's changes are never reordered. Delivery is at least once: resuming from an older
          version reports again what changed after it. Intermediate states may be folded into
          one change (a NIC cut and restored between two looks is no change), never lost: the
          last batch always reflects the state the hypervisor reported last.
        * **Quiet.** Nothing is yielded while nothing changes; ``watch`` then costs the adapter
          at most a cheap poll every few seconds.
        * **Reconnects.** A lost connection or session is re-established by the adapter itself,
          which then reports what changed meanwhile (not a resync: it compares against what it
          last reported). Transient failures lasting longer than the adapter's retry window
          (a minute by default) raise :class:`Retriable` (usually :class:`Unreachable`); the
          caller waits ``defer`` seconds and calls ``watch(stop, since=<last version>)`` again.
          :class:`AuthFailed`, :class:`TLSFailed` are raised at once.
        * **Stop.** Setting ``stop`` ends the iteration within about a second (the adapter
          cancels its pending wait); closing the generator does too. Either way the stream's own
          session is released.
        * **Threads.** ``watch`` opens its own session, so it may run in a thread of its own
          while the same adapter serves calls elsewhere (each call has its own session).

        Raises :class:`NotSupported` when ``capabilities.watch`` is false.
        """
        ...

    def close(self) -> None:
        """Release the session. Safe to call twice."""
        ...
