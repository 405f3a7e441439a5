"""Where a clone goes: datacenter, VM folder, resource pool, datastore, host and port group.

Each setting comes from ``CloneSpec.placement``, else ``ConnectionConfig.defaults``, else the
template (see :mod:`hypervisors.vsphere.adapter` for the keys). Objects are found by inventory
path (``/DC0/vm/units``) or by name within the datacenter; a name that is missing is
:class:`~hypervisors.base.NotFound` and one that is ambiguous is
:class:`~hypervisors.base.InvalidSpec`, both naming the setting in ``detail["field"]``, and both
raised before anything is cloned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyVmomi import vim

from hypervisors.base import InvalidSpec, NotFound
from hypervisors.vsphere.collector import Collector, Names, moid, props
from hypervisors.vsphere.session import service


class Placement:
    """Resolves placement settings to managed objects, within one retrieve step's content."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def datacenter(
        self, content: vim.ServiceInstanceContent, wanted: str | None, names: Names, folder: Any
    ) -> Any:
        """The datacenter named ``wanted``, else the one holding ``folder`` (the template's)."""
        if wanted:
            named = [
                row.obj
                for row in self.collector.all_of(content, vim.Datacenter, ["name"])
                if props(row).get("name") == wanted
            ]
            if not named:
                raise NotFound(f"datacenter {wanted!r} does not exist", detail={"field": "datacenter"})
            return named[0]
        found = names.obj(names.ancestor(moid(folder) if folder is not None else None, "Datacenter"))
        if found is None:
            raise NotFound("cannot tell the template's datacenter; set defaults['datacenter']")
        return found

    def at_path(self, content: vim.ServiceInstanceContent, path: str) -> Any | None:
        """The entity at an inventory path (``/DC0/vm/units``), or None."""
        return service(content.searchIndex, "SearchIndex").FindByInventoryPath(path.strip("/"))

    def folder(
        self, content: vim.ServiceInstanceContent, wanted: str | None, dc_path: str, vm_folder: Any
    ) -> Any:
        """The VM folder ``wanted`` (absolute, or under the datacenter's VM folder), else ``vm_folder``."""
        if not wanted:
            return vm_folder
        path = wanted if wanted.startswith("/") else f"{dc_path}/vm/{wanted}"
        found = self.at_path(content, path)
        if not isinstance(found, vim.Folder):
            raise NotFound(f"VM folder {wanted!r} does not exist ({path})", detail={"field": "folder"})
        return found

    def pool(
        self,
        content: vim.ServiceInstanceContent,
        settings: Mapping[str, str],
        dc: Any,
        dc_path: str,
        host: Any,
        names: Names,
    ) -> Any:
        """The resource pool for the clone: ``pool`` (path or name; a cluster's name means its root
        pool), else ``cluster``'s root pool, else the root pool of the template's cluster or host."""
        wanted = settings.get("pool") or settings.get("cluster")
        key = "pool" if settings.get("pool") else "cluster"
        found: Any = None
        if wanted:
            if "/" in wanted:
                found = self.at_path(
                    content, wanted if wanted.startswith("/") else f"{dc_path}/host/{wanted}"
                )
            else:
                kind = vim.ResourcePool if key == "pool" else vim.ClusterComputeResource
                found = self.by_name(content, kind, wanted, dc, key, missing_ok=key == "pool")
                if found is None:  # a pool given by its cluster's name
                    found = self.by_name(content, vim.ComputeResource, wanted, dc, key)
            if found is None:
                raise NotFound(f"{key} {wanted!r} does not exist", detail={"field": key})
        else:
            # The template's own cluster (or standalone host): its root pool.
            host_id = moid(host) if host is not None else None
            found = names.obj(
                names.ancestor(host_id, "ClusterComputeResource")
                or names.ancestor(host_id, "ComputeResource")
            )
            if found is None:
                raise NotFound("cannot tell where to place the clone; set defaults['pool'] or ['cluster']")
        if isinstance(found, vim.ComputeResource):
            found = self.collector.read(content, found, ["resourcePool"])["resourcePool"]
        if not isinstance(found, vim.ResourcePool):
            raise InvalidSpec(f"{key} {wanted!r} is not a resource pool or cluster", detail={"field": key})
        return found

    def by_name(
        self,
        content: vim.ServiceInstanceContent,
        kind: type,
        name: str,
        within: Any,
        what: str,
        *,
        missing_ok: bool = False,
    ) -> Any:
        """The one ``kind`` object named ``name`` under ``within``; ``what`` names the setting."""
        matches = [
            row.obj
            for row in self.collector.all_of(content, kind, ["name"], within)
            if props(row).get("name") == name
        ]
        if not matches:
            if missing_ok:
                return None
            raise NotFound(f"{what} {name!r} does not exist in this datacenter", detail={"field": what})
        if len(matches) > 1:
            raise InvalidSpec(
                f"{what} name {name!r} is ambiguous ({len(matches)} objects); give an inventory path",
                detail={"field": what},
            )
        return matches[0]

    def rewire(
        self, content: vim.ServiceInstanceContent, nic: Any, network: Any
    ) -> vim.vm.device.VirtualDeviceSpec:
        """The device edit that puts ``nic`` on ``network`` (standard, distributed or opaque), connected."""
        if isinstance(network, vim.dvs.DistributedVirtualPortgroup):
            values = self.collector.read(content, network, ["key", "config.distributedVirtualSwitch"])
            switch = self.collector.read(content, values["config.distributedVirtualSwitch"], ["uuid"])
            nic.backing = vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
                port=vim.dvs.PortConnection(portgroupKey=values["key"], switchUuid=switch["uuid"])
            )
        elif isinstance(network, vim.OpaqueNetwork):
            summary = self.collector.read(content, network, ["summary"])["summary"]
            nic.backing = vim.vm.device.VirtualEthernetCard.OpaqueNetworkBackingInfo(
                opaqueNetworkId=summary.opaqueNetworkId, opaqueNetworkType=summary.opaqueNetworkType
            )
        else:
            name = self.collector.read(content, network, ["name"])["name"]
            nic.backing = vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(
                deviceName=name, network=network
            )
        nic.connectable = vim.vm.device.VirtualDevice.ConnectInfo(
            connected=True, startConnected=True, allowGuestControl=True
        )
        return vim.vm.device.VirtualDeviceSpec(
            operation=vim.vm.device.VirtualDeviceSpec.Operation.edit, device=nic
        )
