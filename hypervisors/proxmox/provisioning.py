"""Clone a Proxmox VM from a template, idempotently, and bring it to the requested spec.

The flow of :meth:`Provisioner.clone`:

1. The spec is checked locally (PVE's DNS-name rule for the name, sizes, addresses), so a bad
   request is refused as :class:`~hypervisors.base.InvalidSpec` before anything is created.
2. A VM already carrying ``spec.marker`` in its description is completed and returned. A clone of
   the same template still running under the portal's account (a worker died mid-clone; the new
   VM gets its description only when the copy ends) is waited for, then looked for again.
3. Otherwise a full clone (never linked: the unit's VM must not depend on the template's disks)
   gets a fresh vmid from ``/cluster/nextid`` (asked again if another client took it meanwhile),
   on ``node``/``storage``/``pool`` from ``CloneSpec.placement``, else ``ConnectionConfig.defaults``,
   else the template's. A failed clone task is removed before :class:`~hypervisors.base.TaskFailed`.
4. Completion (also the retry path): one socket of ``vcpus`` cores, memory, bridge of ``net0``,
   cloud-init account, password (always written: PVE never returns it), ``ipconfig0`` and
   nameservers, the marker; then the first disk grown (never shrunk) and the VM started. Each step
   is skipped when already right, so a half-finished clone converges.

Cloud-init takes the guest's host name from the VM name (``CloneSpec.hostname`` has no separate
setting here), and PVE rebuilds the cloud-init drive when the VM starts, which is why the VM is
configured before it is powered on.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from hypervisors.base import (
    CloneSpec,
    ConnectionConfig,
    HypervisorError,
    InvalidSpec,
    PowerAction,
    Retriable,
    TaskFailed,
    VMInfo,
)
from hypervisors.proxmox.api import Api
from hypervisors.proxmox.inventory import Inventory
from hypervisors.proxmox.power import PowerOps
from hypervisors.proxmox.tasks import Tasks
from hypervisors.proxmox.vmconfig import (
    description_for,
    disk_keys,
    marker_of,
    memory_mib,
    prop_get,
    prop_set,
    size_gib,
    vcpus,
)

log = logging.getLogger(__name__)

# PVE's "dns-name" format, checked locally so a bad name is refused before anything is created.
_DNS_NAME = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?"
)


class Provisioner:
    """Clones through one API client; ``config.defaults`` hold the connection's placement."""

    def __init__(
        self, config: ConnectionConfig, api: Api, inventory: Inventory, tasks: Tasks, power: PowerOps
    ) -> None:
        self.config = config
        self.api = api
        self.inventory = inventory
        self.tasks = tasks
        self.power = power
        self._defaults = dict(config.defaults)

    def clone(self, spec: CloneSpec) -> VMInfo:
        """The contract's ``clone`` (see the module docstring for the steps)."""
        self._check_spec(spec)
        existing = self.inventory.find_by_marker(spec.marker)
        if existing is None:
            node, vmid, template = self.inventory.locate(spec.template_ref)
            self._check_disk(spec, template)
            # A worker that crashed mid-clone left PVE copying disks; the new VM gets its
            # description (and so the marker) only when that task ends. Wait for it, then look again.
            if self._await_running_clones(vmid):
                existing = self.inventory.find_by_marker(spec.marker)
            ref = existing.ref if existing else self._clone_new(spec, node, vmid)
        else:
            ref = existing.ref
        return self.complete(ref, spec)

    def _placement(self, spec: CloneSpec, key: str, *aliases: str) -> str | None:
        # The clone's own placement first, then the connection's defaults; aliases are the
        # vSphere-style names an operator may have used (datastore, network).
        for source in (spec.placement, self._defaults):
            for name in (key, *aliases):
                if source.get(name):
                    return str(source[name])
        return None

    @staticmethod
    def _check_spec(spec: CloneSpec) -> None:
        """Refuse what Proxmox would refuse, before anything is created."""
        problems: dict[str, str] = {}
        if not _DNS_NAME.fullmatch(spec.name):
            problems["name"] = "Proxmox VM names must be DNS names (letters, digits, '-', '.')"
        if not spec.marker or "\n" in spec.marker:
            problems["marker"] = "a non-empty single line is required"
        if spec.vcpus < 1:
            problems["vcpus"] = "at least 1"
        if spec.memory_mib < 16:
            problems["memory_mib"] = "at least 16 MiB"
        if spec.disk_gib is not None and spec.disk_gib < 1:
            problems["disk_gib"] = "at least 1 GiB"
        if spec.ip is not None:
            try:
                ipaddress.ip_interface(f"{spec.ip.address}/{spec.ip.prefix_length}")
                if spec.ip.gateway:
                    ipaddress.ip_address(spec.ip.gateway)
                for server in spec.ip.dns:
                    ipaddress.ip_address(server)
            except ValueError as exc:
                problems["ip"] = str(exc)
        if problems:
            raise InvalidSpec(
                "invalid clone request: " + ", ".join(f"{k} ({v})" for k, v in problems.items()),
                detail={"errors": problems},
            )

    @staticmethod
    def _check_disk(spec: CloneSpec, template: Mapping[str, Any]) -> None:
        disks = disk_keys(template)
        if spec.disk_gib is None or not disks:
            return
        current = size_gib(prop_get(str(template[disks[0]]), "size"))
        if spec.disk_gib < current:
            raise InvalidSpec(
                f"disk_gib {spec.disk_gib} is smaller than the template's {current:g} GiB "
                "(Proxmox cannot shrink disks)",
                detail={"errors": {"disk_gib": f"at least {current:g}"}},
            )

    def _await_running_clones(self, template_vmid: int) -> bool:
        """Wait for clones of the template still running under the portal's own account; True if any."""
        user = (self.config.token_id or self.config.username).split("!")[0]
        tasks = self.api.get("cluster/tasks", "list tasks")
        running = [
            t
            for t in tasks
            if t.get("type") == "qmclone"
            and str(t.get("id")) == str(template_vmid)
            and "endtime" not in t
            and str(t.get("user", "")).split("!")[0] == user
        ]
        for task in running:
            self.tasks.wait_task(str(task["upid"]))
        return bool(running)

    def _clone_new(self, spec: CloneSpec, node: str, vmid: int) -> str:
        """Clone the template ``node``/``vmid`` as a new VM; its ref once the task has ended well."""
        target = self._placement(spec, "node") or node
        params: dict[str, Any] = {
            "name": spec.name,
            "full": 1,  # a linked clone would tie the unit's VM to the template's disks for life
            "target": target,
            "description": description_for(spec.marker),
        }
        storage = self._placement(spec, "storage", "datastore")
        if storage:
            params["storage"] = storage
        pool = self._placement(spec, "pool")
        if pool:
            params["pool"] = pool
        upid: Any = None
        newid = 0
        for attempt in range(3):
            newid = int(self.api.get("cluster/nextid", "reserve a VM id"))
            try:
                upid = self.api.post(
                    f"nodes/{node}/qemu/{vmid}/clone", f"clone {node}/{vmid}", newid=newid, **params
                )
                break
            except HypervisorError as exc:
                # Another client took the id between nextid and clone; ask again.
                if "already exists" not in exc.message or attempt == 2:
                    raise
        result = self.tasks.wait_task(str(upid))
        if not result.ok:
            self._discard(f"{target}/{newid}")
            raise TaskFailed(
                f"clone of {spec.template_ref} failed: {result.message}",
                detail={"task": result.task_ref, "template": spec.template_ref},
            )
        return f"{target}/{newid}"

    def _discard(self, ref: str) -> None:
        """Remove the remains of a failed clone; the clone's own failure is what gets reported."""
        try:
            self.power.delete(ref)
        except HypervisorError as exc:
            log.warning("could not remove partial VM %s after a failed clone: %s", ref, exc.message)

    def complete(self, ref: str, spec: CloneSpec) -> VMInfo:
        """Bring a cloned VM to the spec; each step is skipped when already done, so a retry of a
        half-finished clone converges instead of failing."""
        node, vmid, config = self._wait_unlocked(ref)
        changes = self._changes(config, spec)
        if changes:
            upid = self.api.post(
                f"nodes/{node}/qemu/{vmid}/config", f"configure VM {vmid}", digest=config["digest"], **changes
            )
            self.tasks.finish(upid, f"configure VM {vmid}")
        disks = disk_keys(config)
        if spec.disk_gib is not None and disks:
            current = size_gib(prop_get(str(config[disks[0]]), "size"))
            if spec.disk_gib > current:
                upid = self.api.put(
                    f"nodes/{node}/qemu/{vmid}/resize",
                    f"grow disk {disks[0]} of VM {vmid}",
                    disk=disks[0],
                    size=f"{spec.disk_gib}G",
                )
                self.tasks.finish(upid, f"grow disk {disks[0]} of VM {vmid}")
        ref = f"{node}/{vmid}"
        if spec.power_on:
            return self.power.power(ref, PowerAction.START)
        return self.inventory.get_vm(ref)

    def _changes(self, config: Mapping[str, Any], spec: CloneSpec) -> dict[str, Any]:
        """The config writes that bring ``config`` to ``spec`` (empty when it is there already)."""
        changes: dict[str, Any] = {}
        if vcpus(config) != spec.vcpus or int(config.get("sockets", 1)) != 1:
            # One socket, so "vcpus" means what it says whatever the template's topology.
            changes.update(sockets=1, cores=spec.vcpus)
        if memory_mib(config) != spec.memory_mib:
            changes["memory"] = str(spec.memory_mib)
        bridge = spec.network or self._placement(spec, "bridge", "network")
        if bridge and "net0" in config and prop_get(str(config["net0"]), "bridge") != bridge:
            changes["net0"] = prop_set(str(config["net0"]), "bridge", bridge)
        if spec.admin_user and config.get("ciuser") != spec.admin_user:
            changes["ciuser"] = spec.admin_user
        if spec.admin_password:
            # PVE never returns the password ("**********"), so it cannot be compared: always set.
            changes["cipassword"] = spec.admin_password
        if spec.ip is not None:
            address = ipaddress.ip_interface(f"{spec.ip.address}/{spec.ip.prefix_length}")
            family, gateway_key = ("ip", "gw") if address.version == 4 else ("ip6", "gw6")
            ipconfig = f"{family}={address.with_prefixlen}"
            if spec.ip.gateway:
                ipconfig += f",{gateway_key}={spec.ip.gateway}"
            if config.get("ipconfig0") != ipconfig:
                changes["ipconfig0"] = ipconfig
            nameserver = " ".join(spec.ip.dns)
            if nameserver and config.get("nameserver") != nameserver:
                changes["nameserver"] = nameserver
        if marker_of(config.get("description")) != spec.marker:
            changes["description"] = description_for(spec.marker)
        return changes

    def _wait_unlocked(self, ref: str) -> tuple[str, int, dict[str, Any]]:
        # PVE refuses config writes while the clone (or create) lock is held.
        deadline = time.monotonic() + self.config.task_timeout
        while True:
            node, vmid, config = self.inventory.locate(ref)
            if config.get("lock") not in ("clone", "create"):
                return node, vmid, config
            if time.monotonic() >= deadline:
                raise Retriable(
                    f"VM {ref} is still locked ({config['lock']})", defer=30.0, detail={"ref": ref}
                )
            time.sleep(0.5)
