"""A Proxmox VM's configuration as PVE stores it, and what the portal keeps in it.

PVE describes hardware in property strings (``net0: virtio=BC:24:11:..,bridge=vmbr0,firewall=1``);
:func:`prop_get` and :func:`prop_set` read and rewrite one key of such a string and leave every
other item, and their order, as they were, so the portal never drops a setting it does not know.

What the portal keeps on a VM:

* its idempotency marker, as a line ``vmportal-marker: <marker>`` of the description (notes),
  written by :func:`description_for` and read by :func:`marker_of`;
* the tag :data:`WEB_BLOCK_TAG` while it is web-blocked (the inventory's shortcut); the truth is
  the VM firewall rules whose comment starts with :data:`WEB_BLOCK_COMMENT`.

A ref is ``"<node>/<vmid>"`` (:func:`parse_ref`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hypervisors.base import NICInfo, NotFound

MARKER_PREFIX = "vmportal-marker: "
WEB_BLOCK_COMMENT = "vmportal:web-block"
WEB_BLOCK_TAG = "vmportal-web-blocked"
WEB_PORTS = ("80", "443")
GIB = 1024**3

_DISK_KEY = re.compile(r"(scsi|virtio|sata|ide)(\d+)")
NET_KEY = re.compile(r"net(\d+)")
_IPCONFIG_KEY = re.compile(r"ipconfig(\d+)")
_BUS_ORDER = {"scsi": 0, "virtio": 1, "sata": 2, "ide": 3}
_NIC_MODELS = frozenset(
    {
        "e1000",
        "e1000-82540em",
        "e1000-82544gc",
        "e1000-82545em",
        "e1000e",
        "i82551",
        "i82557b",
        "i82559er",
        "ne2k_isa",
        "ne2k_pci",
        "pcnet",
        "rtl8139",
        "virtio",
        "vmxnet3",
    }
)


def prop_items(value: str) -> list[tuple[str, str]]:
    """Split a property string into (key, value) pairs, keeping order; a bare item has key ''."""
    items: list[tuple[str, str]] = []
    for part in value.split(","):
        if part:
            key, sep, item = part.partition("=")
            items.append((key, item) if sep else ("", part))
    return items


def _prop_join(items: list[tuple[str, str]]) -> str:
    return ",".join(f"{k}={v}" if k else v for k, v in items)


def prop_get(value: str, key: str) -> str | None:
    """The value of ``key`` in a property string, or None."""
    return next((v for k, v in prop_items(value) if k == key), None)


def prop_set(value: str, key: str, item: str | None) -> str:
    """Set (or remove, when ``item`` is None) one key, leaving every other item where it was."""
    items = prop_items(value)
    out: list[tuple[str, str]] = []
    placed = False
    for k, v in items:
        if k != key:
            out.append((k, v))
        elif item is not None and not placed:
            out.append((k, item))
            placed = True
    if item is not None and not placed:
        out.append((key, item))
    return _prop_join(out)


def size_gib(size: str | None) -> float:
    """A PVE size (``32G``, ``512M``, bytes without a unit) in GiB; 0 when absent or unreadable."""
    if not size:
        return 0.0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", size.strip())
    if match is None:
        return 0.0
    factor = {"": 1, "K": 1024, "M": 1024**2, "G": GIB, "T": 1024**4}[match.group(2)]
    return float(match.group(1)) * factor / GIB


def _is_disk(key: str, value: str) -> bool:
    # CD-ROMs and the cloud-init drive hang off the same buses but are not the VM's storage.
    return bool(_DISK_KEY.fullmatch(key)) and "media=cdrom" not in value and "cloudinit" not in value


def disk_keys(config: Mapping[str, Any]) -> list[str]:
    """The VM's disks, boot disk first (the one a CloneSpec's ``disk_gib`` grows)."""

    def bus_order(key: str) -> tuple[int, int]:
        match = _DISK_KEY.fullmatch(key)
        assert match is not None
        return _BUS_ORDER[match.group(1)], int(match.group(2))

    disks = sorted((k for k, v in config.items() if _is_disk(k, str(v))), key=bus_order)
    boot_order = prop_get(str(config.get("boot", "")), "order") or ""
    boot = next((d for d in boot_order.split(";") if d in disks), None) or (
        config.get("bootdisk") if config.get("bootdisk") in disks else None
    )
    if boot:
        disks.remove(boot)
        disks.insert(0, boot)
    return disks


def memory_mib(config: Mapping[str, Any]) -> int:
    """The VM's memory in MiB (512, PVE's default, when unset)."""
    # Since PVE 8.x ``memory`` is a property string ("2048" or "current=2048").
    raw = str(config.get("memory", "512"))
    value = prop_get(raw, "current") or next((v for k, v in prop_items(raw) if k == ""), "512")
    return int(value)


def vcpus(config: Mapping[str, Any]) -> int:
    """Cores times sockets."""
    return int(config.get("cores", 1)) * int(config.get("sockets", 1))


def nics(config: Mapping[str, Any]) -> tuple[NICInfo, ...]:
    """The ``netN`` devices in index order; a NIC with ``link_down=1`` is disconnected."""
    nics = []
    for key in sorted((k for k in config if NET_KEY.fullmatch(k)), key=lambda k: int(k[3:])):
        items = prop_items(str(config[key]))
        mac = next((v for k, v in items if k in _NIC_MODELS or k == "macaddr"), None)
        down = next((v for k, v in items if k == "link_down"), "0") in ("1", "true", "yes", "on")
        bridge = next((v for k, v in items if k == "bridge"), None)
        # link_down lives in the VM config, so it already survives a reboot: both flags agree.
        nics.append(NICInfo(key=key, mac=mac, network=bridge, connected=not down, start_connected=not down))
    return tuple(nics)


def configured_ips(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The static addresses cloud-init is told to set (``ipconfigN``), without prefix lengths."""
    ips = []
    for key in sorted((k for k in config if _IPCONFIG_KEY.fullmatch(k)), key=lambda k: int(k[8:])):
        for field in ("ip", "ip6"):
            value = prop_get(str(config[key]), field)
            if value and value not in ("dhcp", "auto"):
                ips.append(value.split("/")[0])
    return tuple(ips)


def marker_of(description: str | None) -> str | None:
    """The portal marker recorded in a VM description, if any."""
    for line in (description or "").splitlines():
        if line.startswith(MARKER_PREFIX):
            return line[len(MARKER_PREFIX) :].strip() or None
    return None


def description_for(marker: str) -> str:
    """The description a portal clone gets: a note for the operator and the marker line."""
    return (
        "Created by vmportal for the Network & Information Center. "
        "Keep the next line: it is how the portal recognises this VM.\n"
        f"{MARKER_PREFIX}{marker}"
    )


def tags_of(config: Mapping[str, Any]) -> list[str]:
    """The VM's tags (PVE separates them with ``;``, older releases also with ``,`` or spaces)."""
    return [t for t in re.split(r"[;, ]+", str(config.get("tags", ""))) if t]


def parse_ref(ref: str) -> tuple[str, int]:
    """Node and vmid of a ref; a malformed ref is :class:`NotFound` (no such VM can exist)."""
    node, sep, vmid = ref.partition("/")
    if not sep or not node or not vmid.isdigit():
        raise NotFound(f"{ref!r} is not a Proxmox VM reference (expected 'node/vmid')", detail={"ref": ref})
    return node, int(vmid)
