"""Protected VMs and humans told: a VM of no unit (it may be the center's own DNS or vCenter) is
never contained automatically, and a notify-only incident queues a mail for the unit and center."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import select

from tests.factories import Factory
from tests.security.helpers import calls, center_admin, incidents, nics, post, register, suricata_c2
from vmportal.audit.models import AuditEntry
from vmportal.kit import db
from vmportal.mail.models import Notification
from vmportal.vm.models import VM


def test_a_vm_of_no_unit_is_not_contained_and_the_center_is_mailed(
    client: TestClient, factory: Factory
) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    with db.transaction() as s:
        row = s.get(VM, vm.id)
        assert row is not None
        row.unit_id = None  # found by the inventory, owned by nobody
        s.add(row)
    source = register(client, h, "suricata")
    assert post(client, source, suricata_c2(str(vm.ip_address))).status_code == 202

    [incident] = incidents(client, h, vm_id=vm.id)
    assert incident["state"] == "open" and incident["action"] == "notify_only"
    assert "不属于任何单位" in "".join(incident["reasons_zh"])
    assert calls(factory, vm, "set_network") == 0 and all(nics(factory, vm))
    with db.transaction(read_only=True) as s:
        mails = [n for n in s.exec(select(Notification)).all() if f"#{incident['id']}" in n.subject]
    assert len(mails) == 1 and "未自动处置" in mails[0].subject


def test_a_vm_the_center_protects_is_not_contained_and_unit_and_center_are_mailed(
    client: TestClient, factory: Factory
) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = factory.vm(unit)
    body = {"protected": True, "reason": "the faculty's DNS server"}

    # Only the center_admin marks a VM; an operator or the unit's own user cannot.
    for role, who in (("center_operator", None), ("unit_admin", unit)):
        other = factory.login(client, factory.user(role, who))
        assert (
            client.put(f"/api/v1/security/protected-vms/{vm.id}", json=body, headers=other).status_code == 403
        )
    r = client.put(f"/api/v1/security/protected-vms/{vm.id}", json=body, headers=h)
    assert r.status_code == 200 and r.json() == {"vm_id": vm.id, "protected": True}
    assert client.put("/api/v1/security/protected-vms/999999", json=body, headers=h).status_code == 404
    r = client.put(f"/api/v1/security/protected-vms/{vm.id}", json={"protected": True}, headers=h)
    assert r.status_code == 422 and "reason" in r.text
    with db.transaction(read_only=True) as s:
        audit = s.exec(select(AuditEntry).where(AuditEntry.action == "security.vm.protect")).all()
    assert [(a.target_id, (a.after or {}).get("reason")) for a in audit] == [
        (str(vm.id), "the faculty's DNS server")
    ]

    source = register(client, h, "suricata")
    assert post(client, source, suricata_c2(str(vm.ip_address))).status_code == 202
    [incident] = incidents(client, h, vm_id=vm.id)
    assert incident["state"] == "open" and incident["action"] == "notify_only"
    assert "受保护" in "".join(incident["reasons_zh"])
    assert calls(factory, vm, "set_network") == 0 and all(nics(factory, vm))
    with db.transaction(read_only=True) as s:
        mails = [n for n in s.exec(select(Notification)).all() if f"#{incident['id']}" in n.subject]
    assert len(mails) == 1 and "未自动处置" in mails[0].subject and mails[0].unit_id == unit.id


def test_unprotecting_a_vm_lets_alerts_contain_it_again(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    url = f"/api/v1/security/protected-vms/{vm.id}"
    assert client.put(url, json={"protected": True, "reason": "maintenance"}, headers=h).status_code == 200
    assert client.put(url, json={"protected": False, "reason": "done"}, headers=h).status_code == 200
    with db.transaction(read_only=True) as s:
        actions = [a.action for a in s.exec(select(AuditEntry)).all() if a.target_type == "vm"]
        row = s.get(VM, vm.id)
        assert row is not None and row.protected is False
    assert actions.count("security.vm.protect") == 1 and actions.count("security.vm.unprotect") == 1
    source = register(client, h, "suricata")
    assert post(client, source, suricata_c2(str(vm.ip_address))).status_code == 202
    [incident] = incidents(client, h, vm_id=vm.id)
    assert incident["action"] != "notify_only"
