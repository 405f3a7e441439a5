"""The adapter contract, run against the vSphere adapter talking SOAP to govmomi's vcsim."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hypervisors.base import CloneSpec, ConnectionConfig, HypervisorAdapter, HypervisorKind, IPSettings
from hypervisors.registry import create
from tests.hypervisors.contract import AdapterContract
from tests.support.vcsim import (
    LINUX_TEMPLATE,
    VcsimServer,
)

pytestmark = pytest.mark.vcsim


def _closed_loopback_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestVcsimContract(AdapterContract):
    # One adapter for the whole class: the session is reused across tests, as in a worker.
    @pytest.fixture(scope="class")
    @classmethod
    def adapter(cls, vcsim: VcsimServer) -> Iterator[HypervisorAdapter]:
        adapter = create(vcsim.config())
        yield adapter
        adapter.close()

    @pytest.fixture
    def template_ref(self, vcsim: VcsimServer) -> str:
        return vcsim.template_refs[LINUX_TEMPLATE]

    @pytest.fixture
    def clone_spec_factory(self) -> Callable[..., CloneSpec]:
        # Every contract clone carries a full guest customization (cloud-init with a password and
        # a fixed address): vcsim ignores it, but it must serialise and be accepted by CloneVM_Task.
        def factory(**fields: Any) -> CloneSpec:
            fields.setdefault("admin_user", "vmadmin")
            fields.setdefault("admin_password", "Initial-Passw0rd!")
            fields.setdefault("ip", IPSettings("10.20.30.40", 24, "10.20.30.1", ("10.20.0.53",)))
            return CloneSpec(**fields)

        return factory

    @pytest.fixture
    def failing_clone_spec(self, template_ref: str) -> CloneSpec:
        # vcsim treats a VM name ending in ".vmx" as the VM's configuration file path; the log
        # directory it derives from it is no datastore path, so CloneVM_Task itself fails
        # (InvalidDatastorePath) after the request was accepted, and leaves no VM.
        suffix = uuid.uuid4().hex[:12]
        return CloneSpec(
            name=f"contract-fail-{suffix}.vmx",
            template_ref=template_ref,
            marker=f"vmportal:contract:{suffix}",
            vcpus=2,
            memory_mib=1024,
        )

    @pytest.fixture
    def unreachable_adapter(self) -> Iterator[HypervisorAdapter]:
        adapter = create(
            ConnectionConfig(
                kind=HypervisorKind.VSPHERE,
                url=f"http://127.0.0.1:{_closed_loopback_port()}/sdk",
                username="administrator@vsphere.local",
                secret="unused",
                timeout=5.0,
            )
        )
        yield adapter
        adapter.close()
