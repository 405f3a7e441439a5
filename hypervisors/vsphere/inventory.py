"""The VM inventory: VM records (:class:`~hypervisors.base.VMInfo`) as vCenter reports them.

* :data:`VM_PROPERTIES` is what is read of every VM, in one paged ``RetrievePropertiesEx`` over a
  ContainerView of every VM; the hosts, pools, folders and networks those VMs reference are then
  named in one more bulk retrieve (walking ``parent`` upwards). Never a round trip per VM.
* Refs are VM **instance UUIDs** (``config.instanceUuid``), stable across renames and moves, found
  with ``SearchIndex.FindByUuid``. A ref this adapter never issued (not a UUID) is simply not found.
* The portal's idempotency marker is a line ``vmportal-marker: <marker>`` of the VM's annotation
  (:func:`marker_of`, :func:`with_marker`); the clone also writes it to
  ``config.extraConfig["vmportal.marker"]`` (:data:`MARKER_EXTRA_CONFIG_KEY`).
* A VM without a configuration (inaccessible, orphaned) is left out of the inventory and is
  :class:`~hypervisors.base.NotFound` when asked for by ref.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pyVmomi import vim

from hypervisors.base import (
    ConnectionCheck,
    DiskInfo,
    HypervisorError,
    InvalidSpec,
    NICInfo,
    NotFound,
    PowerState,
    TemplateInfo,
    VMInfo,
)
from hypervisors.vsphere.collector import Collector, Names, moid, props
from hypervisors.vsphere.devices import disk_gib, nic_network, nics_of, usable_ip
from hypervisors.vsphere.session import Session, service

log = logging.getLogger(__name__)

MARKER_PREFIX = "vmportal-marker:"
MARKER_EXTRA_CONFIG_KEY = "vmportal.marker"
_MARKER_LINE = re.compile(r"^vmportal-marker:[ \t]*(\S+)[ \t]*$", re.MULTILINE)


POWER_STATES: Mapping[str, PowerState] = {
    "poweredOn": PowerState.RUNNING,
    "poweredOff": PowerState.STOPPED,
    "suspended": PowerState.SUSPENDED,
}

#: What the inventory reads of every VM. Kept in one place: the benchmark retrieves exactly these.
VM_PROPERTIES: tuple[str, ...] = (
    "name",
    "config.instanceUuid",
    "config.template",
    "config.annotation",
    "config.guestId",
    "config.guestFullName",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "config.hardware.device",
    "runtime.powerState",
    "runtime.host",
    "resourcePool",
    "parent",
    "network",
    "guest.net",
    "guest.ipAddress",
    "guest.hostName",
    "guest.toolsRunningStatus",
)


def marker_of(annotation: str | None) -> str | None:
    """The portal marker recorded in a VM annotation, if any."""
    if not annotation:
        return None
    found = _MARKER_LINE.search(annotation)
    return found.group(1) if found else None


def with_marker(annotation: str | None, marker: str) -> str:
    """The annotation with its marker line set to ``marker``, other notes kept."""
    kept = [line for line in (annotation or "").splitlines() if not _MARKER_LINE.match(line)]
    return "\n".join([f"{MARKER_PREFIX} {marker}", *kept]).strip()


def vm_info(obj: Any, values: Mapping[str, Any], names: Names) -> VMInfo | None:
    """One VM record from the :data:`VM_PROPERTIES` of ``obj``; None for a VM without config.

    ``names`` must hold the entities :func:`referenced` lists (for placement and network names).
    """
    ref = values.get("config.instanceUuid")
    if not ref:
        # An inaccessible or orphaned VM has no config: nothing the portal could manage.
        log.debug("skipping VM %s without config (inaccessible?)", moid(obj))
        return None
    return _record(
        obj,
        values,
        names,
        placement=_placement(values, names),
        extra={
            "guest_id": values.get("config.guestId") or "",
            "guest_os": values.get("config.guestFullName") or "",
            "guest_tools": values.get("guest.toolsRunningStatus") or "",
            "guest_hostname": values.get("guest.hostName") or "",
        },
    )


def _record(
    obj: Any,
    values: Mapping[str, Any],
    names: Names,
    *,
    placement: Any = None,
    extra: dict[str, Any] | None = None,
) -> VMInfo:
    """The VMInfo both readers build from the properties they read (``config.instanceUuid`` set)."""
    power = POWER_STATES.get(str(values.get("runtime.powerState")), PowerState.UNKNOWN)
    devices = values.get("config.hardware.device") or []
    fields: dict[str, Any] = {} if placement is None else {"placement": placement}
    return VMInfo(
        ref=str(values.get("config.instanceUuid")),
        name=str(values.get("name", "")),
        power_state=power,
        vcpus=int(values.get("config.hardware.numCPU") or 0),
        memory_mib=int(values.get("config.hardware.memoryMB") or 0),
        disks=tuple(
            DiskInfo(key=str(d.key), capacity_gib=disk_gib(d))
            for d in devices
            if isinstance(d, vim.vm.device.VirtualDisk)
        ),
        nics=_nic_infos(devices, power, names),
        ips=_guest_ips(values),
        is_template=bool(values.get("config.template")),
        marker=marker_of(values.get("config.annotation")),
        web_blocked=False,
        extra={"moref": moid(obj), **(extra or {})},
        **fields,
    )


#: What a NIC change reads back to confirm itself (:func:`read_back_info`): the state the
#: confirmation needs, without the placement and names :data:`VM_PROPERTIES` carries.
READ_BACK_PROPERTIES: tuple[str, ...] = (
    "name",
    "config.instanceUuid",
    "config.template",
    "config.annotation",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "config.hardware.device",
    "runtime.powerState",
    "guest.net",
    "guest.ipAddress",
)


def read_back_info(obj: Any, values: Mapping[str, Any], names: Names) -> VMInfo | None:
    """A VM record from :data:`READ_BACK_PROPERTIES`: like :func:`vm_info` (power state, NICs with
    their networks, disks, addresses, size, marker) but without placement, which a NIC change does
    not move and which would cost a read of every entity above the VM."""
    if not values.get("config.instanceUuid"):
        return None
    return _record(obj, values, names)


def _nic_infos(devices: Sequence[Any], power: PowerState, names: Names) -> tuple[NICInfo, ...]:
    nic_list: list[NICInfo] = []
    for device in nics_of(devices):
        connect = device.connectable
        connected = bool(connect and connect.connected)
        start_connected = bool(connect and connect.startConnected)
        # vCenter reports every NIC of a powered-off VM as disconnected; what decides whether
        # such a VM is isolated is whether its NICs connect at power on.
        nic_list.append(
            NICInfo(
                key=str(device.key),
                mac=device.macAddress,
                network=nic_network(device, names),
                connected=connected if power is PowerState.RUNNING else start_connected,
                start_connected=start_connected,
            )
        )
    return tuple(nic_list)


def _guest_ips(values: Mapping[str, Any]) -> tuple[str, ...]:
    # The guest's primary address first, then every other one VMware Tools reports.
    ips: list[str] = []
    primary = values.get("guest.ipAddress")
    if primary and usable_ip(primary):
        ips.append(primary)
    for guest_nic in values.get("guest.net") or []:
        for address in guest_nic.ipAddress or []:
            if usable_ip(address) and address not in ips:
                ips.append(address)
    return tuple(ips)


def _placement(values: Mapping[str, Any], names: Names) -> dict[str, str]:
    host = values.get("runtime.host")
    host_id = moid(host) if host is not None else None
    folder_id = moid(values["parent"]) if values.get("parent") is not None else None
    pool = values.get("resourcePool")
    placement: dict[str, str] = {}
    datacenter = names.ancestor(folder_id, "Datacenter") or names.ancestor(host_id, "Datacenter")
    pool_id = moid(pool) if pool is not None else None
    # The pool decides the cluster (vcsim leaves a clone on its template's host); a template
    # has no pool, so its host does.
    cluster = names.ancestor(pool_id, "ClusterComputeResource") or names.ancestor(
        host_id, "ClusterComputeResource"
    )
    for key, value in (
        ("datacenter", names.name(datacenter)),
        ("cluster", names.name(cluster)),
        ("host", names.name(host_id)),
        ("folder", names.path(folder_id)),
        ("pool", names.path(pool_id)),
    ):
        if value:
            placement[key] = value
    return placement


def referenced(values: Mapping[str, Any]) -> list[Any]:
    """The hosts, pools, folders and networks a VM's properties point at (to be named)."""
    refs: list[Any] = [values.get("runtime.host"), values.get("resourcePool"), values.get("parent")]
    refs.extend(values.get("network") or [])
    return refs


class Inventory:
    """Reads of VMs and templates; each public method is one or a few :meth:`Session.call` steps.

    Methods taking ``content`` run inside a step of the caller's (they raise pyVmomi faults);
    the others are whole reads that raise only the adapter's errors.
    """

    def __init__(self, session: Session, collector: Collector) -> None:
        self.session = session
        self.collector = collector

    def check(self) -> ConnectionCheck:
        """The contract's ``check``: log in, read the product and count VMs. Never raises."""
        endpoint = self.session.endpoint
        try:
            content = self.session.call("log in", lambda c: c)
            about = content.about
            rows = self.session.call(
                "count VMs", lambda c: self.collector.all_of(c, vim.VirtualMachine, ["config.template"])
            )
            templates = sum(1 for row in rows if props(row).get("config.template"))
            vms = len(rows) - templates
            return ConnectionCheck(
                ok=True,
                message=(
                    f"connected to {about.fullName} at {endpoint} as {self.session.config.username}: "
                    f"{vms} VMs, {templates} templates"
                ),
                product=str(about.name or about.fullName),
                version=f"{about.version} (build {about.build}, API {about.apiVersion})",
                vm_count=vms,
                template_count=templates,
            )
        except HypervisorError as exc:
            return ConnectionCheck(ok=False, message=exc.message)
        except Exception as exc:  # check() never raises: an operator reads this message
            log.exception("unexpected failure checking %s", endpoint)
            return ConnectionCheck(ok=False, message=f"unexpected error talking to {endpoint}: {exc!r}")

    def list_vms(self) -> list[VMInfo]:
        """Every VM and template with a configuration, in two bulk retrieves."""
        return self.session.call("list VMs", self._all_vms)

    def _all_vms(self, content: vim.ServiceInstanceContent) -> list[VMInfo]:
        with self.collector.view(content, [vim.VirtualMachine]) as view:
            rows = self.collector.retrieve(
                content, [self.collector.view_spec(view, vim.VirtualMachine, VM_PROPERTIES)]
            )
        values = [(row.obj, props(row)) for row in rows]
        names = self.collector.names(content, (ref for _obj, v in values for ref in referenced(v)))
        infos = (vm_info(obj, v, names) for obj, v in values)
        return [info for info in infos if info is not None]

    def list_templates(self) -> list[TemplateInfo]:
        """The templates of :meth:`list_vms`, with their size, OS and placement."""
        return [
            TemplateInfo(
                ref=vm.ref,
                name=vm.name,
                os=str(vm.extra.get("guest_os") or vm.extra.get("guest_id") or ""),
                vcpus=vm.vcpus,
                memory_mib=vm.memory_mib,
                disk_gib=vm.disk_gib,
                extra={"guest_id": vm.extra.get("guest_id", ""), **vm.placement},
            )
            for vm in self.list_vms()
            if vm.is_template
        ]

    def get_vm(self, ref: str) -> VMInfo:
        """One VM re-read; :class:`NotFound` when it does not exist."""
        vm = self.find(ref)
        return self.session.call(f"read VM {ref}", lambda c: self.info_of(c, vm))

    def find_by_marker(self, marker: str) -> VMInfo | None:
        """The VM whose annotation carries ``marker``, or None."""
        if not marker:
            return None

        def find(content: vim.ServiceInstanceContent) -> VMInfo | None:
            vm = self.marked(content, marker)
            return None if vm is None else self.info_of(content, vm)

        return self.session.call(f"find VM with marker {marker}", find)

    def marked(self, content: vim.ServiceInstanceContent, marker: str) -> Any | None:
        """The managed object of the VM carrying ``marker`` (the first, if several do)."""
        rows = self.collector.all_of(content, vim.VirtualMachine, ["config.annotation", "config.template"])
        matches = [row.obj for row in rows if marker_of(props(row).get("config.annotation")) == marker]
        if len(matches) > 1:
            log.warning("%d VMs carry marker %s: %s", len(matches), marker, [moid(m) for m in matches])
        return matches[0] if matches else None

    def info_of(self, content: vim.ServiceInstanceContent, vm: Any) -> VMInfo:
        """The record of one VM object, read now."""
        values = self.collector.read(content, vm, VM_PROPERTIES)
        info = vm_info(vm, values, self.collector.names(content, referenced(values)))
        if info is None:
            raise NotFound(f"VM {moid(vm)} is inaccessible (no configuration)")
        return info

    def read_back(self, content: vim.ServiceInstanceContent, vm: Any) -> VMInfo:
        """The VM as a NIC change needs to confirm itself, in one round trip: power state, devices,
        addresses, and the names of the networks its NICs are on. ``placement`` is left empty (a
        NIC change does not move the VM; :meth:`info_of` has it)."""
        values, names = self.collector.read_with_networks(content, vm, READ_BACK_PROPERTIES)
        info = read_back_info(vm, values, names)
        if info is None:
            raise NotFound(f"VM {moid(vm)} is inaccessible (no configuration)")
        return info

    def lookup(self, content: vim.ServiceInstanceContent, ref: str) -> vim.VirtualMachine | None:
        """The VM (or template) object of an instance UUID, or None."""
        try:
            uuid.UUID(ref)
        except (ValueError, TypeError, AttributeError):
            return None  # not a ref this adapter ever issued
        found = service(content.searchIndex, "SearchIndex").FindByUuid(None, ref, True, True)
        return found if isinstance(found, vim.VirtualMachine) else None

    def find(self, ref: str, *, what: str = "VM") -> vim.VirtualMachine:
        """Like :meth:`lookup`, as a whole step; :class:`NotFound` naming ``what`` if missing."""
        vm = self.session.call(f"find {what} {ref}", lambda c: self.lookup(c, ref))
        if vm is None:
            raise NotFound(f"{what} {ref} does not exist on {self.session.endpoint}", detail={"ref": ref})
        return vm

    def state(self, vm: Any, ref: str) -> tuple[PowerState, dict[str, Any]]:
        """Power state, name and devices of a VM about to be changed; a template is InvalidSpec."""
        values = self.session.call(
            f"read VM {ref}",
            lambda c: self.collector.read(
                c, vm, ["name", "config.template", "runtime.powerState", "config.hardware.device"]
            ),
        )
        if values.get("config.template"):
            raise InvalidSpec(f"{ref} ({values.get('name')}) is a template, not a VM", detail={"ref": ref})
        return POWER_STATES.get(str(values.get("runtime.powerState")), PowerState.UNKNOWN), values
