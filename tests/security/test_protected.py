"""Protected VMs and humans told: a VM of no unit (it may be the center's own DNS or vCenter) is
never contained automatically, and a notify-only incident queues a mail for the unit and center."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import select

from tests.factories import Factory
from tests.security.helpers import calls, center_admin, incidents, nics, post, register, suricata_c2
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
    assert post(client, source, suricata_c2(vm.ip_address)).status_code == 202

    [incident] = incidents(client, h, vm_id=vm.id)
    assert incident["state"] == "open" and incident["action"] == "notify_only"
    assert "不属于任何单位" in "".join(incident["reasons_zh"])
    assert calls(factory, vm, "set_network") == 0 and all(nics(factory, vm))
    with db.transaction(read_only=True) as s:
        mails = [n for n in s.exec(select(Notification)).all() if f"#{incident['id']}" in n.subject]
    assert len(mails) == 1 and "未自动处置" in mails[0].subject
