"""Virtual hardware as pyVmomi lists it in ``config.hardware.device``: disks, NICs, addresses.

Pure functions over device objects already read (no round trip). NICs and disks are taken in
device-key order, which is the order vCenter and the guest see them in ("the first NIC").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from pyVmomi import vim

from hypervisors.vsphere.collector import Names, moid

_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")


def disk_gib(device: Any) -> float:
    """A virtual disk's capacity in GiB (rounded to the MiB)."""
    size = getattr(device, "capacityInBytes", None) or (device.capacityInKB or 0) * 1024
    return round(size / 2**30, 3)


def nic_network(device: Any, names: Names) -> str | None:
    """The port group (standard or distributed) or opaque network a NIC is backed by."""
    backing = device.backing
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
        key = backing.port.portgroupKey if backing.port else None
        return names.portgroups.get(key or "") or key
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.NetworkBackingInfo):
        return backing.deviceName or names.name(moid(backing.network) if backing.network else None)
    if isinstance(backing, vim.vm.device.VirtualEthernetCard.OpaqueNetworkBackingInfo):
        return str(backing.opaqueNetworkId)
    return None


def usable_ip(text: str) -> bool:
    """An address worth reporting: parseable and not link-local (guests list fe80::, 169.254.x)."""
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return False
    if address.version == 4:
        return address not in _LINK_LOCAL_V4
    return not address.is_link_local


def first_disk(devices: Sequence[Any]) -> Any | None:
    """The boot disk as the portal understands it: the virtual disk with the lowest key."""
    disks = sorted((d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)), key=lambda d: d.key)
    return disks[0] if disks else None


def nics_of(devices: Sequence[Any]) -> list[Any]:
    """Every virtual NIC, in device-key order."""
    return sorted(
        (d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)), key=lambda d: d.key
    )


def grow(disk: Any, gib: int) -> vim.vm.device.VirtualDeviceSpec:
    """The device edit that grows ``disk`` to ``gib`` GiB (the caller has checked it only grows)."""
    disk.capacityInKB = gib * 1024 * 1024
    disk.capacityInBytes = gib * 2**30
    return vim.vm.device.VirtualDeviceSpec(
        operation=vim.vm.device.VirtualDeviceSpec.Operation.edit, device=disk
    )
