"""Power actions and deletion of a Proxmox VM.

* START of a running VM and STOP or SHUTDOWN of a stopped one are no-ops; RESTART and REBOOT of a
  VM that is not running are :class:`~hypervisors.base.InvalidSpec`; a template is refused.
* START of a paused VM resumes it (PVE's ``start`` refuses a paused VM as already running).
* RESTART is PVE's ``reset`` (hard); SHUTDOWN and REBOOT are the guest's own (ACPI, or the QEMU
  guest agent when the VM has it enabled). Every action waits for its task and returns the VM
  re-read.
* :meth:`PowerOps.delete` stops a VM first, then purges it (backup jobs, replication, HA) with
  its disks; a VM that does not exist counts as deleted.
"""

from __future__ import annotations

from collections.abc import Mapping

from hypervisors.base import InvalidSpec, NotFound, PowerAction, PowerState, VMInfo
from hypervisors.proxmox.api import Api
from hypervisors.proxmox.inventory import Inventory
from hypervisors.proxmox.tasks import Tasks

_ACTION_ENDPOINT: Mapping[PowerAction, str] = {
    PowerAction.START: "start",
    PowerAction.STOP: "stop",
    PowerAction.RESTART: "reset",
    PowerAction.SHUTDOWN: "shutdown",
    PowerAction.REBOOT: "reboot",
}


class PowerOps:
    """Power actions and deletion through one API client."""

    def __init__(self, api: Api, inventory: Inventory, tasks: Tasks) -> None:
        self.api = api
        self.inventory = inventory
        self.tasks = tasks

    def power(self, ref: str, action: PowerAction) -> VMInfo:
        """The contract's ``power``; returns the VM re-read after the task."""
        action = PowerAction(action)
        guest = self.inventory.read(ref)
        state = guest.power_state
        if guest.config.get("template"):
            raise InvalidSpec(f"{ref} is a template and cannot be powered on or off")
        if (action is PowerAction.START and state is PowerState.RUNNING) or (
            action in (PowerAction.STOP, PowerAction.SHUTDOWN) and state is PowerState.STOPPED
        ):
            return self.inventory.get_vm(guest.ref)
        endpoint = _ACTION_ENDPOINT[action]
        if action is PowerAction.START and guest.status.get("qmpstatus") == "paused":
            endpoint = "resume"  # "start" refuses a paused VM as already running
        if action in (PowerAction.RESTART, PowerAction.REBOOT) and state is not PowerState.RUNNING:
            raise InvalidSpec(f"cannot {action} VM {ref}: it is {state}", detail={"power_state": str(state)})
        what = f"{action} VM {guest.ref}"
        upid = self.api.post(f"nodes/{guest.node}/qemu/{guest.vmid}/status/{endpoint}", what)
        self.tasks.finish(upid, what)
        return self.inventory.get_vm(guest.ref)

    def delete(self, ref: str) -> None:
        """The contract's ``delete``; a VM that does not exist is already deleted."""
        try:
            guest = self.inventory.read(ref)
            if guest.power_state is not PowerState.STOPPED and not guest.config.get("template"):
                what = f"stop VM {guest.ref} before deleting it"
                self.tasks.finish(
                    self.api.post(f"nodes/{guest.node}/qemu/{guest.vmid}/status/stop", what), what
                )
            what = f"delete VM {guest.ref}"
            upid = self.api.delete(
                f"nodes/{guest.node}/qemu/{guest.vmid}",
                what,
                # purge: drop it from backup jobs, replication and HA too; the disks go with it.
                purge=1,
                **{"destroy-unreferenced-disks": 1},
            )
            self.tasks.finish(upid, what)
        except NotFound:
            return
