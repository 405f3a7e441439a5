"""The adapter contract, run against the simulator (in memory and file-backed)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from hypervisors.base import CloneSpec, ConnectionConfig, HypervisorAdapter, HypervisorKind
from hypervisors.registry import create
from tests.hypervisors.contract import AdapterContract


def _config(url: str, **defaults: str) -> ConnectionConfig:
    return ConnectionConfig(kind=HypervisorKind.SIMULATOR, url=url, defaults=defaults)


class TestSimulatorContract(AdapterContract):
    @pytest.fixture(params=["memory", "file"])
    def adapter(self, request: pytest.FixtureRequest, tmp_path: Path) -> HypervisorAdapter:
        url = "simulator://memory" if request.param == "memory" else f"simulator://{tmp_path / 'state.json'}"
        return create(_config(url))

    @pytest.fixture
    def template_ref(self) -> str:
        return "tpl-rocky-9"

    @pytest.fixture
    def failing_clone_spec(self, template_ref: str) -> CloneSpec:
        # The seeded "sim-ds-full" datastore holds 10 GiB: the clone task runs out of space.
        suffix = uuid.uuid4().hex[:12]
        return CloneSpec(
            name=f"contract-full-{suffix}",
            template_ref=template_ref,
            marker=f"vmportal:contract:{suffix}",
            vcpus=2,
            memory_mib=1024,
            placement={"datastore": "sim-ds-full"},
        )

    @pytest.fixture
    def unreachable_adapter(self) -> HypervisorAdapter:
        return create(_config("simulator://memory", fail="*:unreachable:always"))


class TestSimulatorWithoutGuestPowerOrWebBlockContract(TestSimulatorContract):
    """The same contract where the hypervisor lacks both optional capabilities: the suite then
    expects NotSupported for guest actions and web blocking, as its capability checks say."""

    @pytest.fixture
    def adapter(self) -> HypervisorAdapter:
        adapter = create(_config("simulator://memory", lacks="guest_power,web_block"))
        assert not adapter.capabilities.guest_power
        assert not adapter.capabilities.web_block
        return adapter
