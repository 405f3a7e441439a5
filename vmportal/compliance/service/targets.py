"""Which VM (or at least which unit) an authority's notice is about.

The notice's IP (or the URL's host when it is an IP) against the inventory's addresses, else the
URL's host against the VMs' host names and then the domains of the information systems (exactly, as
alerts match): a domain registered for a system with no VM still names the unit. Nothing is guessed:
an address or a domain two owners claim names neither, and the notice waits for a human.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlmodel import Session

from vmportal.alerts.ingest import build_inventory
from vmportal.alerts.model import normalise_host, normalise_ip
from vmportal.compliance import repository
from vmportal.vm.models import VM


@dataclass(frozen=True)
class Target:
    vm: VM | None
    unit_id: int | None
    system_id: int | None
    via: str  # address | hostname | system_domain | manual | ""
    value: str


NOWHERE = Target(None, None, None, "", "")


def url_host(url: str) -> str:
    """The host of a URL as a notice writes it (with or without a scheme); "" when it has none."""
    text = url.strip()
    if not text:
        return ""
    try:
        parts = urlsplit(text if "://" in text else f"http://{text}")
        return (parts.hostname or "").strip()
    except ValueError:
        return ""


def match_target(session: Session, target_url: str, target_ip: str) -> Target:
    """The VM (or at least the unit) a notice is about; nothing when the inventory does not know it."""
    inventory = build_inventory(session)
    host = url_host(target_url)
    addresses = [a for a in (normalise_ip(target_ip), normalise_ip(host)) if a]
    for address in addresses:
        vm_id = inventory.addresses.get(address)
        if vm_id is not None:
            vm = repository.vm(session, vm_id)
            if vm is not None:
                return Target(vm, vm.unit_id, vm.system_id, "address", address)
    name = normalise_host(host) if host else None
    if name is not None:
        vm_id = inventory.hosts.get(name)
        if vm_id is not None:
            vm = repository.vm(session, vm_id)
            if vm is not None:
                return Target(vm, vm.unit_id, vm.system_id, "hostname", name)
        owners = {
            (system.unit_id, system.id)
            for system in repository.information_systems(session)
            if name in {normalise_host(d) for d in system.domains or []}
        }
        if len(owners) == 1:  # two units claiming one domain: a human decides
            unit_id, system_id = owners.pop()
            return Target(None, unit_id, system_id, "system_domain", name)
    return NOWHERE
