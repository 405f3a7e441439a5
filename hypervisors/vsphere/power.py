"""Power and guest operations, and removal, of one VM.

* :meth:`PowerOps.power` checks the VM's current state against
  :data:`~hypervisors.base.POWER_ACTION_ALLOWED_FROM` (a refused action is
  :class:`~hypervisors.base.TaskFailed` naming the state), treats START of a running VM and
  STOP/SHUTDOWN of a stopped one as no-ops, and returns the VM re-read once vCenter reports the
  result. START, STOP and RESTART are tasks (PowerOnVM_Task, PowerOffVM_Task, ResetVM_Task).
* SHUTDOWN and REBOOT ask the guest OS through VMware Tools (ShutdownGuest, RebootGuest): they are
  requests, not tasks. Shutdown is followed by polling until the VM is off (``task_timeout``, then
  :class:`~hypervisors.base.Retriable`); a guest without running Tools is
  :class:`~hypervisors.base.TaskFailed` (see :mod:`hypervisors.vsphere.faults`).
* :meth:`PowerOps.delete` powers the VM off when needed and destroys it; a VM that is gone already
  counts as deleted. Templates are refused (:class:`~hypervisors.base.InvalidSpec`) by both.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from hypervisors.base import (
    POWER_ACTION_ALLOWED_FROM,
    NotFound,
    PowerAction,
    PowerState,
    Retriable,
    TaskFailed,
    VMInfo,
)
from hypervisors.vsphere.collector import Collector
from hypervisors.vsphere.inventory import Inventory
from hypervisors.vsphere.session import Session
from hypervisors.vsphere.tasks import Tasks


class PowerOps:
    """Power actions and deletion, through the session, inventory and tasks of one adapter."""

    def __init__(self, session: Session, collector: Collector, inventory: Inventory, tasks: Tasks) -> None:
        self.session = session
        self.collector = collector
        self.inventory = inventory
        self.tasks = tasks

    def power(self, ref: str, action: PowerAction) -> VMInfo:
        """The contract's ``power``; returns the VM re-read after the action."""
        action = PowerAction(action)
        vm = self.inventory.find(ref)
        current, values = self.inventory.state(vm, ref)
        name = values.get("name", ref)
        allowed = POWER_ACTION_ALLOWED_FROM[action]
        if current not in allowed:
            needs = " or ".join(sorted(s.value for s in allowed))
            raise TaskFailed(
                f"cannot {action.value} VM {name} ({ref}): it is {current.value}, "
                f"{action.value} needs it {needs}",
                detail={"ref": ref, "power_state": current.value},
            )
        label = f"{action.value} {name}"
        if action is PowerAction.START and current is not PowerState.RUNNING:
            self.tasks.run(label, lambda c: vm.PowerOn(host=None))
        elif action is PowerAction.STOP and current is not PowerState.STOPPED:
            self.tasks.run(label, lambda c: vm.PowerOff())
        elif action is PowerAction.RESTART:
            self.tasks.run(label, lambda c: vm.Reset())
        elif action is PowerAction.SHUTDOWN and current is not PowerState.STOPPED:
            self.session.call(label, lambda c: vm.ShutdownGuest())
            self._await_power(vm, "poweredOff", label)
        elif action is PowerAction.REBOOT:
            # The VM stays powered on through a guest reboot; there is no state change to await.
            self.session.call(label, lambda c: vm.RebootGuest())
        return self.session.call(f"read VM {ref}", lambda c: self.inventory.info_of(c, vm))

    def _await_power(self, vm: Any, target: str, action: str) -> None:
        """Guest shutdown is a request, not a task: poll until vCenter reports the state."""
        deadline = time.monotonic() + self.session.config.task_timeout
        delay = 0.1
        while True:
            state = self._power_state(vm, action)
            if str(state) == target:
                return
            if time.monotonic() >= deadline:
                raise Retriable(
                    f"{action}: the guest is still {state} after {self.session.config.task_timeout:g} s; "
                    "retry, or stop it hard",
                    defer=30.0,
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 3.0)

    def _power_state(self, vm: Any, action: str) -> Any:
        return self.session.call(
            action, lambda c: self.collector.read(c, vm, ["runtime.powerState"]).get("runtime.powerState")
        )

    def destroy(self, vm: Any, label: str) -> None:
        """Power off (if on or suspended) and destroy one VM object; a VM already gone is fine."""
        try:
            state = self._power_state(vm, f"read {label}")
            if str(state) in ("poweredOn", "suspended"):
                with contextlib.suppress(TaskFailed):  # it may have stopped meanwhile
                    self.tasks.run(f"power off {label}", lambda c: vm.PowerOff())
            self.tasks.run(f"destroy {label}", lambda c: vm.Destroy())
        except NotFound:
            return  # gone already: that is what was asked

    def delete(self, ref: str) -> None:
        """The contract's ``delete``: nothing to do for an unknown ref; a template is refused."""
        vm = self.session.call(f"find VM {ref}", lambda c: self.inventory.lookup(c, ref))
        if vm is None:
            return
        try:
            _state, values = self.inventory.state(vm, ref)
        except NotFound:
            return
        self.destroy(vm, str(values.get("name", ref)))
