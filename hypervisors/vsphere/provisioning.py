"""Clone a VM from a template, idempotently, and bring it to the requested spec.

The flow of :meth:`Provisioner.clone`:

1. A VM already carrying ``spec.marker`` (an earlier attempt got that far) is completed and
   returned: no second clone.
2. The plan is made before anything is created: template (must be a template), datacenter, folder,
   pool, datastore, host, port group (:mod:`hypervisors.vsphere.placement`), size, marker and guest
   customization (:mod:`hypervisors.vsphere.customization`). A bad setting fails here.
3. A VM of ``spec.name`` in the target folder is adopted when its annotation or
   ``extraConfig["vmportal.marker"]`` carries the marker (vcsim ignores a clone's annotation, and a
   worker may have died right after the clone); a VM of that name made for anything else is
   :class:`~hypervisors.base.InvalidSpec`.
4. CloneVM_Task runs powered off. If it fails, whatever VM it left behind is destroyed and
   :class:`~hypervisors.base.TaskFailed` carries vCenter's text.
5. Completion (:meth:`Provisioner.complete`, also the retry path): CPUs, memory, marker, first disk
   (grown, never shrunk), first NIC's network, then power on, each step skipped when already right.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from pyVmomi import vim

from hypervisors.base import CloneSpec, ConnectionConfig, HypervisorError, InvalidSpec, VMInfo
from hypervisors.vsphere.collector import Collector, moid
from hypervisors.vsphere.customization import customization_spec
from hypervisors.vsphere.devices import disk_gib, first_disk, grow, nic_network, nics_of
from hypervisors.vsphere.faults import fault_name
from hypervisors.vsphere.inventory import MARKER_EXTRA_CONFIG_KEY, Inventory, marker_of, with_marker
from hypervisors.vsphere.placement import Placement
from hypervisors.vsphere.power import PowerOps
from hypervisors.vsphere.session import Session, service
from hypervisors.vsphere.tasks import Tasks, failure

log = logging.getLogger(__name__)


@dataclass
class ClonePlan:
    """A clone ready to submit: the template, the target folder and the complete CloneSpec."""

    template: vim.VirtualMachine
    template_name: str
    folder: vim.Folder
    clone_spec: vim.vm.CloneSpec
    network: Any | None = None  # the resolved port group for completion checks


class Provisioner:
    """Clones for one adapter; ``config.defaults`` hold the connection's placement settings."""

    def __init__(
        self,
        config: ConnectionConfig,
        session: Session,
        collector: Collector,
        inventory: Inventory,
        tasks: Tasks,
        power: PowerOps,
    ) -> None:
        self.config = config
        self.session = session
        self.collector = collector
        self.inventory = inventory
        self.tasks = tasks
        self.power = power
        self.placement = Placement(collector)

    def clone(self, spec: CloneSpec) -> VMInfo:
        """The contract's ``clone`` (see the module docstring for the steps)."""
        self._validate(spec)
        existing = self.session.call(
            f"find VM with marker {spec.marker}", lambda c: self.inventory.marked(c, spec.marker)
        )
        if existing is not None:
            return self.complete(existing, spec)

        template = self.inventory.find(spec.template_ref, what="template")
        plan = self.session.call(f"plan clone of {spec.template_ref}", lambda c: self.plan(c, template, spec))
        adopted = self.session.call(f"look for {spec.name}", lambda c: self.named(c, plan.folder, spec))
        if adopted is not None:
            return self.complete(adopted, spec)

        action = f"clone {plan.template_name} as {spec.name}"
        task = self.session.call(
            action, lambda c: plan.template.Clone(folder=plan.folder, name=spec.name, spec=plan.clone_spec)
        )
        outcome, created = self.tasks.wait(task, action=action)
        if not outcome.ok:
            self.remove_partial(plan.folder, spec)
            raise failure(action, outcome)
        return self.complete(created, spec)

    @staticmethod
    def _validate(spec: CloneSpec) -> None:
        """Refuse, before anything is read or created, what vCenter or the retry logic cannot take."""
        if not spec.marker or not spec.marker.strip() or any(ch.isspace() for ch in spec.marker):
            raise InvalidSpec(
                "CloneSpec.marker is required (no spaces): it is what makes a retried clone safe"
            )
        if not spec.name.strip() or len(spec.name) > 80:
            raise InvalidSpec("CloneSpec.name must be 1 to 80 characters", detail={"field": "name"})
        if spec.vcpus < 1 or spec.memory_mib < 4 or spec.memory_mib % 4:
            raise InvalidSpec(
                f"vcpus ({spec.vcpus}) must be positive and memory_mib ({spec.memory_mib}) a positive "
                "multiple of 4 (a vSphere rule)",
                detail={"field": "memory_mib"},
            )

    def plan(self, content: vim.ServiceInstanceContent, template: Any, spec: CloneSpec) -> ClonePlan:
        """Everything CloneVM_Task needs, resolved and checked; raises before anything is created."""
        tvalues = self.collector.read(
            content,
            template,
            [
                "name",
                "config.template",
                "config.guestId",
                "config.hardware.device",
                "config.hardware.numCoresPerSocket",
                "runtime.host",
                "parent",
            ],
        )
        name = str(tvalues.get("name", spec.template_ref))
        if not tvalues.get("config.template"):
            raise InvalidSpec(
                f"{spec.template_ref} ({name}) is a VM, not a template", detail={"field": "template_ref"}
            )
        settings = {**self.config.defaults, **spec.placement}
        host = tvalues.get("runtime.host")
        names = self.collector.names(content, [tvalues.get("parent"), host])
        dc = self.placement.datacenter(content, settings.get("datacenter"), names, tvalues.get("parent"))
        dc_values = self.collector.read(content, dc, ["name", "vmFolder", "hostFolder"])
        dc_path = names.path(moid(dc)) or self.collector.path_of(content, dc)

        folder = self.placement.folder(content, settings.get("folder"), dc_path, dc_values["vmFolder"])
        pool = self.placement.pool(content, settings, dc, dc_path, host, names)
        relocate = vim.vm.RelocateSpec(pool=pool)
        if settings.get("datastore"):
            relocate.datastore = self.placement.by_name(
                content, vim.Datastore, settings["datastore"], dc, "datastore"
            )
        if settings.get("host"):
            relocate.host = self.placement.by_name(content, vim.HostSystem, settings["host"], dc, "host")

        devices = list(tvalues.get("config.hardware.device") or [])
        changes: list[vim.vm.device.VirtualDeviceSpec] = []
        disk = first_disk(devices)
        if spec.disk_gib is not None:
            if disk is None:
                raise InvalidSpec(f"template {name} has no disk to grow", detail={"field": "disk_gib"})
            current = disk_gib(disk)
            if spec.disk_gib < current:
                raise InvalidSpec(
                    f"disk_gib {spec.disk_gib} is smaller than template {name}'s {current:g} GiB disk; "
                    "disks can only grow",
                    detail={"field": "disk_gib"},
                )
            # The disk is grown by _complete, on the clone's own disk, before the first power-on:
            # an edit inside the clone spec would have to name the template's disk file.
        network_name = spec.network or self.config.defaults.get("network")
        network = None
        nics = nics_of(devices)
        if network_name:
            network = self.placement.by_name(content, vim.Network, network_name, dc, "network")
            if nics:
                changes.append(self.placement.rewire(content, nics[0], network))

        config = vim.vm.ConfigSpec(
            numCPUs=spec.vcpus,
            memoryMB=spec.memory_mib,
            annotation=with_marker(None, spec.marker),
            extraConfig=[vim.option.OptionValue(key=MARKER_EXTRA_CONFIG_KEY, value=spec.marker)],
            deviceChange=changes,
        )
        cores = int(tvalues.get("config.hardware.numCoresPerSocket") or 1)
        if spec.vcpus % cores:
            config.numCoresPerSocket = 1
        clone_spec = vim.vm.CloneSpec(
            location=relocate,
            template=False,
            # Powered on only after completion, so the first boot already has the final size.
            powerOn=False,
            config=config,
            customization=customization_spec(
                spec, str(tvalues.get("config.guestId") or ""), len(nics), self.config.defaults
            ),
        )
        return ClonePlan(
            template=template, template_name=name, folder=folder, clone_spec=clone_spec, network=network
        )

    def named(self, content: vim.ServiceInstanceContent, folder: Any, spec: CloneSpec) -> Any | None:
        """A VM already named ``spec.name`` in the target folder: ours (a retry) or a conflict."""
        found = service(content.searchIndex, "SearchIndex").FindChild(folder, spec.name)
        if found is None:
            return None
        if not isinstance(found, vim.VirtualMachine):
            raise InvalidSpec(f"{spec.name!r} already names a {fault_name(found)} in the target folder")
        values = self.collector.read(content, found, ["config.annotation", "config.extraConfig"])
        markers = {marker_of(values.get("config.annotation"))}
        markers.update(
            str(option.value)
            for option in values.get("config.extraConfig") or []
            if option.key == MARKER_EXTRA_CONFIG_KEY
        )
        if spec.marker in markers:
            log.info("clone retry: adopting %s (%s), created by an earlier attempt", spec.name, moid(found))
            return found
        raise InvalidSpec(
            f"a VM named {spec.name!r} already exists in the target folder and was not created for "
            f"{spec.marker}",
            detail={"field": "name"},
        )

    def remove_partial(self, folder: Any, spec: CloneSpec) -> None:
        """After a failed clone task, destroy whatever VM it may have left behind."""
        leftovers: list[Any] = []
        with contextlib.suppress(HypervisorError):
            marked = self.session.call(
                "look for a partial clone", lambda c: self.inventory.marked(c, spec.marker)
            )
            if marked is not None:
                leftovers.append(marked)
        with contextlib.suppress(HypervisorError):
            named = self.session.call("look for a partial clone", lambda c: self.named(c, folder, spec))
            if named is not None and all(moid(named) != moid(v) for v in leftovers):
                leftovers.append(named)
        for vm in leftovers:
            log.warning("removing partial clone %s (%s) after a failed clone task", spec.name, moid(vm))
            with contextlib.suppress(HypervisorError):
                self.power.destroy(vm, spec.name)

    def complete(self, vm: Any, spec: CloneSpec) -> VMInfo:
        """Bring a cloned (or earlier cloned) VM to the spec: size, marker, disk, network, power."""
        values = self.session.call(
            f"read {spec.name}",
            lambda c: self.collector.read(
                c,
                vm,
                [
                    "config.template",
                    "config.annotation",
                    "config.hardware.numCPU",
                    "config.hardware.memoryMB",
                    "config.hardware.numCoresPerSocket",
                    "config.hardware.device",
                    "runtime.powerState",
                    "network",
                    "parent",
                ],
            ),
        )
        if values.get("config.template"):
            raise InvalidSpec(f"marker {spec.marker} is on a template, not a VM", detail={"field": "marker"})
        # Built as keyword arguments: pyVmomi types some of these fields in ways mypy cannot follow.
        update: dict[str, Any] = {}
        if values.get("config.hardware.numCPU") != spec.vcpus:
            update["numCPUs"] = spec.vcpus
            if spec.vcpus % int(values.get("config.hardware.numCoresPerSocket") or 1):
                update["numCoresPerSocket"] = 1
        if values.get("config.hardware.memoryMB") != spec.memory_mib:
            update["memoryMB"] = spec.memory_mib
        annotation = values.get("config.annotation")
        if marker_of(annotation) != spec.marker:
            update["annotation"] = with_marker(annotation, spec.marker)
        devices = list(values.get("config.hardware.device") or [])
        disk = first_disk(devices)
        changes: list[vim.vm.device.VirtualDeviceSpec] = []
        if spec.disk_gib is not None and disk is not None:
            current = disk_gib(disk)
            if spec.disk_gib < current:
                raise InvalidSpec(
                    f"disk_gib {spec.disk_gib} is smaller than {spec.name}'s {current:g} GiB disk; "
                    "disks can only grow",
                    detail={"field": "disk_gib"},
                )
            if spec.disk_gib > current:
                changes.append(grow(disk, spec.disk_gib))
        network_name = spec.network or self.config.defaults.get("network")
        nics = nics_of(devices)
        if network_name and nics:
            names = self.session.call(
                "read networks",
                lambda c: self.collector.names(c, [values.get("parent"), *(values.get("network") or [])]),
            )
            if nic_network(nics[0], names) != network_name:
                folder = values.get("parent")
                within = names.obj(names.ancestor(moid(folder) if folder is not None else None, "Datacenter"))

                def rewire(c: vim.ServiceInstanceContent) -> vim.vm.device.VirtualDeviceSpec:
                    return self.placement.rewire(
                        c, nics[0], self.placement.by_name(c, vim.Network, network_name, within, "network")
                    )

                changes.append(self.session.call("resolve network", rewire))
        if changes:
            update["deviceChange"] = changes
        if update:
            config = vim.vm.ConfigSpec(**update)
            self.tasks.run(f"reconfigure {spec.name}", lambda c: vm.Reconfigure(spec=config))
        if spec.power_on and values.get("runtime.powerState") != "poweredOn":
            self.tasks.run(f"power on {spec.name}", lambda c: vm.PowerOn(host=None))
        return self.session.call(f"read {spec.name}", lambda c: self.inventory.info_of(c, vm))
