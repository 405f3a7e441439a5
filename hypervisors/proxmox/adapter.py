"""Proxmox VE adapter, over proxmoxer's HTTPS backend with an API token.

A VM's ref is ``"<node>/<vmid>"``. The vmid is unique in a cluster and never changes; the node can
(migration), so a ref whose node is stale is re-resolved through ``/cluster/resources`` instead of
being reported missing.

What the portal keeps on a Proxmox VM:

* its idempotency marker, as a ``vmportal-marker: ...`` line of the VM's description (notes);
* web blocking, as VM firewall rules whose comment starts with ``vmportal:web-block`` (the comment
  also records what the portal changed to make them effective, so unblocking restores exactly
  that), mirrored by the VM tag ``vmportal-web-blocked`` so the inventory can report it without
  reading every VM's rule set.

Configuration (:class:`~hypervisors.base.ConnectionConfig`):

* ``url``: ``https://pve.example.edu.cn:8006`` (scheme and port optional; port defaults to 8006;
  a path prefix before ``/api2/json`` is kept for reverse proxies);
* ``token_id`` ``"user@realm!tokenname"`` + ``secret`` (the token's UUID); without a token_id,
  ``username`` + ``secret`` log in for a ticket instead;
* ``verify_tls`` / ``ca_file``: the node's certificate is checked against ``ca_file`` when given,
  the system trust otherwise; ``verify_tls=False`` turns checking off;
* ``defaults``: ``node`` (clone target; the template's node otherwise), ``storage`` (alias
  ``datastore``; the template's storage otherwise), ``pool``, ``bridge`` (alias ``network``;
  the template's bridge otherwise). ``CloneSpec.placement`` overrides the same keys per clone.

Cloud-init on Proxmox takes the guest's hostname from the VM name, so ``CloneSpec.hostname`` has no
separate setting here: name the VM as the host should be called. Account, password, address and DNS
servers are written as ``ciuser``/``cipassword``/``ipconfig0``/``nameserver``; PVE rebuilds the
cloud-init drive when the VM starts, which is why the clone is configured before it is powered on.

Where the work lives (the class below only wires the parts together and delegates):
:mod:`~hypervisors.proxmox.api` (session, TLS, token, error translation),
:mod:`~hypervisors.proxmox.vmconfig` (property strings, marker, tags),
:mod:`~hypervisors.proxmox.inventory`, :mod:`~hypervisors.proxmox.provisioning`,
:mod:`~hypervisors.proxmox.power`, :mod:`~hypervisors.proxmox.network` (``link_down`` and the
web-block firewall rules) and :mod:`~hypervisors.proxmox.tasks` (UPID polling).
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
from hypervisors.proxmox.api import Api
from hypervisors.proxmox.inventory import Inventory
from hypervisors.proxmox.network import Network
from hypervisors.proxmox.power import PowerOps
from hypervisors.proxmox.provisioning import Provisioner
from hypervisors.proxmox.tasks import Tasks
from hypervisors.registry import register
from hypervisors.watch import Stream, poll, scope_of


class ProxmoxAdapter:
    """:class:`~hypervisors.base.HypervisorAdapter` for one Proxmox VE cluster (or single node).

    Building one checks the URL (:class:`~hypervisors.base.InvalidSpec`) and contacts nothing; the
    first call logs in. Every public method is the contract's
    (:class:`~hypervisors.base.HypervisorAdapter` says what each promises), delegated as the module
    docstring lists.
    """

    kind = HypervisorKind.PROXMOX
    capabilities = Capabilities(guest_power=True, web_block=True, watch=True)

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._api = Api(config)
        self._tasks = Tasks(self._api, config)
        self._inventory = Inventory(self._api)
        self._power = PowerOps(self._api, self._inventory, self._tasks)
        self._network = Network(self._api, self._inventory, self._tasks)
        self._provisioning = Provisioner(config, self._api, self._inventory, self._tasks, self._power)

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
        # Proxmox pushes nothing: polled every few seconds, only differences yielded. Keyed by
        # vmid, so a migration (node/vmid changes) is one VM moving, not one gone and one new.
        return poll(
            Stream(scope_of(self.config), key=lambda vm: vm.ref.rpartition("/")[2]),
            self.list_vms,
            stop,
            since,
        )

    def close(self) -> None:
        self._api.close()


register(HypervisorKind.PROXMOX)(ProxmoxAdapter)
