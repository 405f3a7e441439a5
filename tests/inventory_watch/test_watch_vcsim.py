"""The inventory watcher against vcsim (WaitForUpdatesEx), with every change made out of band by
pyVmomi straight on the simulator, as an administrator in the vSphere client would:

* a contained VM whose NIC is reconnected, or which is powered on under a power-off containment,
  is contained again on vcsim; the incident's timeline and the audit log record the tamper with
  what changed; the unit's contacts and the center receive a mail (aiosmtpd);
* a VM created behind the portal's back is listed as unregistered, one destroyed is marked missing;
* the watcher (a ``vmportal watch`` process) killed with SIGKILL and started again resumes: what
  changed while nobody watched is seen and a contained VM tampered with meanwhile is re-contained;
* a power-on of a contained VM through the API answers 409 naming the incident.

Waits poll the portal's own answers (the database) until a generous deadline; nothing asserts on
how long it took.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pyVmomi import vim

from tests.api.test_inventory_vsphere import clone_by_hand, unregistered
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
from tests.conftest import TEST_KEY
from tests.factories import Factory
from tests.security.helpers import post, register, suricata_c2
from tests.security_reports.conftest import CENTER_MAILBOX, MailServer, Received
from tests.security_reports.helpers import contacts
from tests.support.vcsim import LINUX_TEMPLATE, VcsimServer
from vmportal.inventory import watcher
from vmportal.kit import db
from vmportal.kit.settings import Settings
from vmportal.vm.models import VM

pytestmark = pytest.mark.vcsim

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 60.0


def wait_until(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not seen within {timeout:.0f} s: {what}")


def finish(task: Any) -> Any:
    while task.info.state not in ("success", "error"):
        time.sleep(0.05)
    assert task.info.state == "success", task.info.error
    return task.info.result


def reconnect_by_hand(behind: Behind, ref: str) -> None:
    """Tick "Connected" on every NIC in the vSphere client."""
    changes = []
    for nic in behind.nics(ref):
        nic.connectable.connected = nic.connectable.startConnected = True
        changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=nic))
    finish(behind.vm(ref).Reconfigure(vim.vm.ConfigSpec(deviceChange=changes)))


def connected(behind: Behind, ref: str) -> list[bool]:
    return [bool(n.connectable.connected) for n in behind.nics(ref)]


@pytest.fixture
def people(client: TestClient, factory: Factory) -> Staff:
    return staff(client, factory)


@pytest.fixture
def behind(vcsim: VcsimServer) -> Iterator[Behind]:
    view = Behind(vcsim)
    yield view
    view.close()


@pytest.fixture
def vsphere(people: Staff, vcsim: VcsimServer) -> dict[str, Any]:
    """The session's vcsim registered as a connection, with an address pool on it."""
    conn = register_vsphere(people, vcsim)
    create_pool(people, conn["id"], "10.71.0.0/24")
    return conn


def watch(connection_id: int) -> Iterator[threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=watcher.watch_connection, args=(connection_id, stop), daemon=True)
    thread.start()
    yield stop
    stop.set()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the watcher did not stop"


@pytest.fixture
def watching(vsphere: dict[str, Any]) -> Iterator[threading.Event]:
    """The connection's watcher running in this process (as the embedded portal runs it)."""
    yield from watch(int(vsphere["id"]))


def contain(people: Staff, vm_id: int, *, power_off: bool = False) -> dict[str, Any]:
    """A Suricata C2 alert on the VM's address; with ``power_off`` the center's table powers off."""
    h = people.heads["center_admin"]
    if power_off:
        rule = {"category": "trojan", "min_severity": "medium", "confidence": "high", "action": "power_off"}
        r = people.client.put("/api/v1/security/containment-policy", json={"rules": [rule]}, headers=h)
        assert r.status_code == 200, r.text
    vm = people.get("center_admin", f"/vms/{vm_id}")
    source = register(people.client, h, "suricata")
    assert post(people.client, source, suricata_c2(vm["ip_address"])).status_code == 202
    [incident] = people.get("center_admin", f"/incidents?vm_id={vm_id}")["items"]
    assert incident["state"] == "contained", incident
    return dict(incident)


def tampered(people: Staff, incident_id: int) -> list[dict[str, Any]]:
    timeline = people.get("center_admin", f"/incidents/{incident_id}/timeline")
    return [e for e in timeline if e["kind"] == "tampered"]


def tamper_mails(mail_server: MailServer, vm_name: str) -> list[Received]:
    return [m for m in mail_server.collector.about("在平台之外被改动") if vm_name in m.subject]


def assert_told(people: Staff, mail_server: MailServer, vm_name: str, incident_id: int) -> None:
    """One tamper mail, to the unit's security contacts with the center copied."""
    mails = wait_until(lambda: tamper_mails(mail_server, vm_name), "the tamper mail")
    [mail] = mails
    assert f"#{incident_id}" in mail.subject and "tampered with" in mail.subject
    assert set(contacts(people.unit).values()) | {CENTER_MAILBOX} <= set(mail.rcpt_tos)
    assert f"/incidents/{incident_id})" in mail.body and "/api/v1/" not in mail.body  # the page, not JSON


# ---- containment that holds ---------------------------------------------------------------------


def test_a_nic_reconnected_in_vcenter_is_cut_again_recorded_and_mailed(
    people: Staff,
    vcsim: VcsimServer,
    vsphere: dict[str, Any],
    behind: Behind,
    watching: threading.Event,
    mail_server: MailServer,
) -> None:
    vm_id = deliver(people, vsphere["id"], vcsim.template_refs[LINUX_TEMPLATE])["vm_id"]
    ref = hypervisor_ref(vm_id)
    incident = contain(people, vm_id)
    assert incident["executed_action"] == "isolate_network"
    assert connected(behind, ref) and not any(connected(behind, ref))
    vm_name = people.get("center_admin", f"/vms/{vm_id}")["name"]
    contained_mails = len(mail_server.messages)

    reconnect_by_hand(behind, ref)  # behind the portal's back
    assert all(connected(behind, ref))

    [event] = wait_until(lambda: tampered(people, incident["id"]), "the tamper on the timeline")
    assert event["data"]["changed"] == {"network_connected": True}
    assert event["data"]["restored"] is True and event["data"]["action"] == "isolate_network"
    assert "重新处置" in event["message_zh"] and "contained again" in event["message_en"]
    assert not any(connected(behind, ref)), "vcsim: the NICs are cut again"
    audit = [e for e in audit_actions("incident", incident["id"]) if e.action == "incident.recontained"]
    assert len(audit) == 1 and audit[0].actor == "re-containment"
    assert people.get("center_admin", f"/incidents/{incident['id']}")["state"] == "contained"
    assert people.get("center_admin", f"/vms/{vm_id}")["network_connected"] is False
    assert_told(people, mail_server, vm_name, incident["id"])
    assert len(mail_server.messages) == contained_mails + 1  # the tamper mail, nothing else


def test_the_hold_check_contains_again_what_no_stream_reported(
    people: Staff, vcsim: VcsimServer, vsphere: dict[str, Any], behind: Behind, mail_server: MailServer
) -> None:
    """No watcher runs: the timed re-reading of held VMs alone finds a NIC ticked again, both when
    the VM's row still says "cut" and when it already says "connected" (a drift stored while its
    re-containment failed), and cuts it again each time."""
    vm_id = deliver(people, vsphere["id"], vcsim.template_refs[LINUX_TEMPLATE])["vm_id"]
    ref = hypervisor_ref(vm_id)
    incident = contain(people, vm_id)
    vm_name = people.get("center_admin", f"/vms/{vm_id}")["name"]
    assert watcher.check_holds(vsphere["id"]) is not None  # it reads the held VM: nothing to do
    assert not tampered(people, incident["id"]) and not any(connected(behind, ref))

    reconnect_by_hand(behind, ref)
    watcher.check_holds(vsphere["id"])
    [event] = tampered(people, incident["id"])
    assert event["data"]["changed"] == {"network_connected": True} and event["data"]["restored"]
    assert not any(connected(behind, ref)), "vcsim: cut again by the hold check"
    assert_told(people, mail_server, vm_name, incident["id"])

    reconnect_by_hand(behind, ref)
    with db.transaction() as session:  # the row already agrees with vCenter: no drift to see
        row = session.get(VM, vm_id)
        assert row is not None
        row.network_connected = True
        session.add(row)
    watcher.check_holds(vsphere["id"])
    assert len(tampered(people, incident["id"])) == 2
    assert not any(connected(behind, ref))
    assert people.get("center_admin", f"/vms/{vm_id}")["network_connected"] is False


def test_a_vm_powered_on_under_a_power_off_containment_is_stopped_again(
    people: Staff,
    vcsim: VcsimServer,
    vsphere: dict[str, Any],
    behind: Behind,
    watching: threading.Event,
    mail_server: MailServer,
) -> None:
    vm_id = deliver(people, vsphere["id"], vcsim.template_refs[LINUX_TEMPLATE])["vm_id"]
    ref = hypervisor_ref(vm_id)
    incident = contain(people, vm_id, power_off=True)
    assert incident["executed_action"] == "power_off" and behind.power_state(ref) == "poweredOff"
    vm_name = people.get("center_admin", f"/vms/{vm_id}")["name"]

    finish(behind.vm(ref).PowerOn())  # someone in the vSphere client

    [event] = wait_until(lambda: tampered(people, incident["id"]), "the tamper on the timeline")
    assert event["data"]["changed"] == {"power_state": "running"} and event["data"]["restored"] is True
    assert "开机" in event["message_zh"]
    assert wait_until(lambda: behind.power_state(ref) == "poweredOff", "vcsim: the VM is off again")
    assert people.get("center_admin", f"/vms/{vm_id}")["power_state"] == "stopped"
    assert [e.action for e in audit_actions("incident", incident["id"])].count("incident.recontained") == 1
    assert_told(people, mail_server, vm_name, incident["id"])


def test_a_power_on_of_a_contained_vm_through_the_portal_is_409_naming_the_incident(
    people: Staff, vcsim: VcsimServer, vsphere: dict[str, Any], behind: Behind
) -> None:
    vm_id = deliver(people, vsphere["id"], vcsim.template_refs[LINUX_TEMPLATE])["vm_id"]
    ref = hypervisor_ref(vm_id)
    incident = contain(people, vm_id, power_off=True)
    body = {"action": "start", "reason": "we need it back"}
    # The unit's own admin is refused by the agreement's rule (a suspended VM stays off) ...
    r = people.post("admin", f"/vms/{vm_id}/power", body)
    assert r.status_code == 403 and r.json()["error"]["rule"] == "suspended_lock", r.text
    # ... the center's staff, who could otherwise, are sent to the incident that holds it.
    r = people.post("center_admin", f"/vms/{vm_id}/power", body)
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["incident_id"] == incident["id"] and error["containment"] == "power_off"
    assert f"#{incident['id']}" in error["message"] and f"#{incident['id']}" in error["message_zh"]
    assert f"/api/v1/incidents/{incident['id']}" in error["message"]
    r = people.post("operator", f"/vms/{vm_id}/network", {"connected": True, "reason": "reconnect"})
    assert r.status_code == 409 and r.json()["error"]["incident_id"] == incident["id"]
    assert behind.power_state(ref) == "poweredOff"  # nothing reached vcsim
    assert people.get("center_admin", f"/incidents/{incident['id']}")["state"] == "contained"


# ---- existence --------------------------------------------------------------------------------------


def test_vms_created_and_destroyed_behind_the_portals_back_are_seen(
    people: Staff,
    vcsim: VcsimServer,
    vsphere: dict[str, Any],
    behind: Behind,
    watching: threading.Event,
) -> None:
    name = unique("by-hand")
    raw = clone_by_hand(behind, vcsim, name, "10.71.0.200")
    ref = raw.config.instanceUuid
    found = wait_until(lambda: unregistered(people, vsphere["id"]).get(name), "the VM created by hand")
    assert found["hypervisor_ref"] == ref
    unregistered_audit = wait_until(
        lambda: [
            e
            for e in audit_actions("connection", vsphere["id"])
            if e.action == "inventory.unregistered_found"
        ],
        "the audit row of the VM found",
    )
    assert unregistered_audit

    vm_id = deliver(people, vsphere["id"], vcsim.template_refs[LINUX_TEMPLATE])["vm_id"]
    governed = hypervisor_ref(vm_id)
    finish(behind.vm(governed).PowerOff())
    finish(behind.vm(governed).Destroy())
    gone = wait_until(
        lambda: (v := people.get("admin", f"/vms/{vm_id}"))["lifecycle"] == "missing" and v,
        "the destroyed VM marked missing",
    )
    assert gone["lifecycle"] == "missing"
    assert "vm.missing" in [e.action for e in audit_actions("vm", vm_id)]

    finish(raw.PowerOff())
    finish(raw.Destroy())
    wait_until(
        lambda: unregistered(people, vsphere["id"])[name]["lifecycle"] == "missing",
        "the unregistered VM destroyed by hand, listed as missing",
    )


# ---- kill and restart ---------------------------------------------------------------------------


class WatchProcess:
    """``vmportal watch`` as its own process (its docker-compose service), on the test's database."""

    def __init__(self, settings: Settings, mail_port: int) -> None:
        self.env = {
            **os.environ,
            "VMPORTAL_DATA_DIR": str(settings.data_dir),
            "VMPORTAL_DATABASE_URL": settings.database_url,
            "VMPORTAL_ENCRYPTION_KEY": TEST_KEY,
            "VMPORTAL_TASK_MODE": "inline",
            "VMPORTAL_SMTP_HOST": "127.0.0.1",
            "VMPORTAL_SMTP_PORT": str(mail_port),
            "VMPORTAL_MAIL_FROM": settings.mail_from,
            "VMPORTAL_CENTER_MAILBOX": CENTER_MAILBOX,
            "VMPORTAL_DEMO": "false",
        }
        self.log = settings.data_dir / "watch.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vmportal.app.cli", "watch"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=15)
        self.process = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def test_a_killed_watcher_started_again_loses_no_change(
    people: Staff,
    vcsim: VcsimServer,
    vsphere: dict[str, Any],
    behind: Behind,
    settings: Settings,
    mail_server: MailServer,
) -> None:
    template = vcsim.template_refs[LINUX_TEMPLATE]
    plain = deliver(people, vsphere["id"], template)["vm_id"]
    held = deliver(people, vsphere["id"], template)["vm_id"]
    plain_ref, held_ref = hypervisor_ref(plain), hypervisor_ref(held)
    incident = contain(people, held)
    held_name = people.get("center_admin", f"/vms/{held}")["name"]
    process = WatchProcess(settings, mail_server.port)
    process.start()
    try:
        # It is watching: a power-off made now is seen.
        finish(behind.vm(plain_ref).PowerOff())
        wait_until(
            lambda: people.get("admin", f"/vms/{plain}")["power_state"] == "stopped",
            f"the power-off, by the first watcher process; its log:\n{process.tail()}",
        )
        process.kill()  # no goodbye: SIGKILL

        # While nobody watches: the plain VM is started, the contained one reconnected.
        finish(behind.vm(plain_ref).PowerOn())
        reconnect_by_hand(behind, held_ref)
        time.sleep(1.0)  # nothing would notice now; the row still says what it said
        assert people.get("admin", f"/vms/{plain}")["power_state"] == "stopped"
        assert not tampered(people, incident["id"])

        process.start()
        wait_until(
            lambda: people.get("admin", f"/vms/{plain}")["power_state"] == "running",
            f"the power-on made while no watcher ran; log:\n{process.tail()}",
        )
        [event] = wait_until(lambda: tampered(people, incident["id"]), "the tamper made while down")
        assert event["data"]["changed"] == {"network_connected": True} and event["data"]["restored"]
        assert not any(connected(behind, held_ref))
        assert_told(people, mail_server, held_name, incident["id"])

        # And the restarted watcher keeps following.
        finish(behind.vm(plain_ref).PowerOff())
        wait_until(
            lambda: people.get("admin", f"/vms/{plain}")["power_state"] == "stopped",
            "a power-off after the restart",
        )
    finally:
        process.kill()


def test_a_second_watcher_of_a_connection_waits_for_the_first(people: Staff, vsphere: dict[str, Any]) -> None:
    with watcher.lease(vsphere["id"]) as first:
        assert first is True
        with watcher.lease(vsphere["id"]) as second:
            assert second is False
    with watcher.lease(vsphere["id"]) as again:
        assert again is True
