"""vSphere specifics the shared contract cannot express, against vcsim and pyVmomi directly."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pyVmomi import vim, vmodl

import tests.support.vcsim as vcsim_support
from hypervisors.base import (
    AuthFailed,
    CloneSpec,
    ConnectionConfig,
    HypervisorKind,
    InvalidSpec,
    IPSettings,
    NotFound,
    NotSupported,
    PowerAction,
    PowerState,
    TaskFailed,
    TLSFailed,
    Unreachable,
)
from hypervisors.registry import create
from hypervisors.vsphere import MARKER_EXTRA_CONFIG_KEY, VSphereAdapter, marker_of
from hypervisors.vsphere.customization import customization_spec
from hypervisors.vsphere.endpoint import parse_url
from tests.support.vcsim import (
    LINUX_TEMPLATE,
    WINDOWS_TEMPLATE,
    VcsimServer,
    VcsimUnavailable,
)

PC = vmodl.query.PropertyCollector


def _suffix() -> str:
    return uuid.uuid4().hex[:10]


def _spec(server: VcsimServer, **fields: Any) -> CloneSpec:
    suffix = _suffix()
    values: dict[str, Any] = {
        "name": f"vsphere-{suffix}",
        "template_ref": server.template_refs[LINUX_TEMPLATE],
        "marker": f"vmportal:test:{suffix}",
        "vcpus": 2,
        "memory_mib": 1024,
    }
    values.update(fields)
    return CloneSpec(**values)


def _raw_vm(si: Any, ref: str) -> Any:
    vm = si.content.searchIndex.FindByUuid(None, ref, True, True)
    assert vm is not None
    return vm


def _raw_props(si: Any, obj: Any, paths: list[str]) -> dict[str, Any]:
    spec = PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=obj)], propSet=[PC.PropertySpec(type=type(obj), pathSet=paths)]
    )
    result = si.content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    return {p.name: p.val for p in result.objects[0].propSet}


def _raw_vms_named(si: Any, name: str) -> list[Any]:
    view = si.content.viewManager.CreateContainerView(si.content.rootFolder, [vim.VirtualMachine], True)
    try:
        traverse = PC.TraversalSpec(name="v", type=vim.view.ContainerView, path="view", skip=False)
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
            propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])],
        )
        result = si.content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
        return [o.obj for o in result.objects if o.propSet[0].val == name]
    finally:
        view.Destroy()


@pytest.fixture
def adapter(vcsim: VcsimServer) -> Iterator[VSphereAdapter]:
    adapter = VSphereAdapter(vcsim.config())
    yield adapter
    adapter.close()


@pytest.fixture
def created(adapter: VSphereAdapter) -> Iterator[list[str]]:
    """Refs (and markers) of VMs a test created, deleted afterwards."""
    refs: list[str] = []
    yield refs
    for ref in refs:
        if ref.startswith("vmportal:"):
            found = adapter.find_by_marker(ref)
            if found is not None:
                adapter.delete(found.ref)
        else:
            adapter.delete(ref)


# --------------------------------------------------------------------------------------------
# Configuration and the harness itself (no simulator needed)
# --------------------------------------------------------------------------------------------


class TestConfiguration:
    def test_url_defaults_to_port_443_and_sdk_path(self) -> None:
        endpoint = parse_url("https://vcenter.example.edu.cn")
        assert (endpoint.scheme, endpoint.host, endpoint.port, endpoint.path) == (
            "https",
            "vcenter.example.edu.cn",
            443,
            "/sdk",
        )
        assert parse_url("http://[::1]:8989/sdk/").port == 8989

    @pytest.mark.parametrize("url", ["http://vcenter.example.edu.cn/sdk", "http://10.0.0.5:8989/sdk"])
    def test_plain_http_is_refused_for_a_real_host(self, url: str) -> None:
        with pytest.raises(InvalidSpec, match="loopback"):
            create(ConnectionConfig(kind=HypervisorKind.VSPHERE, url=url))

    @pytest.mark.parametrize("url", ["vcenter.example.edu.cn", "ftp://vcenter/sdk", "https://:443/sdk"])
    def test_malformed_url_is_invalid_spec(self, url: str) -> None:
        with pytest.raises(InvalidSpec):
            create(ConnectionConfig(kind=HypervisorKind.VSPHERE, url=url))

    def test_registry_builds_the_adapter_without_leaking_the_secret(self) -> None:
        adapter = create(
            ConnectionConfig(
                kind=HypervisorKind.VSPHERE,
                url="https://vc.example.edu.cn/sdk",
                username="u",
                secret="s3cr3t",
            )
        )
        assert isinstance(adapter, VSphereAdapter)
        assert "s3cr3t" not in repr(adapter)
        assert adapter.capabilities.web_block is False

    def test_unreadable_ca_file_is_reported(self, tmp_path: Path) -> None:
        adapter = VSphereAdapter(
            ConnectionConfig(
                kind=HypervisorKind.VSPHERE,
                url="https://127.0.0.1:1/sdk",
                ca_file=str(tmp_path / "missing.pem"),
            )
        )
        result = adapter.check()
        assert not result.ok
        assert "ca_file" in result.message

    def test_marker_lives_in_a_line_of_the_annotation(self) -> None:
        assert marker_of("vmportal-marker: vmportal:request:42\nowner: cs dept") == "vmportal:request:42"
        assert marker_of("notes only") is None
        assert marker_of(None) is None

    def test_missing_go_names_the_package(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(vcsim_support.shutil, "which", lambda _name: None)
        with pytest.raises(VcsimUnavailable, match="apt-get install golang-go"):
            vcsim_support.build_vcsim()

    def test_missing_govmomi_names_the_package(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setattr(vcsim_support, "GOVMOMI_SRC", tmp_path / "nothing")
        with pytest.raises(VcsimUnavailable, match="apt-get install golang-github-vmware-govmomi-dev"):
            vcsim_support.build_vcsim()


class TestCustomization:
    """The CustomizationSpec sent with CloneVM_Task (vcsim ignores it; vCenter does not)."""

    defaults: ClassVar[dict[str, str]] = {"domain": "example.edu.cn", "dns": "10.0.0.53"}  # the connection's

    def _customization(
        self, spec: CloneSpec, guest_id: str, nic_count: int
    ) -> vim.vm.customization.Specification | None:
        return customization_spec(spec, guest_id, nic_count, self.defaults)

    def _spec(self, **fields: Any) -> CloneSpec:
        values: dict[str, Any] = {
            "name": "web_01",
            "template_ref": str(uuid.uuid4()),
            "marker": "vmportal:request:7",
            "vcpus": 2,
            "memory_mib": 2048,
            "ip": IPSettings("10.1.2.30", 24, "10.1.2.1", ("10.1.0.53",)),
        }
        values.update(fields)
        return CloneSpec(**values)

    def test_windows_gets_sysprep_with_administrator_password_and_fixed_ip(self) -> None:
        custom = self._customization(self._spec(admin_password="Pw-1"), "windows2019srv_64Guest", 2)
        assert custom is not None
        assert isinstance(custom.identity, vim.vm.customization.Sysprep)
        password = custom.identity.guiUnattended.password
        assert password is not None
        assert password.value == "Pw-1"
        computer = custom.identity.userData.computerName
        assert isinstance(computer, vim.vm.customization.FixedName)
        assert computer.name == "web-01"
        assert len(custom.nicSettingMap) == 2  # one mapping per NIC, or vCenter refuses
        first = custom.nicSettingMap[0].adapter
        assert isinstance(first.ip, vim.vm.customization.FixedIp)
        assert first.ip.ipAddress == "10.1.2.30"
        assert first.subnetMask == "255.255.255.0"
        assert first.gateway == ["10.1.2.1"]
        assert isinstance(custom.nicSettingMap[1].adapter.ip, vim.vm.customization.DhcpIpGenerator)

    def test_windows_admin_must_be_administrator(self) -> None:
        with pytest.raises(InvalidSpec, match="Administrator"):
            self._customization(self._spec(admin_user="root", admin_password="x"), "windows9Guest", 1)

    def test_linux_password_goes_through_cloud_init(self) -> None:
        custom = self._customization(
            self._spec(admin_user="vmadmin", admin_password="Pw-2"), "debian12_64Guest", 1
        )
        assert custom is not None
        assert isinstance(custom.identity, vim.vm.customization.CloudinitPrep)
        metadata = json.loads(custom.identity.metadata)
        assert metadata["local-hostname"] == "web-01"  # "_" is no host name character
        assert metadata["network"]["ethernets"]["nic0"]["addresses"] == ["10.1.2.30/24"]
        userdata = custom.identity.userdata
        assert userdata is not None
        assert userdata.startswith("#cloud-config\n")
        config = json.loads(userdata.split("\n", 1)[1])
        assert config["chpasswd"]["users"] == [{"name": "vmadmin", "password": "Pw-2", "type": "text"}]

    def test_linux_without_password_uses_linuxprep(self) -> None:
        custom = self._customization(self._spec(hostname="db1"), "rhel9_64Guest", 1)
        assert custom is not None
        assert isinstance(custom.identity, vim.vm.customization.LinuxPrep)
        hostname = custom.identity.hostName
        assert isinstance(hostname, vim.vm.customization.FixedName)
        assert hostname.name == "db1"
        assert custom.identity.domain == "example.edu.cn"

    def test_nothing_to_customise_sends_no_spec(self) -> None:
        assert self._customization(self._spec(ip=None), "debian12_64Guest", 1) is None

    def test_gateway_outside_the_subnet_is_invalid(self) -> None:
        with pytest.raises(InvalidSpec, match="outside"):
            self._customization(self._spec(ip=IPSettings("10.1.2.30", 24, "10.9.9.1")), "debian12_64Guest", 1)


# --------------------------------------------------------------------------------------------
# Against vcsim
# --------------------------------------------------------------------------------------------


@pytest.mark.vcsim
class TestInventory:
    def test_small_pages_still_return_every_vm(
        self,
        vcsim: VcsimServer,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        continued: list[str] = []
        original = PC.ContinueRetrievePropertiesEx

        def spy(collector: Any, token: str) -> Any:
            continued.append(token)
            return original(collector, token=token)

        monkeypatch.setattr(PC, "ContinueRetrievePropertiesEx", spy)
        paged = VSphereAdapter(vcsim.config(), page_size=2)
        whole = VSphereAdapter(vcsim.config(), page_size=10_000)
        try:
            small = {vm.ref: vm for vm in paged.list_vms()}
            assert len(continued) >= 5  # 11 VMs and templates in pages of 2, then the names
            continued.clear()
            large = {vm.ref: vm for vm in whole.list_vms()}
        finally:
            paged.close()
            whole.close()
        assert small.keys() == large.keys()
        assert small == large
        assert sum(1 for vm in small.values() if not vm.is_template) >= vcsim.topology.expected_vms
        assert set(vcsim.template_refs.values()) <= {ref for ref, vm in small.items() if vm.is_template}

    def test_server_side_page_cap_is_followed(self, vcsim: VcsimServer) -> None:
        capped = vcsim.spawn(page_cap=3)
        adapter = VSphereAdapter(capped.config(), page_size=1000)
        try:
            vms = adapter.list_vms()
        finally:
            adapter.close()
            capped.stop()
        assert len([vm for vm in vms if not vm.is_template]) == capped.topology.expected_vms

    def test_placement_names_come_from_the_inventory(self, adapter: VSphereAdapter) -> None:
        vms = {vm.name: vm for vm in adapter.list_vms()}
        in_cluster = vms["DC0_C1_RP0_VM0"].placement
        assert in_cluster["datacenter"] == "DC0"
        assert in_cluster["cluster"] == "DC0_C1"
        assert in_cluster["host"].startswith("DC0_C1_H")
        assert in_cluster["pool"] == "/DC0/host/DC0_C1/Resources"
        assert in_cluster["folder"] == "/DC0/vm"
        standalone = vms["DC0_H0_VM0"].placement
        assert "cluster" not in standalone
        assert standalone["host"] == "DC0_H0"
        template = vms[LINUX_TEMPLATE]
        assert template.is_template
        assert template.placement["folder"] == "/DC0/vm/Templates"
        assert template.disk_gib == 20
        assert template.nics and template.nics[0].network == "DC0_DVPG0"

    def test_templates_are_listed_with_their_size(self, adapter: VSphereAdapter, vcsim: VcsimServer) -> None:
        templates = {t.name: t for t in adapter.list_templates()}
        assert templates.keys() == {LINUX_TEMPLATE, WINDOWS_TEMPLATE}
        linux = templates[LINUX_TEMPLATE]
        assert linux.ref == vcsim.template_refs[LINUX_TEMPLATE]
        assert (linux.vcpus, linux.memory_mib, linux.disk_gib) == (2, 2048, 20)


@pytest.mark.vcsim
class TestSessions:
    def test_relogin_after_the_session_is_terminated(
        self,
        vcsim: VcsimServer,
        adapter: VSphereAdapter,
    ) -> None:
        before = len(adapter.list_vms())
        admin = vcsim.connect()
        try:
            manager = admin.content.sessionManager
            own = manager.currentSession.key
            others = [s.key for s in manager.sessionList if s.key != own]
            assert others, "the adapter's session should be listed"
            manager.Terminate(sessionId=others)
            assert all(s.key == own for s in manager.sessionList)
            assert len(adapter.list_vms()) == before  # logged in again, once, transparently
            assert len(manager.sessionList) == 2
        finally:
            admin.content.sessionManager.Logout()

    def test_wrong_password_is_auth_failed(self, vcsim: VcsimServer) -> None:
        adapter = VSphereAdapter(vcsim.config(secret="not-the-password"))
        with pytest.raises(AuthFailed, match="refused the login"):
            adapter.list_vms()
        result = adapter.check()
        assert not result.ok
        assert "refused the login" in result.message

    def test_self_signed_certificate_is_refused_then_trusted_through_ca_file(
        self,
        vcsim: VcsimServer,
    ) -> None:
        secure = vcsim.spawn(tls=True)
        try:
            assert secure.url.startswith("https://")
            untrusted = VSphereAdapter(secure.config(ca_file=None))
            with pytest.raises(TLSFailed, match="could not be verified"):
                untrusted.list_vms()
            assert not untrusted.check().ok

            trusted = VSphereAdapter(secure.config())  # ca_file = the simulator's certificate
            assert trusted.check().ok
            trusted.close()

            lab = VSphereAdapter(secure.config(ca_file=None, verify_tls=False))
            assert lab.list_vms()
            lab.close()
        finally:
            secure.stop()

    def test_stopped_simulator_is_unreachable_and_a_restart_is_picked_up(
        self,
        vcsim: VcsimServer,
    ) -> None:
        private = vcsim.spawn(clusters=1, standalone_hosts=0, vms=2)
        adapter = VSphereAdapter(private.config(timeout=5.0))
        try:
            assert len([vm for vm in adapter.list_vms() if not vm.is_template]) == 2
            private.stop()
            with pytest.raises(Unreachable):
                adapter.list_vms()
            assert not adapter.check().ok
            private.start()  # same port, fresh process: the old session cookie is unknown there
            assert len([vm for vm in adapter.list_vms() if not vm.is_template]) == 2
        finally:
            adapter.close()
            private.stop()

    def test_frozen_simulator_times_out_as_unreachable(self, vcsim: VcsimServer) -> None:
        private = vcsim.spawn(clusters=1, standalone_hosts=0, vms=1)
        adapter = VSphereAdapter(private.config(timeout=1.0))
        try:
            adapter.list_vms()
            private.pause()
            with pytest.raises(Unreachable):
                adapter.list_vms()
        finally:
            private.resume()
            adapter.close()
            private.stop()


@pytest.mark.vcsim
class TestVirtualMachines:
    def test_nic_state_read_back_with_pyvmomi(
        self,
        vcsim: VcsimServer,
        adapter: VSphereAdapter,
        created: list[str],
    ) -> None:
        vm = adapter.clone(_spec(vcsim))
        created.append(vm.ref)
        si = vcsim.connect()
        raw = _raw_vm(si, vm.ref)

        def nics() -> list[Any]:
            devices = _raw_props(si, raw, ["config.hardware.device"])["config.hardware.device"]
            return [d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)]

        adapter.set_network(vm.ref, False)
        assert nics()
        for nic in nics():
            assert nic.connectable.connected is False
            assert nic.connectable.startConnected is False
            assert nic.connectable.allowGuestControl is False  # the guest cannot undo the isolation

        adapter.set_network(vm.ref, True)
        for nic in nics():
            assert nic.connectable.connected is True
            assert nic.connectable.startConnected is True
        si.content.sessionManager.Logout()

    def test_network_cut_answers_the_nics_as_the_vm_reads_back(
        self, vcsim: VcsimServer, adapter: VSphereAdapter, created: list[str]
    ) -> None:
        # What the network page and the containment show after a cut: every NIC with its port group
        # named, its MAC and its state, exactly as a full read of the VM reports them.
        vm = adapter.clone(_spec(vcsim))
        created.append(vm.ref)
        cut = adapter.set_network(vm.ref, False)
        reread = adapter.get_vm(vm.ref)
        assert cut.nics and all(n.network for n in cut.nics)
        assert cut.nics == reread.nics
        assert (cut.name, cut.power_state, cut.ips, cut.disks) == (
            reread.name,
            reread.power_state,
            reread.ips,
            reread.disks,
        )

    def test_stopped_vm_stays_isolated_by_start_connected(
        self,
        vcsim: VcsimServer,
        adapter: VSphereAdapter,
        created: list[str],
    ) -> None:
        vm = adapter.clone(_spec(vcsim, power_on=False))
        created.append(vm.ref)
        assert vm.power_state is PowerState.STOPPED
        assert vm.network_connected
        cut = adapter.set_network(vm.ref, False)
        assert not cut.network_connected
        started = adapter.power(vm.ref, PowerAction.START)
        assert started.power_state is PowerState.RUNNING
        assert not started.network_connected

    def test_missing_template_is_not_found(self, vcsim: VcsimServer, adapter: VSphereAdapter) -> None:
        spec = _spec(vcsim, template_ref=str(uuid.uuid4()))
        with pytest.raises(NotFound, match="template"):
            adapter.clone(spec)
        with pytest.raises(NotFound):
            adapter.get_vm("not-a-uuid")

    def test_a_vm_is_not_a_template(self, adapter: VSphereAdapter, vcsim: VcsimServer) -> None:
        model_vm = next(vm for vm in adapter.list_vms() if not vm.is_template)
        with pytest.raises(InvalidSpec, match="not a template"):
            adapter.clone(_spec(vcsim, template_ref=model_vm.ref))

    def test_templates_are_never_powered_or_deleted(
        self, vcsim: VcsimServer, adapter: VSphereAdapter
    ) -> None:
        ref = vcsim.template_refs[LINUX_TEMPLATE]
        with pytest.raises(InvalidSpec):
            adapter.power(ref, PowerAction.START)
        with pytest.raises(InvalidSpec):
            adapter.delete(ref)
        assert adapter.get_vm(ref).is_template

    def test_clone_retried_after_a_crash_finds_the_same_vm(
        self,
        vcsim: VcsimServer,
        adapter: VSphereAdapter,
        created: list[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        spec = _spec(vcsim, vcpus=3, memory_mib=3072, disk_gib=25)
        created.append(spec.marker)

        class Crash(Exception):
            pass

        def die(*_args: Any, **_kwargs: Any) -> Any:
            raise Crash("worker killed after CloneVM_Task succeeded")

        # The clone task completes, then the worker dies before anything else happens.
        monkeypatch.setattr(adapter._provisioning, "complete", die)
        with pytest.raises(Crash):
            adapter.clone(spec)
        monkeypatch.undo()

        si = vcsim.connect()
        (raw,) = _raw_vms_named(si, spec.name)
        values = _raw_props(si, raw, ["config.extraConfig", "runtime.powerState"])
        extra = {o.key: o.value for o in values["config.extraConfig"]}
        assert extra[MARKER_EXTRA_CONFIG_KEY] == spec.marker
        assert values["runtime.powerState"] == "poweredOff"

        retry = VSphereAdapter(vcsim.config())  # a fresh worker
        try:
            vm = retry.clone(spec)
        finally:
            retry.close()
        assert _raw_vms_named(si, spec.name) == [raw]  # no second VM
        assert vm.extra["moref"] == raw._moId
        assert vm.marker == spec.marker
        assert (vm.vcpus, vm.memory_mib, vm.disk_gib) == (3, 3072, 25)
        assert vm.power_state is PowerState.RUNNING
        assert adapter.find_by_marker(spec.marker) == vm
        si.content.sessionManager.Logout()

    def test_name_taken_by_another_request_is_refused(
        self,
        vcsim: VcsimServer,
        adapter: VSphereAdapter,
        created: list[str],
    ) -> None:
        first = adapter.clone(_spec(vcsim))
        created.append(first.ref)
        other = _spec(vcsim, name=first.name)
        with pytest.raises(InvalidSpec, match="already exists"):
            adapter.clone(other)
        assert adapter.find_by_marker(other.marker) is None

    def test_placement_and_network_overrides(
        self,
        vcsim: VcsimServer,
        adapter: VSphereAdapter,
        created: list[str],
    ) -> None:
        spec = _spec(
            vcsim,
            network="VM Network",
            placement={"cluster": "DC0_C1", "datastore": "LocalDS_0", "folder": "/DC0/vm"},
        )
        vm = adapter.clone(spec)
        created.append(vm.ref)
        assert vm.placement["cluster"] == "DC0_C1"
        assert vm.placement["pool"] == "/DC0/host/DC0_C1/Resources"
        assert vm.nics[0].network == "VM Network"

    def test_unknown_placement_fails_before_cloning(
        self, vcsim: VcsimServer, adapter: VSphereAdapter
    ) -> None:
        spec = _spec(vcsim, placement={"datastore": "no-such-datastore"})
        with pytest.raises(NotFound, match="datastore"):
            adapter.clone(spec)
        assert adapter.find_by_marker(spec.marker) is None

    def test_disk_cannot_shrink(self, vcsim: VcsimServer, adapter: VSphereAdapter) -> None:
        with pytest.raises(InvalidSpec, match="only grow"):
            adapter.clone(_spec(vcsim, disk_gib=10))

    def test_guest_reboot_of_a_stopped_vm_fails(
        self,
        vcsim: VcsimServer,
        adapter: VSphereAdapter,
        created: list[str],
    ) -> None:
        vm = adapter.clone(_spec(vcsim, power_on=False))
        created.append(vm.ref)
        with pytest.raises(TaskFailed, match="stopped"):
            adapter.power(vm.ref, PowerAction.REBOOT)
        assert adapter.power(vm.ref, PowerAction.SHUTDOWN).power_state is PowerState.STOPPED

    def test_web_block_is_not_supported(self, vcsim: VcsimServer, adapter: VSphereAdapter) -> None:
        with pytest.raises(NotSupported):
            adapter.set_web_block(vcsim.template_refs[LINUX_TEMPLATE], True)

    def test_wait_task_reports_result_and_fault(
        self,
        vcsim: VcsimServer,
        adapter: VSphereAdapter,
        created: list[str],
    ) -> None:
        vm = adapter.clone(_spec(vcsim))
        created.append(vm.ref)
        si = vcsim.connect()
        raw = _raw_vm(si, vm.ref)
        done = adapter.wait_task(raw.PowerOff()._moId, timeout=30)
        assert done.ok
        failed = adapter.wait_task(raw.PowerOff()._moId, timeout=30)  # already off
        assert not failed.ok
        assert "InvalidPowerState" in failed.message
        with pytest.raises(NotFound):
            adapter.wait_task("task-does-not-exist")
        si.content.sessionManager.Logout()


@pytest.mark.vcsim
def test_a_url_that_is_no_sdk_endpoint_is_reported(vcsim: VcsimServer) -> None:
    adapter = VSphereAdapter(vcsim.config(url=vcsim.url.replace("/sdk", "/not-the-sdk")))
    with pytest.raises(Unreachable, match="not a vSphere SDK endpoint"):
        adapter.list_vms()
    assert "check the URL" in adapter.check().message
