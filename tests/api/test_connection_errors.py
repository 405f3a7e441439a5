"""The errors a user meets with real hypervisors, each a clear message and never a 500.

Wrong vCenter password, wrong Proxmox token, an expired vSphere session (re-login is transparent),
an unreachable host, a certificate that cannot be verified (and trusted through ``ca_file``), a
template deleted between request and provisioning, and a hypervisor task that fails (the request
fails with the hypervisor's own text, and a retry later succeeds). Throughout: the API never returns
a connection's secret, and no secret reaches a log line or the audit log.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pyVmomi import vim
from sqlmodel import select

from tests.api.test_lifecycle_proxmox import register_proxmox
from tests.api.test_lifecycle_vsphere import (
    Behind,
    Staff,
    approve,
    create_pool,
    hypervisor_ref,
    register_vsphere,
    staff,
    submit,
    unique,
)
from tests.factories import Factory
from tests.support.proxmox_double import ProxmoxDouble
from tests.support.vcsim import LINUX_TEMPLATE, VcsimServer
from vmportal.audit.models import AuditEntry
from vmportal.kit import db
from vmportal.kit.settings import Settings


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def people(client: TestClient, factory: Factory) -> Staff:
    return staff(client, factory)


@pytest.fixture(autouse=True)
def _capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, so a secret anywhere in a log line is seen


@pytest.fixture(scope="module")
def secure_vcsim(vcsim: VcsimServer) -> Iterator[VcsimServer]:
    """A small vcsim of its own, over TLS with a self-signed certificate (ca_file trusts it)."""
    server = vcsim.spawn(tls=True, clusters=1, hosts_per_cluster=1, standalone_hosts=0, vms=1)
    yield server
    server.stop()


def run_check(people: Staff, connection_id: int) -> dict[str, Any]:
    r = people.post("operator", f"/connections/{connection_id}/test")
    assert r.status_code == 200, r.text
    return dict(r.json())


def assert_no_secret(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    """Not in any log line, not in the audit log, not in any connection answer."""
    text = caplog.text
    with db.transaction() as s:
        audit = " ".join(f"{e.before} {e.after} {e.detail}" for e in s.exec(select(AuditEntry)).all())
    for secret in secrets:
        assert secret not in text, "a secret reached a log line"
        assert secret not in audit, "a secret reached the audit log"


# ---- credentials ---------------------------------------------------------------------------------------


def test_wrong_vcenter_password(people: Staff, vcsim: VcsimServer, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "Wr0ng-" + uuid.uuid4().hex
    conn = register_vsphere(people, vcsim, secret=wrong)
    check = run_check(people, conn["id"])
    assert check["ok"] is False
    assert "refused the login" in check["message"] and vcsim.username in check["message"]
    listed = people.get("center_admin", f"/connections/{conn['id']}")
    assert listed["last_check_ok"] is False and "refused the login" in listed["last_check_message"]

    r = people.call("center_admin", "GET", f"/connections/{conn['id']}/templates")
    assert r.status_code == 502, r.text
    assert (
        r.json()["error"]["code"] == "hypervisor_error"
        and "refused the login" in r.json()["error"]["message"]
    )

    # A request made meanwhile fails at provisioning with the same message, not with a 500.
    create_pool(people, conn["id"], "10.51.0.0/24")
    req = approve(people, submit(people, conn["id"], vcsim.template_refs[LINUX_TEMPLATE])["id"])
    assert req["state"] == "failed" and "refused the login" in req["failure_reason"], req

    # The center corrects the password; the test and a retry succeed.
    r = people.call("center_admin", "PATCH", f"/connections/{conn['id']}", {"secret": vcsim.password})
    assert r.status_code == 200 and "secret" not in r.json()
    assert run_check(people, conn["id"])["ok"] is True
    assert people.post("operator", f"/requests/{req['id']}/retry").status_code == 200
    done = people.get("admin", f"/requests/{req['id']}")
    assert done["state"] == "delivered"
    people.post("operator", f"/vms/{done['vm_id']}/decommission", {"reason": "test done"})
    assert_no_secret(caplog, wrong, vcsim.password)


def test_wrong_proxmox_token(
    people: Staff, proxmox_double: ProxmoxDouble, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = str(uuid.uuid4())
    conn = register_proxmox(people, proxmox_double, secret=wrong)
    check = run_check(people, conn["id"])
    assert check["ok"] is False and "refused" in check["message"], check
    r = people.call("center_admin", "GET", f"/connections/{conn['id']}/templates")
    assert r.status_code == 502 and "refused" in r.json()["error"]["message"]

    create_pool(people, conn["id"], "10.52.0.0/24", network="vmbr0")
    req = approve(people, submit(people, conn["id"], "pve1/9000", disk_gib=10)["id"])
    assert req["state"] == "failed" and "refused" in req["failure_reason"], req

    # An unknown token user is refused the same way.
    other = register_proxmox(people, proxmox_double, token_id="nobody@pve!portal")
    assert "refused" in run_check(people, other["id"])["message"]
    assert {r.status for r in proxmox_double.rejected_requests()} == {401}  # refused, not malformed
    proxmox_double.clear_log()

    people.call(
        "center_admin", "PATCH", f"/connections/{conn['id']}", {"secret": proxmox_double.token_secret}
    )
    assert run_check(people, conn["id"])["ok"] is True
    assert people.post("operator", f"/requests/{req['id']}/retry").status_code == 200
    assert people.get("admin", f"/requests/{req['id']}")["state"] == "delivered"
    assert_no_secret(caplog, wrong, proxmox_double.token_secret)
    proxmox_double.assert_all_valid()


def test_connections_never_show_a_secret(
    people: Staff, vcsim: VcsimServer, proxmox_double: ProxmoxDouble, caplog: pytest.LogCaptureFixture
) -> None:
    register_vsphere(people, vcsim)
    register_proxmox(people, proxmox_double)
    for who in ("center_admin", "operator", "auditor"):
        r = people.call(who, "GET", "/connections")
        assert r.status_code == 200
        for conn in r.json():
            assert set(conn) >= {"has_secret"} and "secret" not in conn
        assert vcsim.password not in r.text and proxmox_double.token_secret not in r.text
    for who in ("admin", "lead"):
        assert people.call(who, "GET", "/connections").status_code == 403
    assert_no_secret(caplog, vcsim.password, proxmox_double.token_secret)


# ---- sessions, reachability, TLS ----------------------------------------------------------------------


def test_expired_vsphere_session_is_renewed_transparently(
    people: Staff, vcsim: VcsimServer, caplog: pytest.LogCaptureFixture
) -> None:
    conn = register_vsphere(people, vcsim)
    assert run_check(people, conn["id"])["ok"] is True

    # vCenter ends the portal's session (an administrator, or the SSO session timeout).
    admin = Behind(vcsim)
    try:
        manager = admin.content.sessionManager
        own = manager.currentSession.key
        portal_sessions = [s.key for s in manager.sessionList if s.key != own]
        assert portal_sessions
        manager.Terminate(sessionId=portal_sessions)
        assert [s.key for s in manager.sessionList] == [own]

        caplog.clear()
        check = run_check(people, conn["id"])
        assert check["ok"] is True, check
        templates = people.get("center_admin", f"/connections/{conn['id']}/templates")
        assert {t["ref"] for t in templates} >= set(vcsim.template_refs.values())
        assert "expired; logging in again" in caplog.text
        assert len(manager.sessionList) >= 2  # the portal holds a session again
    finally:
        admin.close()


@pytest.mark.parametrize("kind", ["vsphere", "proxmox"])
def test_unreachable_host(
    people: Staff,
    kind: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    proxmox_double: ProxmoxDouble,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = closed_port()
    body: dict[str, Any]
    if kind == "vsphere":
        body = {
            "kind": "vsphere",
            "name": "down-vc",
            "url": f"http://127.0.0.1:{port}/sdk",
            "username": "svc@vsphere.local",
            "secret": "x-secret",
        }
        expected = "refused the connection"
    else:
        body = {
            "kind": "proxmox",
            "name": "down-pve",
            "url": f"https://127.0.0.1:{port}",
            "token_id": proxmox_double.token_id,
            "secret": proxmox_double.token_secret,
            "ca_file": proxmox_double.ca_file,
        }
        expected = "unreachable"
    r = people.post("center_admin", "/connections", body)
    assert r.status_code == 201, r.text
    conn = r.json()
    check = run_check(people, conn["id"])
    assert check["ok"] is False and expected in check["message"], check
    assert str(port) in check["message"]
    r = people.call("operator", "GET", f"/connections/{conn['id']}/templates")
    assert r.status_code == 502 and expected in r.json()["error"]["message"]
    # The request form still works: the unreachable connection is left out, the others stay; and
    # having just failed (the templates call above), it is not asked again for a while, so a
    # hanging host does not make every form load wait for its timeout.
    caplog.clear()
    for _ in range(2):
        offered = people.get("admin", "/templates")
        assert offered and all(t["connection_id"] != conn["id"] for t in offered)
    assert not [m for m in caplog.messages if "unavailable" in m or "logged in" in m]

    # A request on it is accepted (the template cannot be checked now) and, once the retries are
    # spent, fails with the reason instead of staying in provisioning.
    monkeypatch.setattr(settings, "task_max_retries", 0)
    create_pool(people, conn["id"], "10.53.0.0/24")
    req = approve(people, submit(people, conn["id"], "some-template")["id"])
    assert req["state"] == "failed", req
    assert "could not be reached" in req["failure_reason"] and expected in req["failure_reason"]


def test_certificate_not_trusted_then_trusted_through_ca_file(
    people: Staff, secure_vcsim: VcsimServer, proxmox_double: ProxmoxDouble
) -> None:
    assert secure_vcsim.url.startswith("https://") and secure_vcsim.ca_file
    vc = register_vsphere(people, secure_vcsim, ca_file=None, verify_tls=True)
    check = run_check(people, vc["id"])
    assert check["ok"] is False and "certificate" in check["message"], check
    assert "ca_file" in check["message"]  # the message says how to fix it
    r = people.call("center_admin", "PATCH", f"/connections/{vc['id']}", {"ca_file": secure_vcsim.ca_file})
    assert r.status_code == 200, r.text
    assert run_check(people, vc["id"])["ok"] is True

    pve = register_proxmox(people, proxmox_double, ca_file=None)
    check = run_check(people, pve["id"])
    assert check["ok"] is False and "certificate" in check["message"], check
    people.call("center_admin", "PATCH", f"/connections/{pve['id']}", {"ca_file": proxmox_double.ca_file})
    assert run_check(people, pve["id"])["ok"] is True

    # A CA file that does not exist on the portal's server is refused when registering.
    r = people.post(
        "center_admin",
        "/connections",
        {
            "kind": "vsphere",
            "name": "bad-ca",
            "url": secure_vcsim.url,
            "username": "u",
            "secret": "s",
            "ca_file": "/nonexistent/ca.pem",
        },
    )
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "ca_file"


# ---- provisioning failures ----------------------------------------------------------------------------


def test_template_deleted_before_provisioning_vsphere(people: Staff, vcsim: VcsimServer) -> None:
    behind = Behind(vcsim)
    try:
        source = behind.vm(vcsim.template_refs[LINUX_TEMPLATE])
        pool = behind.find(vim.ClusterComputeResource, "DC0_C0").resourcePool
        name = f"tpl-short-lived-{uuid.uuid4().hex[:6]}"
        made = wait_for(
            source.Clone(
                folder=source.parent,
                name=name,
                spec=vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=pool), template=True, powerOn=False),
            )
        )
        template_ref = made.config.instanceUuid

        conn = register_vsphere(people, vcsim)
        create_pool(people, conn["id"], "10.54.0.0/24")
        offered = {t["ref"]: t["name"] for t in people.get("admin", "/templates")}
        assert offered[template_ref] == name
        req = submit(people, conn["id"], template_ref)

        wait_for(behind.vm(template_ref).Destroy())  # an administrator removes it in vCenter

        done = approve(people, req["id"])
        assert done["state"] == "failed", done
        assert "template" in done["failure_reason"] and template_ref in done["failure_reason"]
        assert "does not exist" in done["failure_reason"]
    finally:
        behind.close()


def test_template_deleted_before_provisioning_proxmox(people: Staff, proxmox_double: ProxmoxDouble) -> None:
    vmid = proxmox_double.add_vm(
        "alma9-tmpl",
        node="pve2",
        template=True,
        disks={"scsi0": 10},
        extra={"ide2": "local-lvm:vm-9100-cloudinit,media=cdrom"},
    )
    conn = register_proxmox(people, proxmox_double)
    create_pool(people, conn["id"], "10.55.0.0/24", network="vmbr0")
    req = submit(people, conn["id"], f"pve2/{vmid}", disk_gib=10)
    with proxmox_double._lock:
        del proxmox_double.vms[vmid]  # an administrator removed it on the node
    done = approve(people, req["id"])
    assert done["state"] == "failed", done
    assert f"{vmid}" in done["failure_reason"] and "does not exist" in done["failure_reason"]
    proxmox_double.assert_all_valid()


def test_failing_clone_task_on_proxmox_then_retry(people: Staff, proxmox_double: ProxmoxDouble) -> None:
    conn = register_proxmox(people, proxmox_double)
    create_pool(people, conn["id"], "10.56.0.0/24", network="vmbr0")
    text = "clone failed: qemu-img: error while writing at byte 2147483136: No space left on device"
    proxmox_double.fail_next_task("qmclone", text)
    req = approve(people, submit(people, conn["id"], "pve1/9000", disk_gib=10)["id"])
    assert req["state"] == "failed", req
    assert text in req["failure_reason"]
    assert req["vm_id"] is None
    # Nothing half-made stays on the node, and the address went back to the pool.
    assert [v.vmid for v in proxmox_double.vms.values()] == [9000, 9001, 100]

    retried = people.post("operator", f"/requests/{req['id']}/retry")
    assert retried.status_code == 200, retried.text
    done = people.get("admin", f"/requests/{req['id']}")
    assert done["state"] == "delivered" and done["provisioning_attempts"] == 2
    assert proxmox_double.vm_by_name(people.get("admin", f"/vms/{done['vm_id']}")["name"]) is not None
    proxmox_double.assert_all_valid()


def test_storage_too_small_on_proxmox_then_fixed_and_retried(
    people: Staff, proxmox_double: ProxmoxDouble
) -> None:
    conn = register_proxmox(
        people, proxmox_double, defaults={"node": "pve1", "storage": "nearly-full", "bridge": "vmbr0"}
    )
    create_pool(people, conn["id"], "10.57.0.0/24", network="vmbr0")
    req = approve(people, submit(people, conn["id"], "pve1/9000", disk_gib=10)["id"])
    assert req["state"] == "failed"
    assert "insufficient free space" in req["failure_reason"], req

    r = people.call(
        "center_admin",
        "PATCH",
        f"/connections/{conn['id']}",
        {"defaults": {"node": "pve1", "storage": "local-lvm", "bridge": "vmbr0"}},
    )
    assert r.status_code == 200, r.text
    assert people.post("operator", f"/requests/{req['id']}/retry").status_code == 200
    assert people.get("admin", f"/requests/{req['id']}")["state"] == "delivered"
    proxmox_double.assert_all_valid()


def wait_for(task: Any) -> Any:
    while task.info.state not in ("success", "error"):
        time.sleep(0.05)
    assert task.info.state == "success", task.info.error
    return task.info.result


def test_failing_clone_task_on_vsphere_then_retry(people: Staff, secure_vcsim: VcsimServer) -> None:
    """The network team made a new distributed port group but did not add the cluster's host to its
    switch: vCenter's reconfigure task fails (InvalidArgument, "not a member of VDS"), the request
    fails with that text and the half-made VM is removed. Once the host is on the switch, a retry
    delivers."""
    behind = Behind(secure_vcsim)
    try:
        datacenter = behind.find(vim.Datacenter, "DC0")
        switch_name, portgroup = unique("dvs"), unique("pg-lab")
        switch = wait_for(
            datacenter.networkFolder.CreateDVS_Task(
                vim.DistributedVirtualSwitch.CreateSpec(
                    configSpec=vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec(name=switch_name)
                )
            )
        )
        wait_for(
            switch.AddDVPortgroup_Task(
                [
                    vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
                        name=portgroup, type="earlyBinding", numPorts=8
                    )
                ]
            )
        )

        conn = register_vsphere(people, secure_vcsim)
        create_pool(people, conn["id"], "10.58.0.0/24", network=portgroup)
        req = approve(people, submit(people, conn["id"], secure_vcsim.template_refs[LINUX_TEMPLATE])["id"])
        assert req["state"] == "failed", req
        assert (
            req["failure_reason"].startswith("reconfigure ")
            and "failed: InvalidArgument" in req["failure_reason"]
        )
        assert req["vm_id"] is None
        marker = f"vmportal:request:{req['id']}"
        assert not [v for v in behind.find_all(vim.VirtualMachine) if marker in (v.config.annotation or "")]

        host = behind.find(vim.HostSystem, "DC0_C0_H0")
        wait_for(
            switch.Reconfigure(
                vim.DistributedVirtualSwitch.ConfigSpec(
                    configVersion=switch.config.configVersion,
                    host=[vim.dvs.HostMember.ConfigSpec(operation="add", host=host)],
                )
            )
        )
        assert people.post("operator", f"/requests/{req['id']}/retry").status_code == 200
        done = people.get("admin", f"/requests/{req['id']}")
        assert done["state"] == "delivered" and done["provisioning_attempts"] == 2, done
        raw = behind.vm(hypervisor_ref(done["vm_id"]))
        assert raw.runtime.powerState == "poweredOn" and [n.name for n in raw.network] == [portgroup]
    finally:
        behind.close()
