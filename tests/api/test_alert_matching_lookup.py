"""An alert's VM is found by looking up the alert's own addresses and hostname, not by reading the
whole inventory (issue 12.6) — with the same answers: an inventory address (not only the delivered
one), a hostname of the VM's information system, an address two VMs claim left to a human, retired
VMs never matched. Runs on SQLite and, in the PostgreSQL lane, on the GIN indexes of migration 0012."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from tests.factories import Factory
from tests.security.helpers import center_admin, incidents, post, register, suricata_c2
from tests.security_reports.helpers import set_vm
from vmportal.alerts import AddressRole, Alert, TaggedAddress, ingest
from vmportal.alerts.model import AlertFormat, Category, Confidence, Severity
from vmportal.kit import db
from vmportal.vm.models import Lifecycle


def _alert(*ips: str, host: str | None = None) -> Alert:
    return Alert(
        received_at=datetime.now(UTC),
        source="test",
        resolved=False,
        format=AlertFormat.SURICATA,
        category=Category.TROJAN,
        severity=Severity.HIGH,
        confidence=Confidence.HIGH,
        title="test",
        external_id="x",
        addresses=tuple(TaggedAddress(ip, AddressRole.SRC, "src_ip") for ip in ips),
        subject_roles=frozenset({AddressRole.SRC}),
        target_host=host,
        target_host_role=AddressRole.SRC if host else None,
    )


def test_the_lookup_finds_what_the_whole_inventory_would(factory: Factory) -> None:
    unit = factory.unit()
    by_inventory = set_vm(factory.vm(unit), ips=["10.31.0.5", "2001:db8:31::5"])
    system = factory.system(unit)
    by_domain = set_vm(factory.vm(unit), system_id=system.id)
    first, second = factory.vm(unit), factory.vm(unit)
    set_vm(first, ips=["10.31.0.9"])
    set_vm(second, ips=["10.31.0.9"])  # two VMs claim it: nobody is blamed
    gone = set_vm(factory.vm(unit), ips=["10.31.0.77"], lifecycle=Lifecycle.DECOMMISSIONED)
    unrelated = factory.vm(unit)

    alerts = [
        _alert("2001:db8:31::5"),
        _alert("198.51.100.1", host=system.domains[0].upper() + "."),
        _alert("10.31.0.9"),
        _alert("10.31.0.77"),
    ]
    with db.transaction(read_only=True) as s:
        looked_up = ingest.build_inventory(s, alerts)
        whole = ingest.build_inventory(s)
    for inventory in (looked_up, whole):
        assert inventory.match(alerts[0]).vm == by_inventory.id  # type: ignore[union-attr]
        found = inventory.match(alerts[1])
        assert found is not None and (found.vm, found.via) == (by_domain.id, "hostname")
        assert inventory.match(alerts[2]) is None
        assert inventory.match(alerts[3]) is None and gone.id not in inventory.addresses.values()
    # Only the VMs holding what the alerts name were read.
    assert set(looked_up.addresses.values()) <= {by_inventory.id, by_domain.id, first.id, second.id}
    assert unrelated.id in whole.addresses.values() and unrelated.id not in looked_up.addresses.values()


def test_an_alert_on_an_inventory_address_contains_the_vm(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = set_vm(factory.vm(factory.unit()), ips=["10.31.1.8"])
    source = register(client, h, "suricata")
    assert post(client, source, suricata_c2("10.31.1.8")).status_code == 202
    [incident] = incidents(client, h, vm_id=vm.id)
    assert incident["state"] == "contained"
