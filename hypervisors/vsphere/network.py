"""Network isolation of a VM: every virtual NIC disconnected or reconnected with ReconfigVM_Task.

A cut sets, on every NIC, ``connected`` (the live link), ``startConnected`` (so the VM stays cut
across a power cycle) and clears ``allowGuestControl`` (so the guest cannot reconnect its own NIC
through VMware Tools); a restore sets both flags back and does not hand guest control back. NICs already
as asked are not rewritten, so repeating a cut or a restore sends nothing.

Per-VM web blocking is not something vSphere offers without NSX: :meth:`Network.set_web_block`
raises :class:`~hypervisors.base.NotSupported` and the caller falls back to isolation.
"""

from __future__ import annotations

from pyVmomi import vim

from hypervisors.base import NotSupported, PowerState, VMInfo
from hypervisors.vsphere.devices import nics_of
from hypervisors.vsphere.inventory import Inventory
from hypervisors.vsphere.session import Session
from hypervisors.vsphere.tasks import Tasks


class Network:
    """NIC connect/disconnect of one adapter's VMs."""

    def __init__(self, session: Session, inventory: Inventory, tasks: Tasks) -> None:
        self.session = session
        self.inventory = inventory
        self.tasks = tasks

    def set_network(self, ref: str, connected: bool) -> VMInfo:
        """The contract's ``set_network``: every NIC cut (or restored), the VM re-read after (without
        its placement: see :meth:`Inventory.read_back`)."""
        vm = self.inventory.find(ref)
        current, values = self.inventory.state(vm, ref)
        changes = []
        for nic in nics_of(values.get("config.hardware.device") or []):
            connect = nic.connectable or vim.vm.device.VirtualDevice.ConnectInfo(allowGuestControl=True)
            # A powered-off VM always reads as disconnected: judge it by startConnected alone.
            live_ok = current is not PowerState.RUNNING or bool(connect.connected) == connected
            guest_ok = connected or not connect.allowGuestControl
            if live_ok and bool(connect.startConnected) == connected and guest_ok:
                continue
            nic.connectable = vim.vm.device.VirtualDevice.ConnectInfo(
                connected=connected,
                startConnected=connected,
                # An isolated guest must not be able to reconnect its own NIC through VMware
                # Tools; restoring leaves that switch off, it is not needed for normal use.
                allowGuestControl=bool(connect.allowGuestControl) and connected,
            )
            changes.append(
                vim.vm.device.VirtualDeviceSpec(
                    operation=vim.vm.device.VirtualDeviceSpec.Operation.edit, device=nic
                )
            )
        if changes:
            verb = "connect" if connected else "disconnect"
            spec = vim.vm.ConfigSpec(deviceChange=changes)
            self.tasks.run(f"{verb} NICs of {values.get('name', ref)}", lambda c: vm.Reconfigure(spec=spec))
        # Read back only what confirms the change (power state, every NIC's connection, addresses):
        # the full record would also read and name the VM's host, pool, folder and datacenter,
        # two SOAP answers to parse for nothing a NIC change moves.
        return self.session.call(f"read VM {ref}", lambda c: self.inventory.read_back(c, vm))

    def set_web_block(self, ref: str, blocked: bool) -> VMInfo:
        """Always :class:`NotSupported` (``capabilities.web_block`` is False)."""
        raise NotSupported(
            "vSphere has no per-VM firewall for inbound 80/443 without NSX; isolate the VM's network instead",
            detail={"ref": ref},
        )
