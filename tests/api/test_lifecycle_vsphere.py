"""The whole lifecycle through the HTTP API on a real vSphere endpoint (govmomi's vcsim, pyVmomi).

A center admin registers the session's vcsim as a connection, tests it and sees its templates next
to the simulator's; a unit admin requests a VM from one of them, the center approves it, the VM is
cloned, customised and delivered, the credentials are fetched once, it is stopped, started and
restarted, its network is cut and restored, and it is decommissioned. Every step is read back from
vcsim with pyVmomi directly, not from the portal's own answers: the NICs' ``connectable`` flags,
the power state, the size, the placement, the deletion.

The helpers here (:class:`Staff`, :func:`staff`, :func:`register_vsphere`, :func:`deliver`...) are
shared by the other hypervisor API tests.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pyVmomi import vim
from sqlmodel import col, select

from tests.factories import Factory
from tests.support.vcsim import LINUX_TEMPLATE, WINDOWS_TEMPLATE, VcsimServer
from vmportal.audit.models import AuditEntry
from vmportal.connection.service import forget_templates
from vmportal.kit import db
from vmportal.unit.models import Unit
from vmportal.vm.models import VM

pytestmark = pytest.mark.vcsim

API = "/api/v1"

# ---- shared helpers ----------------------------------------------------------------------------------


@dataclass
class Staff:
    """One unit with complete paperwork and its users, another unit's admin, the center's staff."""

    client: TestClient
    factory: Factory
    unit: Unit
    heads: dict[str, dict[str, str]]

    def call(self, who: str, method: str, path: str, json: Any = None) -> httpx.Response:
        return self.client.request(method, f"{API}{path}", json=json, headers=self.heads[who])

    def post(self, who: str, path: str, json: Any = None) -> httpx.Response:
        return self.call(who, "POST", path, json)

    def get(self, who: str, path: str) -> Any:
        r = self.call(who, "GET", path)
        assert r.status_code == 200, r.text
        return r.json()


def staff(client: TestClient, factory: Factory) -> Staff:
    forget_templates()  # the template cache is per process; ids restart in every test database
    unit = factory.unit(quota=(50, 200, 512, 10000))
    other = factory.unit()
    users = {
        "admin": factory.user("unit_admin", unit),
        "lead": factory.user("unit_lead", unit),
        "other_admin": factory.user("unit_admin", other),
        "center_admin": factory.user("center_admin"),
        "operator": factory.user("center_operator"),
        "auditor": factory.user("auditor"),
    }
    return Staff(client, factory, unit, {name: factory.login(client, u) for name, u in users.items()})


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def register_vsphere(
    people: Staff, server: VcsimServer, *, name: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """Register ``server`` as a vSphere connection through the API (201 expected)."""
    body: dict[str, Any] = {
        "kind": "vsphere",
        "name": name or unique("vcsim"),
        "url": server.url,
        "username": server.username,
        "secret": server.password,
        "defaults": {"datacenter": "DC0", "datastore": "LocalDS_0", "network": "VM Network"},
    }
    if server.ca_file:
        body["ca_file"] = server.ca_file
    body.update(overrides)
    r = people.post("center_admin", "/connections", body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def create_pool(people: Staff, connection_id: int, cidr: str, network: str = "") -> dict[str, Any]:
    base = cidr.rsplit(".", 1)[0]
    r = people.post(
        "center_admin",
        "/pools",
        {
            "name": unique("pool"),
            "cidr": cidr,
            "gateway": f"{base}.1",
            "dns": [f"{base}.2"],
            "excluded": [f"{base}.1-{base}.9"],
            "network": network,
            "connection_id": connection_id,
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def submit(people: Staff, connection_id: int, template_ref: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "system_name": "课程实验平台",
        "purpose": "teaching",
        "description": "计算机学院本科生操作系统课程实验环境",
        "hostname": unique("lab"),
        "connection_id": connection_id,
        "template_ref": template_ref,
        "vcpus": 2,
        "memory_gib": 4,
        "disk_gib": 40,
    }
    body.update(overrides)
    r = people.post("admin", "/requests", body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def approve(people: Staff, request_id: int) -> dict[str, Any]:
    """Approve (the provisioning task runs inline) and return the request as it ended."""
    r = people.post("operator", f"/requests/{request_id}/approve")
    assert r.status_code == 200, r.text
    return dict(people.get("admin", f"/requests/{request_id}"))


def deliver(people: Staff, connection_id: int, template_ref: str, **overrides: Any) -> dict[str, Any]:
    req = approve(people, submit(people, connection_id, template_ref, **overrides)["id"])
    assert req["state"] == "delivered", req
    return req


def power(people: Staff, vm_id: int, action: str, who: str = "admin") -> dict[str, Any]:
    r = people.post(who, f"/vms/{vm_id}/power", {"action": action, "reason": f"test {action}"})
    assert r.status_code == 202, r.text
    op = people.get(who, r.json()["links"]["self"].removeprefix(API))
    assert op["state"] == "succeeded", op
    return dict(op)


def set_network(people: Staff, vm_id: int, connected: bool, who: str = "operator") -> httpx.Response:
    return people.post(who, f"/vms/{vm_id}/network", {"connected": connected, "reason": "test"})


def hypervisor_ref(vm_id: int) -> str:
    """The hypervisor's id of a VM (the API does not show it to units; tests read the row)."""
    with db.transaction() as s:
        row = s.get(VM, vm_id)
        assert row is not None
        return row.hypervisor_ref


def audit_actions(target_type: str, target_id: int) -> list[AuditEntry]:
    with db.transaction() as s:
        return list(
            s.exec(
                select(AuditEntry)
                .where(AuditEntry.target_type == target_type, AuditEntry.target_id == str(target_id))
                .order_by(col(AuditEntry.id))
            )
        )


# ---- reading vcsim behind the portal ----------------------------------------------------------------


class Behind:
    """pyVmomi straight to vcsim: what the hypervisor itself says, not what the portal stored."""

    def __init__(self, server: VcsimServer) -> None:
        self.si = server.connect()
        self.content = self.si.RetrieveContent()

    def vm(self, ref: str) -> Any:
        return self.content.searchIndex.FindByUuid(None, ref, True, True)

    def nics(self, ref: str) -> list[Any]:
        devices = self.vm(ref).config.hardware.device
        return [d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)]

    def power_state(self, ref: str) -> str:
        return str(self.vm(ref).runtime.powerState)

    def find_all(self, kind: type) -> list[Any]:
        view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [kind], True)
        try:
            return list(view.view)
        finally:
            view.Destroy()

    def find(self, kind: type, name: str) -> Any:
        return next(o for o in self.find_all(kind) if o.name == name)

    def close(self) -> None:
        self.content.sessionManager.Logout()


@pytest.fixture
def behind(vcsim: VcsimServer) -> Iterator[Behind]:
    view = Behind(vcsim)
    yield view
    view.close()


@pytest.fixture
def people(client: TestClient, factory: Factory) -> Staff:
    return staff(client, factory)


# ---- the lifecycle -----------------------------------------------------------------------------------


def test_full_lifecycle_on_vsphere(people: Staff, vcsim: VcsimServer, behind: Behind) -> None:
    # The center files new VMs in a folder and a resource pool of its own (made in vCenter by hand).
    folder_name = unique("vmportal")
    datacenter = behind.find(vim.Datacenter, "DC0")
    datacenter.vmFolder.CreateFolder(folder_name)

    # 1. Register, test, list templates.
    conn = register_vsphere(
        people,
        vcsim,
        defaults={
            "datacenter": "DC0",
            "folder": folder_name,
            "pool": "DC0_C1_RP1",
            "datastore": "LocalDS_0",
            "network": "DC0_DVPG0",
        },
    )
    assert conn["has_secret"] is True and "secret" not in conn
    listed = people.get("center_admin", "/connections")
    assert vcsim.password not in str(listed)

    r = people.post("operator", f"/connections/{conn['id']}/test")
    assert r.status_code == 200, r.text
    check = r.json()
    assert check["ok"] is True, check
    assert check["product"] and check["version"]
    assert check["template_count"] >= 2 and check["vm_count"] >= vcsim.topology.expected_vms
    assert people.get("center_admin", f"/connections/{conn['id']}")["last_check_ok"] is True

    own = people.get("center_admin", f"/connections/{conn['id']}/templates")
    refs = {t["name"]: t["ref"] for t in own}
    assert refs[LINUX_TEMPLATE] == vcsim.template_refs[LINUX_TEMPLATE]
    assert refs[WINDOWS_TEMPLATE] == vcsim.template_refs[WINDOWS_TEMPLATE]
    linux = next(t for t in own if t["name"] == LINUX_TEMPLATE)
    assert (linux["vcpus"], linux["memory_gib"], linux["disk_gib"]) == (2, 2.0, 20)

    # What a unit admin's request form offers: every connection's templates, the simulator's too.
    offered = people.get("admin", "/templates")
    by_connection: dict[str, set[str]] = {}
    for t in offered:
        by_connection.setdefault(t["connection"], set()).add(t["ref"])
    assert set(vcsim.template_refs.values()) <= by_connection[conn["name"]]
    assert by_connection.get("simulator"), "the simulator's templates are offered next to vcsim's"

    # 2. Request, approve, provision, deliver.
    pool = create_pool(people, conn["id"], "10.31.0.0/24")
    req = deliver(people, conn["id"], vcsim.template_refs[LINUX_TEMPLATE], vcpus=2, memory_gib=4, disk_gib=40)
    vm = people.get("admin", f"/vms/{req['vm_id']}")
    assert vm["lifecycle"] == "active" and vm["power_state"] == "running"
    assert vm["network_connected"] is True and vm["admin_account"] == "vmadmin"
    assert ipaddress.ip_address(vm["ip_address"]) in ipaddress.ip_network(pool["cidr"])
    ref = hypervisor_ref(vm["id"])

    raw = behind.vm(ref)
    assert raw is not None, "the VM the portal delivered exists on vcsim"
    assert raw.name == vm["name"]
    assert raw.runtime.powerState == "poweredOn"
    assert (raw.config.hardware.numCPU, raw.config.hardware.memoryMB) == (2, 4096)
    disks = [d for d in raw.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
    assert disks[0].capacityInKB == 40 * 1024 * 1024
    assert raw.parent.name == folder_name
    assert raw.resourcePool.name == "DC0_C1_RP1"
    assert f"vmportal-marker: vmportal:request:{req['id']}" in (raw.config.annotation or "")
    nics = behind.nics(ref)
    assert nics and isinstance(
        nics[0].backing, vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo
    )
    assert nics[0].backing.port.portgroupKey == behind.find(vim.Network, "DC0_DVPG0").key

    # 3. The credentials, once.
    r = people.post("admin", f"/vms/{vm['id']}/credentials")
    assert r.status_code == 200, r.text
    assert r.json()["admin_account"] == "vmadmin" and len(r.json()["password"]) >= 16
    again = people.post("admin", f"/vms/{vm['id']}/credentials")
    assert again.status_code == 410 and again.json()["error"]["rule"] == "credentials_once"

    # 4. Power: stop, start, restart, each confirmed by vcsim.
    assert power(people, vm["id"], "stop")["power_after"] == "stopped"
    assert behind.power_state(ref) == "poweredOff"
    assert power(people, vm["id"], "start")["power_after"] == "running"
    assert behind.power_state(ref) == "poweredOn"
    assert power(people, vm["id"], "restart", who="operator")["power_after"] == "running"
    assert behind.power_state(ref) == "poweredOn"

    # 5. Network cut and restore: the center's action; every NIC read back with pyVmomi.
    for who in ("admin", "lead", "other_admin", "auditor"):
        refused = set_network(people, vm["id"], False, who=who)
        assert refused.status_code == (404 if who == "other_admin" else 403), (who, refused.text)
    assert all(n.connectable.connected for n in behind.nics(ref))

    cut = set_network(people, vm["id"], False)
    assert cut.status_code == 200, cut.text
    assert cut.json()["network_connected"] is False and cut.json()["previously_connected"] is True
    for nic in behind.nics(ref):
        assert nic.connectable.connected is False
        assert nic.connectable.startConnected is False
        assert nic.connectable.allowGuestControl is False
    assert people.get("admin", f"/vms/{vm['id']}")["network_connected"] is False

    # A unit may never reconnect, not even its own VM.
    refused = set_network(people, vm["id"], True, who="admin")
    assert refused.status_code == 403 and refused.json()["error"]["rule"] == "power_ops"

    restored = set_network(people, vm["id"], True, who="center_admin")
    assert restored.status_code == 200, restored.text
    assert restored.json()["network_connected"] is True
    for nic in behind.nics(ref):
        assert nic.connectable.connected is True
        assert nic.connectable.startConnected is True
    assert people.get("admin", f"/vms/{vm['id']}")["network_connected"] is True

    # 6. Decommission: the VM is gone from vcsim, its address back in the pool.
    r = people.post("center_admin", f"/vms/{vm['id']}/decommission", {"reason": "course finished"})
    assert r.status_code == 202, r.text
    gone = people.get("center_admin", f"/vms/{vm['id']}")
    assert gone["lifecycle"] == "decommissioned" and gone["decommissioned_at"], gone
    assert behind.vm(ref) is None
    assert people.get("center_admin", f"/pools/{pool['id']}")["counts"]["used"] == 0

    actions = [e.action for e in audit_actions("vm", vm["id"])]
    for expected in ("vm.create", "vm.power", "vm.network", "vm.decommission"):
        assert expected in actions, (expected, actions)
    denied = [e for e in audit_actions("vm", vm["id"]) if e.action == "vm.network.request"]
    assert {e.result for e in denied} == {"denied"} and len(denied) == 5


def test_a_stopped_vm_stays_cut_off_when_powered_on(
    people: Staff, vcsim: VcsimServer, behind: Behind
) -> None:
    conn = register_vsphere(people, vcsim, defaults={"pool": "DC0_C0_RP1"})
    create_pool(people, conn["id"], "10.32.0.0/24", network="VM Network")
    vm_id = deliver(people, conn["id"], vcsim.template_refs[LINUX_TEMPLATE])["vm_id"]
    ref = hypervisor_ref(vm_id)

    power(people, vm_id, "stop")
    assert set_network(people, vm_id, False).json()["network_connected"] is False
    assert all(not n.connectable.startConnected for n in behind.nics(ref))
    power(people, vm_id, "start")
    assert behind.power_state(ref) == "poweredOn"
    assert all(not n.connectable.connected for n in behind.nics(ref)), "isolation survives a power-on"
    assert people.get("operator", f"/vms/{vm_id}")["network_connected"] is False

    assert set_network(people, vm_id, True).json()["network_connected"] is True
    assert all(n.connectable.connected and n.connectable.startConnected for n in behind.nics(ref))
    r = people.post("operator", f"/vms/{vm_id}/decommission", {"reason": "done"})
    assert r.status_code == 202 and behind.vm(ref) is None
