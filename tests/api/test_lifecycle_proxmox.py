"""The whole lifecycle through the HTTP API on Proxmox VE (proxmoxer against the schema double).

A center admin registers the double as a Proxmox connection (https URL, API token, the double's CA),
tests it and sees its templates next to the simulator's; a unit admin's request is approved,
cloned with cloud-init (``ciuser``/``cipassword``/``ipconfig0``), delivered, its credentials fetched
once, stopped, started and restarted, its network cut and restored (``link_down`` on every
``netN``) and decommissioned. Each step is checked on the double's own state, and at the end every
request the adapter sent is checked against the PVE 9.1.3 API schema.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from policies.power import SecurityState
from tests.api.test_lifecycle_vsphere import (
    Staff,
    audit_actions,
    create_pool,
    deliver,
    hypervisor_ref,
    power,
    set_network,
    staff,
    unique,
)
from tests.factories import Factory
from tests.support.proxmox_double import ProxmoxDouble
from vmportal.audit.service import Who
from vmportal.kit import db
from vmportal.vm import service as vm_service


def register_proxmox(people: Staff, double: ProxmoxDouble, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "proxmox",
        "name": unique("pve"),
        "url": double.url,
        "token_id": double.token_id,
        "secret": double.token_secret,
        "ca_file": double.ca_file,
        "defaults": {"node": "pve1", "storage": "local-lvm", "bridge": "vmbr0"},
    }
    body.update(overrides)
    r = people.post("center_admin", "/connections", body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def vmid_of(vm_id: int) -> int:
    return int(hypervisor_ref(vm_id).rsplit("/", 1)[1])


def nets(double: ProxmoxDouble, vmid: int) -> dict[str, str]:
    return {k: str(v) for k, v in double.vm(vmid).config.items() if re.fullmatch(r"net\d+", k)}


def link_down(value: str) -> bool:
    return "link_down=1" in value.split(",")


@pytest.fixture
def people(client: TestClient, factory: Factory) -> Staff:
    return staff(client, factory)


def test_full_lifecycle_on_proxmox(people: Staff, proxmox_double: ProxmoxDouble) -> None:
    double = proxmox_double

    # 1. Register, test, list templates (next to the simulator's).
    conn = register_proxmox(people, double)
    assert conn["has_secret"] is True and "secret" not in conn
    assert double.token_secret not in str(people.get("center_admin", "/connections"))

    check = people.post("operator", f"/connections/{conn['id']}/test").json()
    assert check["ok"] is True, check
    assert check["version"].startswith("9.1")
    assert (check["vm_count"], check["template_count"]) == (1, 2)

    own = {t["name"]: t for t in people.get("center_admin", f"/connections/{conn['id']}/templates")}
    assert own["debian12-tmpl"]["ref"] == "pve1/9000"
    assert (own["debian12-tmpl"]["vcpus"], own["debian12-tmpl"]["disk_gib"]) == (2, 10)
    offered = people.get("admin", "/templates")
    assert {t["ref"] for t in offered if t["connection_id"] == conn["id"]} == {"pve1/9000", "pve2/9001"}
    assert any(t["connection"] == "simulator" for t in offered)

    # 2. Request, approve, clone with cloud-init, deliver.
    pool = create_pool(people, conn["id"], "10.41.0.0/24", network="vmbr0")
    req = deliver(people, conn["id"], "pve1/9000", vcpus=2, memory_gib=4, disk_gib=20)
    vm = people.get("admin", f"/vms/{req['vm_id']}")
    assert vm["lifecycle"] == "active" and vm["power_state"] == "running"
    assert vm["network_connected"] is True
    vmid = vmid_of(vm["id"])
    made = double.vm(vmid)
    assert made.status == "running"
    assert made.config["name"] == vm["name"]
    assert (int(made.config["cores"]), int(made.config["memory"])) == (2, 4096)
    assert "size=20G" in str(made.config["scsi0"])
    assert made.config["ciuser"] == "vmadmin"
    assert str(made.config["ipconfig0"]) == f"ip={vm['ip_address']}/24,gw=10.41.0.1"
    assert f"vmportal:request:{req['id']}" in str(made.config.get("description", ""))

    # 3. The credentials, once: the password the double was given through cipassword.
    r = people.post("admin", f"/vms/{vm['id']}/credentials")
    assert r.status_code == 200, r.text
    assert r.json()["password"] == made.cipassword
    assert people.post("admin", f"/vms/{vm['id']}/credentials").status_code == 410

    # 4. Power, confirmed on the double.
    assert power(people, vm["id"], "stop")["power_after"] == "stopped"
    assert double.vm(vmid).status == "stopped"
    assert power(people, vm["id"], "start")["power_after"] == "running"
    assert double.vm(vmid).status == "running"
    tasks_before = double.task_types().count("qmreset")
    assert power(people, vm["id"], "restart", who="operator")["power_after"] == "running"
    assert double.task_types().count("qmreset") == tasks_before + 1
    assert double.vm(vmid).status == "running"

    # 5. Network cut and restore: link_down on every netN, center only.
    assert nets(double, vmid) and not any(link_down(v) for v in nets(double, vmid).values())
    for who in ("admin", "lead", "auditor"):
        refused = set_network(people, vm["id"], False, who=who)
        assert refused.status_code == 403 and refused.json()["error"]["rule"] == "power_ops", who
    assert set_network(people, vm["id"], False, who="other_admin").status_code == 404

    cut = set_network(people, vm["id"], False)
    assert cut.status_code == 200, cut.text
    assert cut.json()["network_connected"] is False
    assert all(link_down(v) for v in nets(double, vmid).values())
    assert "bridge=vmbr0" in nets(double, vmid)["net0"], "the rest of the NIC's settings are kept"
    assert people.get("admin", f"/vms/{vm['id']}")["network_connected"] is False
    assert set_network(people, vm["id"], True, who="admin").status_code == 403

    restored = set_network(people, vm["id"], True)
    assert restored.status_code == 200, restored.text
    assert not any(link_down(v) for v in nets(double, vmid).values())
    assert people.get("admin", f"/vms/{vm['id']}")["network_connected"] is True

    # 6. Decommission: gone from the double, address released.
    r = people.post("center_admin", f"/vms/{vm['id']}/decommission", {"reason": "course finished"})
    assert r.status_code == 202, r.text
    assert people.get("center_admin", f"/vms/{vm['id']}")["decommissioned_at"]
    assert vmid not in double.vms
    assert people.get("center_admin", f"/pools/{pool['id']}")["counts"]["used"] == 0

    actions = {e.action for e in audit_actions("vm", vm["id"])}
    assert {"vm.create", "vm.power", "vm.network", "vm.decommission"} <= actions
    double.assert_all_valid()  # every request the adapter sent, valid against PVE 9.1.3's schema


def test_a_vm_with_two_nics_is_cut_off_on_both(people: Staff, proxmox_double: ProxmoxDouble) -> None:
    """A VM found on the node (not made by the portal) with two NICs, assigned to a unit by the
    center after a sync: both links go down, the VLAN tag and MTU of the second stay."""
    double = proxmox_double
    conn = register_proxmox(people, double)
    r = people.post("operator", "/inventory/sync", {"connection_id": conn["id"]})
    assert r.status_code == 202, r.text
    legacy = next(
        v for v in people.get("operator", "/inventory/unregistered") if v["hypervisor_ref"] == "pve1/100"
    )
    assert legacy["ips"] == ["10.20.0.10"] and legacy["power_state"] == "running"
    r = people.post("center_admin", f"/inventory/vms/{legacy['id']}/assign", {"unit_id": people.unit.id})
    assert r.status_code == 200, r.text

    for body in (
        {"connected": False, "reason": "   "},
        {"reason": "x"},
        {"connected": "maybe", "reason": "x"},
    ):
        r = people.post("operator", f"/vms/{legacy['id']}/network", body)
        assert r.status_code == 422, (body, r.text)
    assert (
        people.post("operator", "/vms/999999/network", {"connected": False, "reason": "x"}).status_code == 404
    )
    assert not any(link_down(v) for v in nets(double, 100).values())

    assert set_network(people, legacy["id"], False).json()["network_connected"] is False
    assert all(link_down(v) for v in nets(double, 100).values())
    assert "tag=20" in nets(double, 100)["net1"] and "mtu=1400" in nets(double, 100)["net1"]
    assert set_network(people, legacy["id"], True).json()["network_connected"] is True
    assert not any(link_down(v) for v in nets(double, 100).values())

    # Suspended by the security workflow: the unit is refused by both rules; the center may cut it
    # further, but brings it back only through the incident (409 naming the state).
    with db.transaction() as s:
        vm_service.set_security_state(s, legacy["id"], SecurityState.SUSPENDED, who=Who.system("test"))
    refused = set_network(people, legacy["id"], True, who="admin")
    assert refused.status_code == 403
    assert refused.json()["error"]["rules"] == ["power_ops", "suspended_lock"]
    assert set_network(people, legacy["id"], False).status_code == 200
    conflict = set_network(people, legacy["id"], True, who="center_admin")
    assert conflict.status_code == 409 and conflict.json()["error"]["state"] == "suspended"
    assert all(link_down(v) for v in nets(double, 100).values())
    double.assert_all_valid()
