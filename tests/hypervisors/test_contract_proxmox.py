"""The adapter contract, run against the Proxmox adapter talking HTTPS to the schema-checking double.

Besides the contract's own assertions, every test ends by checking that the double refused nothing
the adapter sent as malformed: a request a real PVE 9.1.3 node would answer with 400/501 is a bug
even when the adapter happened to cope with the refusal.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from hypervisors.base import CloneSpec, HypervisorAdapter, IPSettings
from hypervisors.registry import create
from tests.hypervisors.contract import AdapterContract

# The fixtures arrive as a plugin (so pytest rewrites the double's asserts); importing the module
# here at runtime would load it before that and lose the rewrite.

if TYPE_CHECKING:
    from tests.support.proxmox_double import ProxmoxDouble


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestProxmoxContract(AdapterContract):
    @pytest.fixture(autouse=True)
    def _schema_clean(self, proxmox_double: ProxmoxDouble) -> Iterator[None]:
        # Autouse, so it is set up first and torn down last: the contract's cleanup is checked too.
        yield
        proxmox_double.assert_all_valid()

    @pytest.fixture
    def adapter(self, proxmox_double: ProxmoxDouble) -> Iterator[HypervisorAdapter]:
        adapter = create(proxmox_double.connection_config())
        yield adapter
        adapter.close()

    @pytest.fixture
    def template_ref(self) -> str:
        return "pve1/9000"

    @pytest.fixture
    def clone_spec_factory(self) -> Callable[..., CloneSpec]:
        # Exercise what the portal really sends on delivery (cloud-init account, static address,
        # bigger disk, another node), so the schema check after each test covers those calls too.
        counter = iter(range(10, 250))

        def make(**fields: Any) -> CloneSpec:
            fields.setdefault("disk_gib", 12)
            fields.setdefault("admin_user", "nicadmin")
            fields.setdefault("admin_password", "Init#" + uuid.uuid4().hex[:10])
            fields.setdefault("ip", IPSettings(f"10.30.1.{next(counter)}", 24, "10.30.1.1", ("10.0.0.53",)))
            fields.setdefault("placement", {"node": "pve2"})
            return CloneSpec(**fields)

        return make

    @pytest.fixture
    def failing_clone_spec(self, template_ref: str) -> CloneSpec:
        # "nearly-full" has 4 GiB free; the template's 10 GiB disk does not fit, so the clone task
        # itself fails (LVM's "insufficient free space"), after PVE has already taken the vmid.
        suffix = uuid.uuid4().hex[:12]
        return CloneSpec(
            name=f"contract-full-{suffix}",
            template_ref=template_ref,
            marker=f"vmportal:contract:{suffix}",
            vcpus=2,
            memory_mib=1024,
            placement={"storage": "nearly-full"},
        )

    @pytest.fixture
    def unknown_ref(self) -> str:
        return "pve1/987654"

    @pytest.fixture
    def missing_template_ref(self) -> str:
        return "pve2/987655"

    @pytest.fixture
    def unreachable_adapter(self, proxmox_double: ProxmoxDouble) -> Iterator[HypervisorAdapter]:
        adapter = create(
            proxmox_double.connection_config(url=f"https://127.0.0.1:{closed_port()}", timeout=2.0)
        )
        yield adapter
        adapter.close()
