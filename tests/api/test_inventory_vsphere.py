"""Inventory reconciliation through the API against vcsim, with the changes made behind the
portal's back by pyVmomi: a power-off is corrected as drift (and audited), a VM cloned by hand is
listed as unregistered with the address its guest reports and can be assigned to a unit, and a VM
destroyed by hand is marked missing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pyVmomi import vim

from tests.api.test_lifecycle_vsphere import (
    Behind,
    Staff,
    audit_actions,
    create_pool,
    deliver,
    hypervisor_ref,
    register_vsphere,
    staff,
    unique,
)
from tests.factories import Factory
from tests.support.vcsim import LINUX_TEMPLATE, VcsimServer

pytestmark = pytest.mark.vcsim


def wait_for(task: Any) -> Any:
    while task.info.state not in ("success", "error"):
        time.sleep(0.05)
    assert task.info.state == "success", task.info.error
    return task.info.result


def clone_by_hand(behind: Behind, server: VcsimServer, name: str, address: str) -> Any:
    """What an administrator does in the vSphere client: clone the template, size it, give it a
    fixed address through guest customization, power it on (one task each, as vcsim wants it)."""
    template = behind.vm(server.template_refs[LINUX_TEMPLATE])
    pool = behind.find(vim.ClusterComputeResource, "DC0_C1").resourcePool
    vm = wait_for(
        template.Clone(
            folder=template.parent,
            name=name,
            spec=vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=pool), powerOn=False, template=False),
        )
    )
    wait_for(vm.Reconfigure(vim.vm.ConfigSpec(numCPUs=4, memoryMB=8192)))
    custom = vim.vm.customization
    wait_for(
        vm.Customize(
            custom.Specification(
                identity=custom.LinuxPrep(hostName=custom.FixedName(name=name), domain="example.edu.cn"),
                globalIPSettings=custom.GlobalIPSettings(),
                nicSettingMap=[
                    custom.AdapterMapping(
                        adapter=custom.IPSettings(
                            ip=custom.FixedIp(ipAddress=address),
                            subnetMask="255.255.255.0",
                            gateway=["10.60.0.1"],
                        )
                    )
                ],
            )
        )
    )
    wait_for(vm.PowerOn())
    return vm


def sync(people: Staff, connection_id: int, who: str = "operator") -> None:
    r = people.post(who, "/inventory/sync", {"connection_id": connection_id})
    assert r.status_code == 202, r.text


def unregistered(people: Staff, connection_id: int) -> dict[str, dict[str, Any]]:
    return {
        v["name"]: v for v in people.get("auditor", f"/inventory/unregistered?connection_id={connection_id}")
    }


@pytest.fixture
def people(client: TestClient, factory: Factory) -> Staff:
    return staff(client, factory)


@pytest.fixture
def behind(vcsim: VcsimServer) -> Iterator[Behind]:
    view = Behind(vcsim)
    yield view
    view.close()


def test_power_drift_behind_the_portals_back_is_corrected(
    people: Staff, vcsim: VcsimServer, behind: Behind
) -> None:
    conn = register_vsphere(people, vcsim)
    create_pool(people, conn["id"], "10.61.0.0/24")
    vm_id = deliver(people, conn["id"], vcsim.template_refs[LINUX_TEMPLATE])["vm_id"]
    ref = hypervisor_ref(vm_id)
    sync(people, conn["id"])
    assert people.get("admin", f"/vms/{vm_id}")["power_state"] == "running"
    assert not [e for e in audit_actions("vm", vm_id) if e.action == "vm.power_drift"]
    assert all(v["hypervisor_ref"] != ref for v in unregistered(people, conn["id"]).values())

    wait_for(behind.vm(ref).PowerOff())  # someone in the vSphere client
    assert people.get("admin", f"/vms/{vm_id}")["power_state"] == "running"  # the portal cannot know yet

    sync(people, conn["id"])
    vm = people.get("admin", f"/vms/{vm_id}")
    assert vm["power_state"] == "stopped" and vm["synced_at"]
    drift = [e for e in audit_actions("vm", vm_id) if e.action == "vm.power_drift"]
    assert [(d.before, d.after) for d in drift] == [({"power_state": "running"}, {"power_state": "stopped"})]
    assert drift[0].actor == "inventory-sync"

    # A start from the portal works from the corrected state.
    r = people.post("admin", f"/vms/{vm_id}/power", {"action": "start", "reason": "back on"})
    assert r.status_code == 202, r.text
    assert behind.power_state(ref) == "poweredOn"
    people.post("operator", f"/vms/{vm_id}/decommission", {"reason": "test done"})


def test_vm_created_behind_the_portals_back_is_listed_assigned_and_then_missing(
    people: Staff, vcsim: VcsimServer, behind: Behind
) -> None:
    conn = register_vsphere(people, vcsim)
    name = unique("legacy-oa")
    raw = clone_by_hand(behind, vcsim, name, "10.60.0.77")
    ref = raw.config.instanceUuid

    sync(people, conn["id"])
    listed = unregistered(people, conn["id"])
    found = listed[name]
    assert found["hypervisor_ref"] == ref
    assert (found["power_state"], found["vcpus"], found["memory_gib"]) == ("running", 4, 8)
    assert found["ips"] == ["10.60.0.77"]  # what the guest reports, kept for alert matching
    # The topology's own VMs are unregistered too; templates never are.
    assert {f"DC0_C0_RP0_VM{i}" for i in range(3)} <= set(listed)
    assert not {LINUX_TEMPLATE} & set(listed)
    audit = [e for e in audit_actions("connection", conn["id"]) if e.action == "inventory.unregistered_found"]
    assert audit and (audit[0].after or {}).get("count") == len(listed)

    sync(people, conn["id"])  # a second sync does not list it twice
    assert len(unregistered(people, conn["id"])) == len(listed)

    # The center assigns it to a unit and one of its systems; the unit now sees it.
    system = people.factory.system(people.unit)
    r = people.post(
        "center_admin",
        f"/inventory/vms/{found['id']}/assign",
        {"unit_id": people.unit.id, "system_id": system.id},
    )
    assert r.status_code == 200, r.text
    assert name not in unregistered(people, conn["id"])
    mine = people.get("admin", f"/vms/{found['id']}")
    assert (mine["ip_address"], mine["unit_id"], mine["registered"]) == ("10.60.0.77", people.unit.id, True)

    # Its network can be cut like any governed VM's ...
    r = people.post("operator", f"/vms/{found['id']}/network", {"connected": False, "reason": "probe"})
    assert r.status_code == 200, r.text
    assert all(not n.connectable.connected for n in behind.nics(ref))
    # ... and someone reconnecting it in the vSphere client does not go unnoticed.
    raw = behind.vm(ref)
    changes = []
    for nic in behind.nics(ref):
        nic.connectable.connected = nic.connectable.startConnected = True
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=nic))
    wait_for(raw.Reconfigure(vim.vm.ConfigSpec(deviceChange=changes)))
    sync(people, conn["id"])
    assert people.get("admin", f"/vms/{found['id']}")["network_connected"] is True
    drift = [e for e in audit_actions("vm", found["id"]) if e.action == "vm.network_drift"]
    assert [(d.before, d.after) for d in drift] == [
        ({"network_connected": False}, {"network_connected": True})
    ]

    # Destroyed by hand: the next sync marks it missing, with an audit row.
    wait_for(behind.vm(ref).PowerOff())
    wait_for(behind.vm(ref).Destroy())
    sync(people, conn["id"])
    gone = people.get("admin", f"/vms/{found['id']}")
    assert gone["lifecycle"] == "missing"
    assert "vm.missing" in [e.action for e in audit_actions("vm", found["id"])]
    assert [v["id"] for v in people.get("admin", "/vms?lifecycle=missing")["items"]] == [found["id"]]


def test_many_vms_drifting_at_once_are_each_audited_and_the_chain_holds(
    people: Staff, vcsim: VcsimServer, behind: Behind
) -> None:
    """A host failure: several governed VMs go down together, then are deleted. One sync corrects
    them all in bulk; each VM's history still gets its own audit row, and the hash chain verifies."""
    conn = register_vsphere(people, vcsim)
    template = behind.vm(vcsim.template_refs[LINUX_TEMPLATE])
    pool = behind.find(vim.ClusterComputeResource, "DC0_C0").resourcePool
    names = [unique("batch") for _ in range(3)]
    refs = []
    for name in names:
        spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=pool), powerOn=False, template=False)
        vm = wait_for(template.Clone(folder=template.parent, name=name, spec=spec))
        wait_for(vm.PowerOn())
        refs.append(vm.config.instanceUuid)
    sync(people, conn["id"])
    listed = unregistered(people, conn["id"])
    ids = [listed[name]["id"] for name in names]
    for vm_id in ids:
        r = people.post("center_admin", f"/inventory/vms/{vm_id}/assign", {"unit_id": people.unit.id})
        assert r.status_code == 200, r.text

    for ref in refs:
        wait_for(behind.vm(ref).PowerOff())
    sync(people, conn["id"])
    for vm_id in ids:
        assert people.get("admin", f"/vms/{vm_id}")["power_state"] == "stopped"
        drift = [e for e in audit_actions("vm", vm_id) if e.action == "vm.power_drift"]
        assert [(d.before, d.after, d.unit_id) for d in drift] == [
            ({"power_state": "running"}, {"power_state": "stopped"}, people.unit.id)
        ]

    for ref in refs[:2]:
        wait_for(behind.vm(ref).Destroy())
    sync(people, conn["id"])
    states = [people.get("admin", f"/vms/{vm_id}")["lifecycle"] for vm_id in ids]
    assert states == ["missing", "missing", "active"]

    verified = people.get("auditor", "/audit/verify")
    assert verified["ok"] is True, verified
    wait_for(behind.vm(refs[2]).Destroy())
