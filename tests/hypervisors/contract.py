"""The one contract every hypervisor adapter keeps, written once and run against each backend.

A backend's test module subclasses :class:`AdapterContract` (``class TestSimulatorContract(
AdapterContract)``) and provides these fixtures, either as methods of the subclass or at module /
conftest level (the contract never defines fixtures under these names, so yours always win):

Required
    ``adapter``
        A :class:`~hypervisors.base.HypervisorAdapter` that works. Any scope: it may be fresh per
        test or a shared, long-lived one (e.g. a session-wide vcsim); the suite names every VM it
        creates uniquely (uuid) and deletes them afterwards.
    ``template_ref``
        ``str``: the ref of a template that clones fine on that adapter.
    ``failing_clone_spec``
        A :class:`~hypervisors.base.CloneSpec` whose clone TASK this backend fails for real (a full
        datastore, a storage the node rejects, ...) so that ``clone`` raises ``TaskFailed``. Give
        it a unique marker per test (uuid); the suite checks no VM with that marker remains.

    ``unreachable_adapter``
        An adapter pointed at something that does not answer (e.g. a closed loopback port).

Optional (a default is used)
    ``clone_spec_factory``
        ``Callable[..., CloneSpec]``, called with keyword fields ``name``, ``marker``,
        ``template_ref``, ``vcpus``, ``memory_mib`` (and whatever a test overrides); returns the
        CloneSpec to use, adding what the backend needs (``network``, ``placement``, ``ip``...).
        Default: ``CloneSpec(**fields)``.
    ``unknown_ref``
        ``str``: a well-formed ref of a VM that does not exist. Default: a fresh uuid4 string.
    ``missing_template_ref``
        ``str``: a well-formed ref of a template that does not exist. Default: a fresh uuid4 string.

Expectations are the same for every backend; where the contract lets a backend opt out, the test
reads ``adapter.capabilities`` (guest power, web block) rather than the backend's name.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from hypervisors.base import (
    CloneSpec,
    HypervisorAdapter,
    HypervisorError,
    NotFound,
    NotSupported,
    PowerAction,
    PowerState,
    Retriable,
    TaskFailed,
    Unreachable,
    VMInfo,
)

CONTRACT_VCPUS = 2
CONTRACT_MEMORY_MIB = 1024


def _optional_fixture(request: pytest.FixtureRequest, name: str) -> Any:
    """The value of fixture ``name`` if the backend defines one, else None."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return None


def _unique_suffix() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class ContractVMs:
    """Creates VMs for one test and deletes them afterwards, whatever the test's outcome."""

    adapter: HypervisorAdapter
    template_ref: str
    spec_factory: Callable[..., CloneSpec] | None
    markers: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)

    def spec(self, **overrides: Any) -> CloneSpec:
        suffix = _unique_suffix()
        fields: dict[str, Any] = {
            "name": f"contract-{suffix}",
            "marker": f"vmportal:contract:{suffix}",
            "template_ref": self.template_ref,
            "vcpus": CONTRACT_VCPUS,
            "memory_mib": CONTRACT_MEMORY_MIB,
        }
        fields.update(overrides)
        spec = self.spec_factory(**fields) if self.spec_factory else CloneSpec(**fields)
        self.markers.append(spec.marker)
        return spec

    def clone(self, spec: CloneSpec | None = None) -> VMInfo:
        spec = spec or self.spec()
        if spec.marker not in self.markers:
            self.markers.append(spec.marker)
        vm = self.adapter.clone(spec)
        self.refs.append(vm.ref)
        return vm

    def cleanup(self) -> None:
        refs = list(self.refs)
        for marker in self.markers:
            with contextlib.suppress(HypervisorError):
                found = self.adapter.find_by_marker(marker)
                if found is not None:
                    refs.append(found.ref)
        for ref in dict.fromkeys(refs):
            with contextlib.suppress(HypervisorError):
                self.adapter.delete(ref)


class AdapterContract:
    """The contract tests. Not collected by itself: subclass it as ``Test<Backend>Contract``."""

    # ---- plumbing ---------------------------------------------------------------------------

    @pytest.fixture
    def contract_vms(
        self, request: pytest.FixtureRequest, adapter: HypervisorAdapter, template_ref: str
    ) -> Iterator[ContractVMs]:
        tracker = ContractVMs(adapter, template_ref, _optional_fixture(request, "clone_spec_factory"))
        yield tracker
        tracker.cleanup()

    @pytest.fixture
    def contract_missing_ref(self, request: pytest.FixtureRequest) -> str:
        return _optional_fixture(request, "unknown_ref") or str(uuid.uuid4())

    @pytest.fixture
    def contract_missing_template_ref(self, request: pytest.FixtureRequest) -> str:
        return _optional_fixture(request, "missing_template_ref") or str(uuid.uuid4())

    @pytest.fixture
    def contract_unreachable_adapter(self, request: pytest.FixtureRequest) -> HypervisorAdapter:
        found = _optional_fixture(request, "unreachable_adapter")
        # Every backend can be pointed at a closed loopback port; not providing one is a gap in
        # the backend's test module, never a reason to skip (CI runs everything).
        assert found is not None, "this backend's test module must provide an unreachable_adapter fixture"
        return found

    @staticmethod
    def _with_marker(adapter: HypervisorAdapter, marker: str) -> list[VMInfo]:
        return [vm for vm in adapter.list_vms() if vm.marker == marker]

    # ---- connection and inventory -----------------------------------------------------------

    def test_adapter_satisfies_protocol(self, adapter: HypervisorAdapter) -> None:
        assert isinstance(adapter, HypervisorAdapter)

    def test_check_ok_with_counts(self, adapter: HypervisorAdapter, contract_vms: ContractVMs) -> None:
        contract_vms.clone()
        result = adapter.check()
        assert result.ok, result.message
        assert result.message
        assert result.template_count >= 1
        assert result.vm_count >= 1

    def test_list_templates_contains_template(self, adapter: HypervisorAdapter, template_ref: str) -> None:
        templates = {t.ref: t for t in adapter.list_templates()}
        assert template_ref in templates
        assert templates[template_ref].name

    # ---- clone ------------------------------------------------------------------------------

    def test_clone_creates_running_vm_with_requested_size(
        self, adapter: HypervisorAdapter, contract_vms: ContractVMs
    ) -> None:
        spec = contract_vms.spec()
        vm = contract_vms.clone(spec)
        assert vm.power_state is PowerState.RUNNING
        assert vm.vcpus == spec.vcpus
        assert vm.memory_mib == spec.memory_mib
        assert vm.marker == spec.marker
        assert not vm.is_template

        listed = {v.ref: v for v in adapter.list_vms()}
        assert vm.ref in listed
        assert listed[vm.ref].marker == spec.marker
        assert not listed[vm.ref].is_template

        found = adapter.find_by_marker(spec.marker)
        assert found is not None
        assert found.ref == vm.ref

        again = adapter.get_vm(vm.ref)
        assert again.ref == vm.ref
        assert again.power_state is PowerState.RUNNING

    def test_clone_is_idempotent_on_marker(
        self, adapter: HypervisorAdapter, contract_vms: ContractVMs
    ) -> None:
        spec = contract_vms.spec()
        first = contract_vms.clone(spec)
        second = contract_vms.clone(spec)
        assert second.ref == first.ref
        assert [vm.ref for vm in self._with_marker(adapter, spec.marker)] == [first.ref]

    def test_clone_retry_completes_power(self, adapter: HypervisorAdapter, contract_vms: ContractVMs) -> None:
        spec = contract_vms.spec()
        first = contract_vms.clone(spec)
        adapter.power(first.ref, PowerAction.STOP)
        again = contract_vms.clone(spec)
        assert again.ref == first.ref
        assert again.power_state is PowerState.RUNNING

    def test_find_by_unknown_marker_is_none(self, adapter: HypervisorAdapter) -> None:
        assert adapter.find_by_marker(f"vmportal:contract:absent:{_unique_suffix()}") is None

    def test_clone_from_missing_template_is_not_found(
        self, adapter: HypervisorAdapter, contract_vms: ContractVMs, contract_missing_template_ref: str
    ) -> None:
        spec = contract_vms.spec(template_ref=contract_missing_template_ref)
        with pytest.raises(NotFound):
            adapter.clone(spec)
        assert adapter.find_by_marker(spec.marker) is None

    def test_failing_clone_task_raises_and_leaves_nothing(
        self, adapter: HypervisorAdapter, contract_vms: ContractVMs, failing_clone_spec: CloneSpec
    ) -> None:
        contract_vms.markers.append(failing_clone_spec.marker)
        with pytest.raises(TaskFailed) as failure:
            adapter.clone(failing_clone_spec)
        assert failure.value.message
        assert adapter.find_by_marker(failing_clone_spec.marker) is None
        assert self._with_marker(adapter, failing_clone_spec.marker) == []

    # ---- power ------------------------------------------------------------------------------

    def test_power_transitions_and_idempotent_repeats(
        self, adapter: HypervisorAdapter, contract_vms: ContractVMs
    ) -> None:
        ref = contract_vms.clone().ref

        assert adapter.power(ref, PowerAction.STOP).power_state is PowerState.STOPPED
        assert adapter.get_vm(ref).power_state is PowerState.STOPPED
        assert adapter.power(ref, PowerAction.STOP).power_state is PowerState.STOPPED

        assert adapter.power(ref, PowerAction.START).power_state is PowerState.RUNNING
        assert adapter.get_vm(ref).power_state is PowerState.RUNNING
        assert adapter.power(ref, PowerAction.START).power_state is PowerState.RUNNING

        assert adapter.power(ref, PowerAction.RESTART).power_state is PowerState.RUNNING
        assert adapter.get_vm(ref).power_state is PowerState.RUNNING

    def test_guest_power_actions(self, adapter: HypervisorAdapter, contract_vms: ContractVMs) -> None:
        ref = contract_vms.clone().ref
        if not adapter.capabilities.guest_power:
            with pytest.raises(NotSupported):
                adapter.power(ref, PowerAction.REBOOT)
            return
        assert adapter.power(ref, PowerAction.REBOOT).power_state is PowerState.RUNNING
        assert adapter.power(ref, PowerAction.SHUTDOWN).power_state is PowerState.STOPPED
        assert adapter.get_vm(ref).power_state is PowerState.STOPPED

    # ---- network isolation and web block -------------------------------------------------------

    def test_set_network_disconnects_and_restores_every_nic(
        self, adapter: HypervisorAdapter, contract_vms: ContractVMs
    ) -> None:
        vm = contract_vms.clone()
        assert vm.nics, "a cloned VM needs at least one NIC for the isolation contract"
        assert vm.network_connected

        cut = adapter.set_network(vm.ref, False)
        assert cut.nics
        assert all(not n.connected and not n.start_connected for n in cut.nics)
        assert not cut.network_connected
        reread = adapter.get_vm(vm.ref)
        assert all(not n.connected and not n.start_connected for n in reread.nics)

        # Disconnecting a disconnected VM is a no-op, not an error.
        assert not adapter.set_network(vm.ref, False).network_connected

        restored = adapter.set_network(vm.ref, True)
        assert all(n.connected and n.start_connected for n in restored.nics)
        assert restored.network_connected
        assert adapter.get_vm(vm.ref).network_connected

    def test_web_block_follows_capability(
        self, adapter: HypervisorAdapter, contract_vms: ContractVMs
    ) -> None:
        ref = contract_vms.clone().ref
        if not adapter.capabilities.web_block:
            with pytest.raises(NotSupported):
                adapter.set_web_block(ref, True)
            return
        assert adapter.set_web_block(ref, True).web_blocked
        assert adapter.get_vm(ref).web_blocked
        assert not adapter.set_web_block(ref, False).web_blocked
        assert not adapter.get_vm(ref).web_blocked

    # ---- unknown refs and delete ------------------------------------------------------------

    def test_get_vm_unknown_is_not_found(self, adapter: HypervisorAdapter, contract_missing_ref: str) -> None:
        with pytest.raises(NotFound):
            adapter.get_vm(contract_missing_ref)

    def test_power_unknown_is_not_found(self, adapter: HypervisorAdapter, contract_missing_ref: str) -> None:
        with pytest.raises(NotFound):
            adapter.power(contract_missing_ref, PowerAction.START)

    def test_set_network_unknown_is_not_found(
        self, adapter: HypervisorAdapter, contract_missing_ref: str
    ) -> None:
        with pytest.raises(NotFound):
            adapter.set_network(contract_missing_ref, False)

    def test_delete_unknown_succeeds(self, adapter: HypervisorAdapter, contract_missing_ref: str) -> None:
        adapter.delete(contract_missing_ref)

    def test_delete_removes_vm(self, adapter: HypervisorAdapter, contract_vms: ContractVMs) -> None:
        spec = contract_vms.spec()
        ref = contract_vms.clone(spec).ref
        adapter.delete(ref)
        with pytest.raises(NotFound):
            adapter.get_vm(ref)
        assert adapter.find_by_marker(spec.marker) is None
        assert ref not in {vm.ref for vm in adapter.list_vms()}
        adapter.delete(ref)  # a second delete is a no-op

    # ---- unreachable ------------------------------------------------------------------------

    def test_unreachable_check_reports_not_ok(self, contract_unreachable_adapter: HypervisorAdapter) -> None:
        result = contract_unreachable_adapter.check()
        assert not result.ok
        assert result.message

    def test_unreachable_list_vms_raises_unreachable(
        self, contract_unreachable_adapter: HypervisorAdapter
    ) -> None:
        with pytest.raises(Unreachable) as failure:
            contract_unreachable_adapter.list_vms()
        assert isinstance(failure.value, Retriable)
