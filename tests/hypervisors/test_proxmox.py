"""Proxmox-specific behaviour of the adapter: errors, TLS, firewall, NIC rewriting, cloud-init.

The shared contract lives in ``test_contract_proxmox.py``; this module covers what only a Proxmox
adapter has to get right, against the same schema-checking double.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from hypervisors.base import (
    AuthFailed,
    CloneSpec,
    InvalidSpec,
    IPSettings,
    NotFound,
    NotSupported,
    PowerAction,
    PowerState,
    Retriable,
    TaskFailed,
    TLSFailed,
    Unreachable,
)
from hypervisors.proxmox import WEB_BLOCK_COMMENT, WEB_BLOCK_TAG, ProxmoxAdapter
from hypervisors.registry import create

# The fixtures arrive as a plugin (so pytest rewrites the double's asserts); importing the module
# here at runtime would load it before that and lose the rewrite.

if TYPE_CHECKING:
    from tests.support.proxmox_double import LoggedRequest, ProxmoxDouble


def adapter_for(double: ProxmoxDouble, **overrides: Any) -> ProxmoxAdapter:
    adapter = create(double.connection_config(**overrides))
    assert isinstance(adapter, ProxmoxAdapter)
    return adapter


@pytest.fixture
def adapter(proxmox_double: ProxmoxDouble) -> Iterator[ProxmoxAdapter]:
    adapter = adapter_for(proxmox_double)
    yield adapter
    adapter.close()
    proxmox_double.assert_all_valid()


def sent(double: ProxmoxDouble, method: str, template: str) -> list[LoggedRequest]:
    return [r for r in double.requests if r.method == method and r.template == template]


def spec(**overrides: Any) -> CloneSpec:
    fields: dict[str, Any] = {
        "name": "jwc-oa-01",
        "template_ref": "pve1/9000",
        "marker": "vmportal:request:42",
        "vcpus": 4,
        "memory_mib": 4096,
    }
    fields.update(overrides)
    return CloneSpec(**fields)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---- connection, authentication, TLS ------------------------------------------------------


def test_wrong_token_is_auth_failed(proxmox_double: ProxmoxDouble) -> None:
    adapter = adapter_for(proxmox_double, secret="00000000-0000-0000-0000-000000000000")
    with pytest.raises(AuthFailed):
        adapter.list_vms()
    check = adapter.check()
    assert not check.ok
    assert "token" in check.message
    assert "00000000" not in check.message  # the secret never reaches a message


def test_unknown_token_user_is_auth_failed(proxmox_double: ProxmoxDouble) -> None:
    with pytest.raises(AuthFailed):
        adapter_for(proxmox_double, token_id="root@pam!stolen").get_vm("pve1/100")


def test_unreachable_is_retriable(proxmox_double: ProxmoxDouble) -> None:
    adapter = adapter_for(proxmox_double, url=f"https://127.0.0.1:{closed_port()}", timeout=2.0)
    with pytest.raises(Unreachable) as failure:
        adapter.get_vm("pve1/100")
    assert isinstance(failure.value, Retriable)
    assert not adapter.check().ok


def test_node_going_down_and_coming_back(proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter) -> None:
    assert adapter.get_vm("pve1/100").name == "legacy-web"
    proxmox_double.stop()
    with pytest.raises(Unreachable):
        adapter.get_vm("pve1/100")
    proxmox_double.start()
    assert adapter.get_vm("pve1/100").name == "legacy-web"  # same adapter, new connection


def test_silent_node_times_out_as_unreachable(proxmox_double: ProxmoxDouble) -> None:
    # Accepts the TCP connection and never answers: a hung pveproxy.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        adapter = adapter_for(proxmox_double, url=f"https://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        with pytest.raises(Unreachable):
            adapter.list_vms()


def test_self_signed_certificate_refused_when_verifying(proxmox_double: ProxmoxDouble) -> None:
    adapter = adapter_for(proxmox_double, ca_file=None, verify_tls=True)
    with pytest.raises(TLSFailed) as failure:
        adapter.list_vms()
    assert "system trust store" in failure.value.message
    check = adapter.check()
    assert not check.ok
    assert "TLS" in check.message


def test_certificate_trusted_through_ca_file(proxmox_double: ProxmoxDouble) -> None:
    assert proxmox_double.ca_file
    check = adapter_for(proxmox_double, ca_file=proxmox_double.ca_file, verify_tls=True).check()
    assert check.ok, check.message
    assert (check.product, check.version, check.vm_count, check.template_count) == (
        "Proxmox VE",
        "9.1.3",
        1,
        2,
    )


def test_verification_can_be_turned_off(proxmox_double: ProxmoxDouble) -> None:
    assert adapter_for(proxmox_double, ca_file=None, verify_tls=False).check().ok


@pytest.mark.parametrize(
    "form", ["{host}:{port}", "https://{host}:{port}/", "https://{host}:{port}/api2/json"]
)
def test_url_forms(proxmox_double: ProxmoxDouble, form: str) -> None:
    url = form.format(host="127.0.0.1", port=proxmox_double.port)
    assert adapter_for(proxmox_double, url=url).check().ok


def test_plain_http_url_is_refused(proxmox_double: ProxmoxDouble) -> None:
    with pytest.raises(InvalidSpec):
        adapter_for(proxmox_double, url="http://127.0.0.1:8006")


def test_ticket_login_with_username_and_password(proxmox_double: ProxmoxDouble) -> None:
    adapter = adapter_for(proxmox_double, token_id="", username="root@pam", secret=proxmox_double.password)
    assert adapter.power("pve1/100", PowerAction.STOP).power_state is PowerState.STOPPED  # CSRF on POST
    wrong = adapter_for(proxmox_double, token_id="", username="root@pam", secret="guess")
    with pytest.raises(AuthFailed):
        wrong.list_vms()


# ---- inventory ----------------------------------------------------------------------------


def test_inventory_reads_config_for_nics_and_disks(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    vms = {vm.ref: vm for vm in adapter.list_vms()}
    legacy = vms["pve1/100"]
    assert legacy.power_state is PowerState.RUNNING
    assert (legacy.vcpus, legacy.memory_mib, legacy.disk_gib) == (4, 8192, 132)
    assert [(n.key, n.network, n.mac) for n in legacy.nics] == [
        ("net0", "vmbr0", "BC:24:11:00:01:00"),
        ("net1", "vmbr1", "BC:24:11:00:01:01"),
    ]
    assert legacy.ips == ("10.20.0.10",)
    assert vms["pve1/9000"].is_template
    assert [d.key for d in vms["pve1/9000"].disks] == ["scsi0"]  # the cloud-init drive is no disk
    assert len(sent(proxmox_double, "GET", "/cluster/resources")) == 1


def test_vm_added_behind_the_portals_back_shows_up(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    vmid = proxmox_double.add_vm("shadow-box", node="pve2", status="running")
    proxmox_double.set_power_state(100, "paused")
    vms = {vm.ref: vm for vm in adapter.list_vms()}
    assert vms[f"pve2/{vmid}"].name == "shadow-box"
    assert adapter.get_vm("pve1/100").power_state is PowerState.SUSPENDED


def test_stale_node_in_ref_is_followed(adapter: ProxmoxAdapter) -> None:
    # The VM "migrated": its vmid is cluster-wide, so the adapter finds it on its new node.
    assert adapter.get_vm("pve2/100").ref == "pve1/100"
    with pytest.raises(NotFound):
        adapter.get_vm("pve9/4242")
    with pytest.raises(NotFound):
        adapter.get_vm("not-a-ref")


def test_templates_listed_with_sizes(adapter: ProxmoxAdapter) -> None:
    templates = {t.ref: t for t in adapter.list_templates()}
    assert set(templates) == {"pve1/9000", "pve2/9001"}
    assert (templates["pve1/9000"].vcpus, templates["pve1/9000"].memory_mib) == (2, 2048)
    assert templates["pve2/9001"].disk_gib == 20


# ---- clone --------------------------------------------------------------------------------


def test_clone_sends_cloud_init_sizes_and_marker(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    vm = adapter.clone(
        spec(
            disk_gib=40,
            ip=IPSettings("10.30.1.5", 24, "10.30.1.1", ("10.0.0.53", "10.0.0.54")),
            admin_user="nicadmin",
            admin_password="S3cret!pw",
        )
    )
    (clone,) = sent(proxmox_double, "POST", "/nodes/{node}/qemu/{vmid}/clone")
    assert clone.params["full"] == "1"
    assert clone.params["target"] == "pve1"
    assert clone.params["storage"] == "local-lvm"
    assert "vmportal-marker: vmportal:request:42" in clone.params["description"]

    (configure,) = sent(proxmox_double, "POST", "/nodes/{node}/qemu/{vmid}/config")
    assert configure.params["ciuser"] == "nicadmin"
    assert configure.params["cipassword"] == "S3cret!pw"
    assert configure.params["ipconfig0"] == "ip=10.30.1.5/24,gw=10.30.1.1"
    assert configure.params["nameserver"] == "10.0.0.53 10.0.0.54"
    assert (configure.params["cores"], configure.params["sockets"], configure.params["memory"]) == (
        "4",
        "1",
        "4096",
    )
    assert "digest" in configure.params

    (resize,) = sent(proxmox_double, "PUT", "/nodes/{node}/qemu/{vmid}/resize")
    assert (resize.params["disk"], resize.params["size"]) == ("scsi0", "40G")

    vmid = int(vm.ref.split("/")[1])
    assert proxmox_double.vm(vmid).cipassword == "S3cret!pw"
    assert proxmox_double.vm(vmid).config["cipassword"] == "**********"
    assert vm.ips == ("10.30.1.5",)
    assert vm.disk_gib == 40
    assert vm.power_state is PowerState.RUNNING
    assert proxmox_double.task_types() == ["qmclone", "qmconfig", "resize", "qmstart"]


def test_clone_placement_overrides_defaults(proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter) -> None:
    vm = adapter.clone(spec(placement={"node": "pve2"}, network="vmbr1", power_on=False))
    assert vm.ref.startswith("pve2/")
    assert vm.power_state is PowerState.STOPPED
    assert vm.nics[0].network == "vmbr1"
    config = proxmox_double.vm(int(vm.ref.split("/")[1])).config
    assert config["net0"].endswith(",bridge=vmbr1,firewall=1")  # only the bridge changed


def test_clone_smaller_disk_than_template_is_invalid(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    with pytest.raises(InvalidSpec) as failure:
        adapter.clone(spec(disk_gib=5))
    assert "disk_gib" in failure.value.detail["errors"]
    assert not sent(proxmox_double, "POST", "/nodes/{node}/qemu/{vmid}/clone")


def test_clone_name_must_be_a_dns_name(proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter) -> None:
    with pytest.raises(InvalidSpec) as failure:
        adapter.clone(spec(name="教务处 OA"))
    assert "name" in failure.value.detail["errors"]
    assert proxmox_double.requests == []  # refused before anything was sent


def test_parameter_refusal_becomes_invalid_spec_naming_the_field(proxmox_double: ProxmoxDouble) -> None:
    adapter = adapter_for(proxmox_double, defaults={"storage": "bad storage!"})
    with pytest.raises(InvalidSpec) as failure:
        adapter.clone(spec())
    assert "storage" in failure.value.message
    assert set(failure.value.detail["errors"]) == {"storage"}
    proxmox_double.clear_log()  # this test provoked the 400 on purpose


def test_failing_clone_task_raises_with_exit_status_and_cleans_up(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    proxmox_double.fail_clones_of(9000, "clone failed: rbd error: rbd: listing images failed")
    before = set(proxmox_double.vms)
    with pytest.raises(TaskFailed) as failure:
        adapter.clone(spec())
    assert "rbd: listing images failed" in failure.value.message
    assert set(proxmox_double.vms) == before  # the half-made VM the node left behind is gone
    assert adapter.find_by_marker("vmportal:request:42") is None


def test_failing_task_is_task_failed_with_exit_status(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    proxmox_double.set_power_state(100, "stopped")
    proxmox_double.fail_next_task("qmstart", "start failed: QEMU exited with code 1")
    with pytest.raises(TaskFailed) as failure:
        adapter.power("pve1/100", PowerAction.START)
    assert failure.value.message.endswith("start failed: QEMU exited with code 1")


def test_wait_task_reports_failure_and_times_out(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    proxmox_double.fail_next_task("qmstop", "VM quit/powerdown failed")
    upid = adapter._api.post("nodes/pve1/qemu/100/status/stop", "stop")
    result = adapter.wait_task(upid)
    assert (result.ok, result.message, result.task_ref) == (False, "VM quit/powerdown failed", upid)

    proxmox_double.task_delay = 30
    upid = adapter._api.post("nodes/pve1/qemu/100/status/stop", "stop")
    with pytest.raises(Retriable):
        adapter.wait_task(upid, timeout=0.2)


def test_retry_while_first_clone_still_copies_does_not_clone_twice(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    # The first attempt's worker died after PVE accepted the clone; the disks are still copying,
    # so the new VM holds only the clone lock and no marker yet.
    proxmox_double.task_delay = 0.5
    first = adapter._api.post(
        "nodes/pve1/qemu/9000/clone",
        "clone",
        newid=500,
        name="jwc-oa-01",
        full=1,
        target="pve1",
        description="vmportal-marker: vmportal:request:42",
    )
    assert proxmox_double.vm(500).config == {"lock": "clone"}
    proxmox_double.task_delay = 0.02
    vm = adapter.clone(spec())
    assert vm.ref == "pve1/500"
    assert proxmox_double.task_types().count("qmclone") == 1
    assert first in proxmox_double.tasks


def test_clone_retry_after_half_done_customisation(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    proxmox_double.fail_next_task("resize", "resize failed: storage busy")
    with pytest.raises(TaskFailed):
        adapter.clone(spec(disk_gib=30))
    vm = adapter.clone(spec(disk_gib=30))  # the retry finds the VM and finishes it
    assert vm.disk_gib == 30
    assert vm.power_state is PowerState.RUNNING
    assert proxmox_double.task_types().count("qmclone") == 1


# ---- power and delete ---------------------------------------------------------------------


def test_power_endpoints(proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter) -> None:
    adapter.power("pve1/100", PowerAction.RESTART)
    adapter.power("pve1/100", PowerAction.REBOOT)
    adapter.power("pve1/100", PowerAction.SHUTDOWN)
    adapter.power("pve1/100", PowerAction.SHUTDOWN)  # already off: nothing sent
    adapter.power("pve1/100", PowerAction.START)
    assert proxmox_double.task_types() == ["qmreset", "qmreboot", "qmshutdown", "qmstart"]
    proxmox_double.set_power_state(100, "paused")
    assert adapter.power("pve1/100", PowerAction.START).power_state is PowerState.RUNNING
    assert proxmox_double.task_types()[-1] == "qmresume"  # "start" refuses a paused VM


def test_restart_of_stopped_vm_is_refused(proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter) -> None:
    proxmox_double.set_power_state(100, "stopped")
    with pytest.raises(InvalidSpec):
        adapter.power("pve1/100", PowerAction.RESTART)


def test_delete_stops_then_purges(proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter) -> None:
    adapter.delete("pve1/100")
    assert 100 not in proxmox_double.vms
    assert proxmox_double.task_types() == ["qmstop", "qmdestroy"]
    (destroy,) = sent(proxmox_double, "DELETE", "/nodes/{node}/qemu/{vmid}")
    assert destroy.params == {"purge": "1", "destroy-unreferenced-disks": "1"}
    adapter.delete("pve1/100")  # gone already: fine


# ---- network cut --------------------------------------------------------------------------


def test_link_down_on_every_nic_keeps_the_rest(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    original = {k: proxmox_double.vm(100).config[k] for k in ("net0", "net1")}
    cut = adapter.set_network("pve1/100", False)
    assert not cut.network_connected
    config = proxmox_double.vm(100).config
    assert config["net0"] == original["net0"] + ",link_down=1"
    assert config["net1"] == original["net1"] + ",link_down=1"  # VLAN tag and MTU untouched
    (write,) = sent(proxmox_double, "POST", "/nodes/{node}/qemu/{vmid}/config")
    assert set(write.params) == {"net0", "net1", "digest"}

    adapter.set_network("pve1/100", False)  # no-op: nothing more written
    assert len(sent(proxmox_double, "POST", "/nodes/{node}/qemu/{vmid}/config")) == 1

    assert adapter.set_network("pve1/100", True).network_connected
    assert {k: proxmox_double.vm(100).config[k] for k in ("net0", "net1")} == original


def test_concurrent_config_edit_is_retriable(proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter) -> None:
    # Someone edits the VM between our read and our write: PVE refuses the stale digest.
    original = adapter._inventory.vm_config

    def read_then_meddle(node: str, vmid: int) -> dict[str, Any]:
        config = original(node, vmid)
        proxmox_double.vm(vmid).config["cores"] = 8
        return config

    adapter._inventory.vm_config = read_then_meddle  # type: ignore[method-assign]
    with pytest.raises(Retriable):
        adapter.set_network("pve1/100", False)
    assert "link_down" not in proxmox_double.vm(100).config["net0"]


# ---- web block ----------------------------------------------------------------------------


def test_web_block_adds_then_removes_exactly_its_rules(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    vm = proxmox_double.vm(100)
    operator_rule = {
        "type": "in",
        "action": "ACCEPT",
        "proto": "tcp",
        "dport": "22",
        "enable": 1,
        "comment": "ssh",
    }
    vm.firewall_rules.append(dict(operator_rule))
    before_config = dict(vm.config)
    before_options = dict(vm.firewall_options)  # firewall off: VM default policy would be DROP

    blocked = adapter.set_web_block("pve1/100", True)
    assert blocked.web_blocked
    assert proxmox_double.web_blocked(100)
    ours = [r for r in vm.firewall_rules if r.get("comment", "").startswith(WEB_BLOCK_COMMENT)]
    assert sorted(r["dport"] for r in ours) == ["443", "80"]
    assert all((r["type"], r["action"], r["proto"], r["enable"]) == ("in", "DROP", "tcp", 1) for r in ours)
    assert vm.firewall_rules[-1] == operator_rule  # ours sit above it, first match wins
    assert vm.firewall_options == {"enable": 1, "policy_in": "ACCEPT"}  # only the web, not everything
    assert vm.config["net1"] == before_config["net1"] + ",firewall=1"  # NIC filtered now
    assert WEB_BLOCK_TAG in vm.config["tags"]
    assert {v.ref: v for v in adapter.list_vms()}["pve1/100"].web_blocked

    adapter.set_web_block("pve1/100", True)  # idempotent: no duplicate rules
    assert len(vm.firewall_rules) == 3

    unblocked = adapter.set_web_block("pve1/100", False)
    assert not unblocked.web_blocked
    assert not proxmox_double.web_blocked(100)
    assert vm.firewall_rules == [operator_rule]
    assert {k: v for k, v in vm.firewall_options.items() if k != "enable"} == before_options
    assert not vm.firewall_options.get("enable")
    assert {k: v for k, v in vm.config.items() if k != "digest"} == before_config
    assert not {v.ref: v for v in adapter.list_vms()}["pve1/100"].web_blocked


def test_web_block_keeps_an_enabled_firewall_as_it_was(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    vm = proxmox_double.vm(100)
    vm.firewall_options.update(enable=1, policy_in="DROP")
    adapter.set_web_block("pve1/100", True)
    assert vm.firewall_options == {"enable": 1, "policy_in": "DROP"}
    adapter.set_web_block("pve1/100", False)
    assert vm.firewall_options == {"enable": 1, "policy_in": "DROP"}
    assert vm.firewall_rules == []


def test_web_block_refused_when_datacenter_firewall_is_off(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    proxmox_double.cluster_firewall["enable"] = 0
    with pytest.raises(NotSupported):
        adapter.set_web_block("pve1/100", True)
    assert proxmox_double.vm(100).firewall_rules == []


def test_web_block_rules_removed_by_hand_are_reported(
    proxmox_double: ProxmoxDouble, adapter: ProxmoxAdapter
) -> None:
    adapter.set_web_block("pve1/100", True)
    proxmox_double.vm(100).firewall_rules.clear()  # an operator deleted them in the GUI
    assert not adapter.get_vm("pve1/100").web_blocked  # the rules, not the tag, are the truth


def test_one_adapter_per_thread(proxmox_double: ProxmoxDouble) -> None:
    # The contract says adapters are not shared between threads; separate ones work side by side.
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            a = adapter_for(proxmox_double)
            for _ in range(5):
                a.get_vm("pve1/100")
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert time.monotonic() - started < 30
