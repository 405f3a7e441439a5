"""The vSphere adapter: vCenter (or govmomi's vcsim) through pyVmomi's SOAP API.

Connection (:class:`~hypervisors.base.ConnectionConfig`)
    ``url``
        ``https://vcenter.example.edu.cn/sdk`` (port 443 and path ``/sdk`` are the defaults).
        Plain ``http://`` is accepted only for a loopback host (``127.0.0.0/8``, ``::1``,
        ``localhost``): that is govmomi's vcsim in tests and benchmarks. A real vCenter is never
        spoken to without TLS, so an ``http://`` URL naming any other host is refused as
        :class:`InvalidSpec` when the adapter is built.
    ``verify_tls`` / ``ca_file``
        Certificates are verified by default, against ``ca_file`` when given (a campus vCenter
        usually presents a VMCA-signed certificate: download its CA from
        ``https://<vcenter>/certs/download.zip``), else against the system trust store plus
        certifi's. ``verify_tls=False`` is the explicit insecure lab switch; it is logged.
    ``username`` / ``secret``
        A vCenter SSO account (``svc-vmportal@vsphere.local``); the secret is never logged.
    ``timeout`` / ``task_timeout``
        Socket timeout of each SOAP call; how long a task (clone, power, reconfigure) may run.
    ``defaults`` (all optional; ``CloneSpec.placement`` overrides them per clone)
        ``datacenter``  name; default: the template's datacenter.
        ``folder``      VM folder: inventory path (``/DC0/vm/units``) or a path under the
                        datacenter's VM folder (``units/cs``); default: the datacenter's VM folder.
        ``pool``        resource pool or cluster: inventory path or name; default: ``cluster``'s root
                        pool, else the root pool of the template's cluster or host.
        ``cluster``     cluster name whose root pool receives new VMs (when ``pool`` is not set).
        ``host``        host name to pin new VMs to (normally left to DRS).
        ``datastore``   datastore name; default: the template's.
        ``network``     port group (standard or distributed) for the first NIC; default: the
                        template's.
        ``domain``, ``dns`` (comma-separated), ``timezone`` (Olson, default Asia/Shanghai),
        ``windows_timezone`` (index, default 210 = China Standard Time), ``workgroup``,
        ``organization``: guest customization.

What the adapter relies on, and where it lives
    The class below only wires the parts together and delegates each call of the contract:

    * :mod:`~hypervisors.vsphere.endpoint` and :mod:`~hypervisors.vsphere.session`: the URL
      rules, TLS, the login, and one re-login when vCenter says the session expired.
    * :mod:`~hypervisors.vsphere.collector` and :mod:`~hypervisors.vsphere.inventory`: the inventory
      is one paged ``RetrievePropertiesEx`` over a ContainerView of every VM plus one bulk retrieve
      of the entities those VMs reference; never a round trip per VM. Refs are VM **instance
      UUIDs**; the idempotency marker is a line ``vmportal-marker: <marker>`` of the annotation.
    * :mod:`~hypervisors.vsphere.provisioning` (with :mod:`~hypervisors.vsphere.placement` and
      :mod:`~hypervisors.vsphere.customization`): the idempotent clone by marker, Sysprep for
      Windows templates, cloud-init or LinuxPrep for Linux ones.
    * :mod:`~hypervisors.vsphere.power` (power and guest operations, delete) and
      :mod:`~hypervisors.vsphere.network` (NIC disconnect and reconnect through ReconfigVM_Task).
    * :mod:`~hypervisors.vsphere.tasks` and :mod:`~hypervisors.vsphere.faults`: waiting for
      vCenter tasks, and vSphere faults as the typed errors of :mod:`hypervisors.base`.
    * :mod:`~hypervisors.vsphere.watch`: the change stream, ``WaitForUpdatesEx`` over a
      ContainerView of every VM on a session and PropertyCollector of its own (nothing polled).
    * Web blocking is not something vSphere offers per VM without NSX: ``capabilities.web_block``
      is False and :meth:`VSphereAdapter.set_web_block` raises :class:`NotSupported`; the caller
      falls back to network isolation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from hypervisors.base import (
    Capabilities,
    ChangeBatch,
    CloneSpec,
    ConnectionCheck,
    ConnectionConfig,
    HypervisorKind,
    PowerAction,
    TaskResult,
    TemplateInfo,
    VMInfo,
)
from hypervisors.registry import register
from hypervisors.vsphere import watch as vsphere_watch
from hypervisors.vsphere.collector import DEFAULT_PAGE_SIZE, Collector
from hypervisors.vsphere.endpoint import parse_url
from hypervisors.vsphere.inventory import Inventory
from hypervisors.vsphere.network import Network
from hypervisors.vsphere.power import PowerOps
from hypervisors.vsphere.provisioning import Provisioner
from hypervisors.vsphere.session import Session
from hypervisors.vsphere.tasks import Tasks


class VSphereAdapter:
    """:class:`~hypervisors.base.HypervisorAdapter` for vCenter. See the module docstring.

    Building one contacts nothing (an ``http://`` URL naming a non-loopback host is refused at
    once, as :class:`~hypervisors.base.InvalidSpec`); the first call logs in. ``page_size`` is the
    number of objects per PropertyCollector page. Every public method is the contract's
    (:class:`~hypervisors.base.HypervisorAdapter` says what each promises), delegated as the module
    docstring lists.
    """

    kind = HypervisorKind.VSPHERE
    capabilities = Capabilities(guest_power=True, web_block=False, watch=True)

    def __init__(self, config: ConnectionConfig, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.config = config
        self.endpoint = parse_url(config.url)
        self.page_size = page_size
        collector = Collector(page_size)
        self._session = Session(config, self.endpoint)
        self._inventory = Inventory(self._session, collector)
        self._tasks = Tasks(self._session, collector)
        self._power = PowerOps(self._session, collector, self._inventory, self._tasks)
        self._network = Network(self._session, self._inventory, self._tasks)
        self._provisioning = Provisioner(
            config, self._session, collector, self._inventory, self._tasks, self._power
        )

    def __repr__(self) -> str:
        return f"VSphereAdapter({self.endpoint}, user={self.config.username!r})"

    def __enter__(self) -> VSphereAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reads ------------------------------------------------------------------------------

    def check(self) -> ConnectionCheck:
        return self._inventory.check()

    def list_vms(self) -> list[VMInfo]:
        return self._inventory.list_vms()

    def list_templates(self) -> list[TemplateInfo]:
        return self._inventory.list_templates()

    def get_vm(self, ref: str) -> VMInfo:
        return self._inventory.get_vm(ref)

    def find_by_marker(self, marker: str) -> VMInfo | None:
        return self._inventory.find_by_marker(marker)

    # ---- changes ----------------------------------------------------------------------------

    def clone(self, spec: CloneSpec) -> VMInfo:
        return self._provisioning.clone(spec)

    def power(self, ref: str, action: PowerAction) -> VMInfo:
        return self._power.power(ref, action)

    def set_network(self, ref: str, connected: bool) -> VMInfo:
        return self._network.set_network(ref, connected)

    def set_web_block(self, ref: str, blocked: bool) -> VMInfo:
        return self._network.set_web_block(ref, blocked)

    def delete(self, ref: str) -> None:
        self._power.delete(ref)

    def wait_task(self, task_ref: str, timeout: float | None = None) -> TaskResult:
        return self._tasks.wait_task(task_ref, timeout)

    def watch(self, stop: threading.Event, since: str | None = None) -> Iterator[ChangeBatch]:
        # Pushed by vCenter (WaitForUpdatesEx on a session and collector of the stream's own).
        return vsphere_watch.watch(self.config, self.endpoint, Collector(self.page_size), stop, since)

    def close(self) -> None:
        self._session.close()


@register(HypervisorKind.VSPHERE)
def _factory(config: ConnectionConfig) -> VSphereAdapter:
    return VSphereAdapter(config)
