"""The Proxmox inventory: QEMU VMs and templates as :class:`~hypervisors.base.VMInfo` records.

* A VM's ref is ``"<node>/<vmid>"``. The vmid is unique in a cluster and never changes; the node
  can (migration), so a ref whose node is stale is re-resolved through ``/cluster/resources``
  (:meth:`Inventory.locate`) instead of being reported missing.
* The inventory is one ``/cluster/resources`` listing plus one config read per VM, because NICs,
  disks and the marker live only in the config. LXC containers are left out: the portal lends
  QEMU VMs only.
* Addresses are the configured cloud-init ones (``ipconfigN``); ``web_blocked`` is the
  :data:`~hypervisors.proxmox.vmconfig.WEB_BLOCK_TAG` in the listing, and the firewall rules
  themselves when one VM is read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hypervisors.base import (
    ConnectionCheck,
    DiskInfo,
    HypervisorError,
    NotFound,
    PowerState,
    TemplateInfo,
    VMInfo,
)
from hypervisors.proxmox.api import Api
from hypervisors.proxmox.vmconfig import (
    WEB_BLOCK_COMMENT,
    WEB_BLOCK_TAG,
    configured_ips,
    disk_keys,
    marker_of,
    memory_mib,
    nics,
    parse_ref,
    prop_get,
    size_gib,
    tags_of,
    vcpus,
)

# Proxmox's own vocabulary: ``status`` is running/stopped; ``qmpstatus`` (QEMU's view) adds
# paused, suspended and the transient states that map to UNKNOWN.
POWER_STATES: Mapping[str, PowerState] = {
    "running": PowerState.RUNNING,
    "stopped": PowerState.STOPPED,
    "paused": PowerState.SUSPENDED,
    "suspended": PowerState.SUSPENDED,
}


@dataclass
class Guest:
    """One QEMU VM as read: where it is, its config and its status."""

    node: str
    vmid: int
    config: dict[str, Any]
    status: Mapping[str, Any]  # /status/current, or the /cluster/resources entry

    @property
    def ref(self) -> str:
        return f"{self.node}/{self.vmid}"

    @property
    def power_state(self) -> PowerState:
        if self.config.get("template"):
            return PowerState.STOPPED
        if self.config.get("lock") == "suspended":  # hibernated to disk: QEMU is gone
            return PowerState.SUSPENDED
        status = str(self.status.get("status", ""))
        qmp = str(self.status.get("qmpstatus", status))
        if status == "running":
            return POWER_STATES.get(qmp, PowerState.UNKNOWN)
        return POWER_STATES.get(status, PowerState.UNKNOWN)


class Inventory:
    """Reads of VMs and templates through one API client."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def check(self) -> ConnectionCheck:
        """The contract's ``check``: PVE's version and the VM count. Never raises."""
        try:
            version = self.api.get("version", "read version")
            resources = self.resources()
        except HypervisorError as exc:
            return ConnectionCheck(ok=False, message=exc.message)
        except Exception as exc:  # check() promises never to raise; report whatever went wrong
            return ConnectionCheck(ok=False, message=f"{self.api.where}: {exc}")
        templates = sum(1 for r in resources if r.get("template"))
        return ConnectionCheck(
            ok=True,
            message=f"connected to Proxmox VE {version.get('version', '?')} at {self.api.where}",
            product="Proxmox VE",
            version=str(version.get("version", "")),
            vm_count=len(resources) - templates,
            template_count=templates,
        )

    def list_vms(self) -> list[VMInfo]:
        """Every QEMU VM and template (``web_blocked`` from the tag)."""
        return [self.info(guest) for guest in self.guests()]

    def list_templates(self) -> list[TemplateInfo]:
        """The templates, with their size, OS type and node."""
        templates = []
        for entry in self.resources():
            if not entry.get("template"):
                continue
            node, vmid = str(entry["node"]), int(entry["vmid"])
            try:
                config = self.vm_config(node, vmid)
            except NotFound:
                continue
            disks = disk_keys(config)
            templates.append(
                TemplateInfo(
                    ref=f"{node}/{vmid}",
                    name=str(config.get("name") or f"VM {vmid}"),
                    os=str(config.get("ostype", "")),
                    vcpus=vcpus(config),
                    memory_mib=memory_mib(config),
                    disk_gib=size_gib(prop_get(str(config[disks[0]]), "size")) if disks else 0,
                    extra={"vmid": vmid, "node": node, "description": config.get("description", "")},
                )
            )
        return templates

    def get_vm(self, ref: str) -> VMInfo:
        """One VM re-read (``web_blocked`` from its firewall rules); :class:`NotFound` if missing."""
        guest = self.read(ref)
        # The rules are the truth about web blocking; the tag is only the inventory's shortcut.
        web_blocked = bool(self.web_rules(guest.node, guest.vmid))
        return self.info(guest, web_blocked=web_blocked)

    def find_by_marker(self, marker: str) -> VMInfo | None:
        """The VM whose description carries ``marker``, or None."""
        for guest in self.guests():
            if marker_of(guest.config.get("description")) == marker:
                return self.get_vm(guest.ref)
        return None

    def resources(self) -> list[Mapping[str, Any]]:
        """The cluster-wide listing of QEMU VMs (node, vmid, status, template flag)."""
        listed = self.api.get("cluster/resources", "list VMs", type="vm")
        # type=vm also lists LXC containers; vmportal lends QEMU VMs only.
        return [r for r in listed if r.get("type") == "qemu"]

    def vm_config(self, node: str, vmid: int) -> dict[str, Any]:
        """The VM's current config, ``digest`` included (writes send it back)."""
        return dict(self.api.get(f"nodes/{node}/qemu/{vmid}/config", f"read VM {vmid}"))

    def locate(self, ref: str) -> tuple[str, int, dict[str, Any]]:
        """Node, vmid and config of ``ref``, following the VM if it migrated to another node."""
        node, vmid = parse_ref(ref)
        try:
            return node, vmid, self.vm_config(node, vmid)
        except NotFound:
            current = next((r for r in self.resources() if int(r.get("vmid", 0)) == vmid), None)
            if current is None or current.get("node") == node:
                raise NotFound(f"VM {ref} does not exist", detail={"ref": ref}) from None
            node = str(current["node"])
            return node, vmid, self.vm_config(node, vmid)

    def read(self, ref: str) -> Guest:
        """Config and live status (``/status/current``) of one VM."""
        node, vmid, config = self.locate(ref)
        status = self.api.get(f"nodes/{node}/qemu/{vmid}/status/current", f"read VM {vmid} status")
        return Guest(node=node, vmid=vmid, config=config, status=status)

    def web_rules(self, node: str, vmid: int) -> list[Mapping[str, Any]]:
        """The VM firewall rules the portal added to block the web."""
        rules = self.api.get(f"nodes/{node}/qemu/{vmid}/firewall/rules", f"read VM {vmid} firewall rules")
        return [r for r in rules if str(r.get("comment", "")).startswith(WEB_BLOCK_COMMENT)]

    def info(self, guest: Guest, web_blocked: bool | None = None) -> VMInfo:
        """The record of ``guest``; ``web_blocked`` None means: judge by the tag."""
        config = guest.config
        disks = tuple(
            DiskInfo(key=k, capacity_gib=size_gib(prop_get(str(config[k]), "size")))
            for k in disk_keys(config)
        )
        placement = {"node": guest.node}
        if config.get("pool") or guest.status.get("pool"):
            placement["pool"] = str(config.get("pool") or guest.status.get("pool"))
        extra = {
            "vmid": guest.vmid,
            "ostype": config.get("ostype"),
            "lock": config.get("lock"),
            "tags": config.get("tags"),
            "qmpstatus": guest.status.get("qmpstatus"),
        }
        return VMInfo(
            ref=guest.ref,
            name=str(config.get("name") or guest.status.get("name") or f"VM {guest.vmid}"),
            power_state=guest.power_state,
            vcpus=vcpus(config),
            memory_mib=memory_mib(config),
            disks=disks,
            nics=nics(config),
            ips=configured_ips(config),
            is_template=bool(config.get("template")),
            marker=marker_of(config.get("description")),
            web_blocked=WEB_BLOCK_TAG in tags_of(config) if web_blocked is None else web_blocked,
            placement=placement,
            extra={k: v for k, v in extra.items() if v is not None},
        )

    def guests(self) -> Iterator[Guest]:
        """Every QEMU VM with its config: one cluster-wide listing plus one config read per VM,
        because NICs, disks and the marker live only in the config."""
        for entry in self.resources():
            node, vmid = str(entry["node"]), int(entry["vmid"])
            try:
                config = self.vm_config(node, vmid)
            except NotFound:  # deleted between the listing and the read
                continue
            yield Guest(node=node, vmid=vmid, config=config, status=entry)
