"""Which VM an alert is about: whichever of its addresses (or its hostname) the inventory knows.

Never blindly the source or the destination. Each address of an :class:`~vmportal.alerts.model.Alert`
carries its role, and the alert says in which roles an address is *accused* (``subject_roles``): the
scanner of a scan, the host an agent reports on, either end of a trojan's C2 flow. A VM found in an
accused role is the alert's culprit; a VM found only in another role (the victim of someone else's
scan) is named but not accused, and the caller should open an incident for a human rather than contain
it. The best match comes first: accused address, then accused hostname, then the rest.

Inventory keys are normalised like the alert's values: IPv6 compressed, IPv4-mapped IPv6 unwrapped,
zones and brackets dropped; hostnames lowercased, without trailing dot, port or URL parts. Hostnames
match exactly (``www.lib.example.edu.cn`` is not ``lib.example.edu.cn``): guessing a parent domain
would blame the university's main site for every unknown subdomain.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from vmportal.alerts.model import AddressRole, Alert, normalise_host, normalise_ip

__all__ = ["Inventory", "VMMatch", "match_all", "match_vm"]

VmId = TypeVar("VmId", bound=Hashable)


@dataclass(frozen=True)
class VMMatch(Generic[VmId]):
    vm: VmId
    via: Literal["address", "hostname"]
    value: str  # the normalised IP or hostname that matched
    role: AddressRole | None  # its role in the alert
    field: str  # the alert field it came from ("dest_ip", "labels.vm_ip", "target_host")
    accused: bool  # True when that role is one the alert accuses


class Inventory(Generic[VmId]):
    """Known addresses and hostnames, normalised once, for matching many alerts."""

    def __init__(self, addresses: Mapping[str, VmId], hosts: Mapping[str, VmId] | None = None) -> None:
        self.addresses: dict[str, VmId] = _normalised(addresses, normalise_ip, "address")
        self.hosts: dict[str, VmId] = _normalised(hosts or {}, normalise_host, "hostname")

    def match_all(self, alert: Alert) -> list[VMMatch[VmId]]:
        found: list[VMMatch[VmId]] = []
        for tagged in alert.addresses:
            vm = self.addresses.get(tagged.ip)
            if vm is not None:
                accused = tagged.role in alert.subject_roles
                found.append(VMMatch(vm, "address", tagged.ip, tagged.role, tagged.field, accused))
        host = normalise_host(alert.target_host) if alert.target_host else None
        if host is not None and host in self.hosts:
            role = alert.target_host_role
            accused = role is not None and role in alert.subject_roles
            found.append(VMMatch(self.hosts[host], "hostname", host, role, "target_host", accused))
        # accused before named; among equals an address before a hostname; sorted() keeps the alert's order
        found = sorted(found, key=lambda m: (not m.accused, m.via != "address"))
        seen: set[VmId] = set()
        unique: list[VMMatch[VmId]] = []
        for m in found:
            if m.vm not in seen:
                seen.add(m.vm)
                unique.append(m)
        return unique

    def match(self, alert: Alert) -> VMMatch[VmId] | None:
        matches = self.match_all(alert)
        return matches[0] if matches else None


def _normalised(
    mapping: Mapping[str, VmId], normalise: Callable[[object], str | None], what: str
) -> dict[str, VmId]:
    out: dict[str, VmId] = {}
    for key, vm in mapping.items():
        norm = normalise(key)
        if norm is None:
            raise ValueError(f"inventory {what} {key!r} is not a valid {what}")
        if norm in out and out[norm] != vm:
            raise ValueError(f"inventory {what} {key!r} belongs to two VMs: {out[norm]!r} and {vm!r}")
        out[norm] = vm
    return out


def match_all(
    alert: Alert, addresses: Mapping[str, VmId], hosts: Mapping[str, VmId] | None = None
) -> list[VMMatch[VmId]]:
    """Every VM the alert names, best first (see the module's docstring), one match per VM."""
    return Inventory(addresses, hosts).match_all(alert)


def match_vm(
    alert: Alert, addresses: Mapping[str, VmId], hosts: Mapping[str, VmId] | None = None
) -> VMMatch[VmId] | None:
    """The VM the alert is about and which of its values matched (with role), or None (a human decides)."""
    return Inventory(addresses, hosts).match(alert)
