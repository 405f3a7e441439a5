"""Network isolation and web blocking of a Proxmox VM.

* :meth:`Network.set_network` sets (or removes) ``link_down=1`` on every ``netN`` and changes
  nothing else of the NIC (model, MAC, bridge, VLAN tag, firewall flag, rate). ``link_down`` lives
  in the VM's config, so a cut survives a reboot. The write carries the config's ``digest``: PVE
  refuses it (:class:`~hypervisors.base.Retriable`) if someone changed the VM since it was read.
* :meth:`Network.set_web_block` adds VM firewall rules dropping inbound tcp/80 and tcp/443 at
  position 0, commented :data:`~hypervisors.proxmox.vmconfig.WEB_BLOCK_COMMENT` plus what the
  portal had to change to make them effective (the VM firewall's ``enable`` and ``policy_in``, NICs
  without ``firewall=1``), so unblocking removes exactly those rules and restores exactly that. The
  VM is tagged :data:`~hypervisors.proxmox.vmconfig.WEB_BLOCK_TAG` meanwhile. With the datacenter
  firewall off no VM rule is ever loaded, so blocking is :class:`~hypervisors.base.NotSupported`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypervisors.base import NotSupported, VMInfo
from hypervisors.proxmox.api import Api
from hypervisors.proxmox.inventory import Inventory
from hypervisors.proxmox.tasks import Tasks
from hypervisors.proxmox.vmconfig import (
    NET_KEY,
    WEB_BLOCK_COMMENT,
    WEB_BLOCK_TAG,
    WEB_PORTS,
    prop_get,
    prop_set,
    tags_of,
)


class Network:
    """NIC link state and the web-block firewall rules, through one API client."""

    def __init__(self, api: Api, inventory: Inventory, tasks: Tasks) -> None:
        self.api = api
        self.inventory = inventory
        self.tasks = tasks

    def set_network(self, ref: str, connected: bool) -> VMInfo:
        """The contract's ``set_network``: ``link_down`` on every NIC, the VM re-read after."""
        node, vmid, config = self.inventory.locate(ref)
        changes = {}
        for key in (k for k in config if NET_KEY.fullmatch(k)):
            value = str(config[key])
            # Only link_down changes; model, MAC, bridge, VLAN tag, firewall flag and rate stay.
            rewritten = prop_set(value, "link_down", None if connected else "1")
            if rewritten != value:
                changes[key] = rewritten
        if changes:
            what = f"{'connect' if connected else 'disconnect'} NICs of VM {vmid}"
            # The digest makes PVE refuse the write if someone changed the config since our read.
            upid = self.api.post(f"nodes/{node}/qemu/{vmid}/config", what, digest=config["digest"], **changes)
            self.tasks.finish(upid, what)
        return self.inventory.get_vm(f"{node}/{vmid}")

    def set_web_block(self, ref: str, blocked: bool) -> VMInfo:
        """The contract's ``set_web_block``; repeating a block or an unblock changes nothing."""
        node, vmid, config = self.inventory.locate(ref)
        base = f"nodes/{node}/qemu/{vmid}/firewall"
        if blocked:
            self._block_web(node, vmid, config, base)
        else:
            self._unblock_web(node, vmid, config, base)
        return self.inventory.get_vm(f"{node}/{vmid}")

    def _block_web(self, node: str, vmid: int, config: Mapping[str, Any], base: str) -> None:
        cluster = self.api.get("cluster/firewall/options", "read datacenter firewall options")
        if not int(cluster.get("enable", 0)):
            # With the datacenter firewall off no VM rule is ever loaded: a "block" would be a lie.
            raise NotSupported(
                "the Proxmox datacenter firewall is disabled, so VM rules have no effect; "
                "cut the network instead"
            )
        options = self.api.get(f"{base}/options", f"read VM {vmid} firewall options")
        ours = self.inventory.web_rules(node, vmid)
        if ours:
            restore = self._restore_notes(ours)
        else:
            restore = {
                "enable": "1" if int(options.get("enable", 0)) else "0",
                "policy_in": str(options.get("policy_in", "-")),
                "nics": ";".join(
                    k
                    for k in sorted(config)
                    if NET_KEY.fullmatch(k) and prop_get(str(config[k]), "firewall") != "1"
                )
                or "-",
            }
        # What we changed is written into the rules' comment, so unblocking undoes exactly that.
        comment = f"{WEB_BLOCK_COMMENT} " + " ".join(f"{k}={v}" for k, v in restore.items())
        present = {str(r.get("dport")) for r in ours if int(r.get("enable", 0))}
        for port in WEB_PORTS:
            if port not in present:
                # Position 0: pve-firewall stops at the first match, so the drop must precede any
                # ACCEPT rule the unit's admins may have for their web server.
                self.api.post(
                    f"{base}/rules",
                    f"add web-block rule to VM {vmid}",
                    type="in",
                    action="DROP",
                    proto="tcp",
                    dport=port,
                    enable=1,
                    pos=0,
                    comment=comment,
                )
        if not int(options.get("enable", 0)):
            # A VM's default input policy is DROP: switching the firewall on for the first time
            # would cut everything, not just the web, unless inbound stays ACCEPT.
            self.api.put(f"{base}/options", f"enable firewall of VM {vmid}", enable=1, policy_in="ACCEPT")
        changes: dict[str, Any] = {}
        for key in (k for k in config if NET_KEY.fullmatch(k)):
            if prop_get(str(config[key]), "firewall") != "1":
                # pve-firewall filters a NIC only when its netN carries firewall=1.
                changes[key] = prop_set(str(config[key]), "firewall", "1")
        tags = tags_of(config)
        if WEB_BLOCK_TAG not in tags:
            changes["tags"] = ";".join([*tags, WEB_BLOCK_TAG])
        if changes:
            what = f"mark VM {vmid} web-blocked"
            upid = self.api.post(f"nodes/{node}/qemu/{vmid}/config", what, digest=config["digest"], **changes)
            self.tasks.finish(upid, what)

    @staticmethod
    def _restore_notes(rules: list[Mapping[str, Any]]) -> dict[str, str]:
        # The "key=value" words after the comment's prefix: what blocking changed.
        notes: dict[str, str] = {}
        for word in str(rules[0].get("comment", "")).split()[1:]:
            key, sep, value = word.partition("=")
            if sep:
                notes[key] = value
        return notes

    def _unblock_web(self, node: str, vmid: int, config: Mapping[str, Any], base: str) -> None:
        ours = self.inventory.web_rules(node, vmid)
        notes = self._restore_notes(ours) if ours else {}
        while ours:
            # Highest position first, each time against a fresh digest, so no index shifts under us
            # and a concurrent edit is refused rather than deleting someone else's rule.
            rule = max(ours, key=lambda r: int(r["pos"]))
            self.api.delete(
                f"{base}/rules/{int(rule['pos'])}",
                f"remove web-block rule from VM {vmid}",
                digest=rule.get("digest"),
            )
            ours = self.inventory.web_rules(node, vmid)
        if notes.get("enable") == "0":
            restore: dict[str, Any] = {"enable": 0}
            if notes.get("policy_in", "-") == "-":
                restore["delete"] = "policy_in"
            else:
                restore["policy_in"] = notes["policy_in"]
            self.api.put(f"{base}/options", f"restore firewall of VM {vmid}", **restore)
        changes: dict[str, Any] = {}
        for key in (n for n in notes.get("nics", "-").split(";") if n in config):
            changes[key] = prop_set(str(config[key]), "firewall", None)
        tags = tags_of(config)
        if WEB_BLOCK_TAG in tags:
            remaining = [t for t in tags if t != WEB_BLOCK_TAG]
            if remaining:
                changes["tags"] = ";".join(remaining)
            else:
                changes["delete"] = "tags"
        if changes:
            what = f"unmark VM {vmid} web-blocked"
            upid = self.api.post(f"nodes/{node}/qemu/{vmid}/config", what, digest=config["digest"], **changes)
            self.tasks.finish(upid, what)
