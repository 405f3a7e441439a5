"""vCenter tasks: waiting for them, and what a finished task means to the caller.

A mutating vSphere call (CloneVM_Task, PowerOnVM_Task, ReconfigVM_Task, Destroy_Task...) returns
a ``Task`` at once; :class:`Tasks` polls its ``info`` (one property read per poll, backing off from
50 ms to 2 s) until it is ``success`` or ``error``:

* :meth:`Tasks.wait` returns the outcome (a :class:`~hypervisors.base.TaskResult` carrying
  vCenter's own fault text when the task failed) and the task's raw result;
* :meth:`Tasks.run` submits and waits, and raises :class:`~hypervisors.base.TaskFailed` for a
  failed task;
* a task still running after ``ConnectionConfig.task_timeout`` (or the given timeout) raises
  :class:`~hypervisors.base.Retriable`: the work may still finish, so the caller retries later.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from pyVmomi import vim, vmodl
from pyVmomi.VmomiSupport import ManagedObject

from hypervisors.base import Retriable, TaskFailed, TaskResult
from hypervisors.vsphere.collector import Collector, moid
from hypervisors.vsphere.faults import fault_name, fault_text
from hypervisors.vsphere.session import Session


def failure(action: str, outcome: TaskResult) -> TaskFailed:
    """The error for a task that ended in error: ``"<action> failed: <vCenter's text>"``."""
    return TaskFailed(
        f"{action} failed: {outcome.message}", detail={"task_ref": outcome.task_ref, **outcome.extra}
    )


class Tasks:
    """Waits for the tasks of one session."""

    def __init__(self, session: Session, collector: Collector) -> None:
        self.session = session
        self.collector = collector

    def _result_ref(self, content: vim.ServiceInstanceContent, result: Any) -> str | None:
        # A VM is named by its instance UUID, as everywhere in the contract; other objects by moid.
        if isinstance(result, vim.VirtualMachine):
            with contextlib.suppress(vmodl.fault.ManagedObjectNotFound):
                return str(
                    self.collector.read(content, result, ["config.instanceUuid"]).get("config.instanceUuid")
                )
        if isinstance(result, ManagedObject):
            return moid(result)
        return None

    def wait(
        self, task: vim.Task, timeout: float | None = None, *, action: str = "task"
    ) -> tuple[TaskResult, Any]:
        """Poll a task until it ends; returns its outcome and raw result. A timeout is Retriable."""
        limit = self.session.config.task_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        delay = 0.05
        task_ref = moid(task)
        while True:
            info = self.session.call(
                f"{action} (waiting for {task_ref})", lambda c: self.collector.read(c, task, ["info"])["info"]
            )
            state = str(info.state)
            if state in ("success", "error"):
                break
            if time.monotonic() >= deadline:
                raise Retriable(
                    f"{action}: task {task_ref} still {state} after {limit:g} s",
                    defer=30.0,
                    detail={"task_ref": task_ref},
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)
        extra = {"description": str(info.descriptionId or ""), "entity": str(info.entityName or "")}
        if state == "error":
            fault = info.error
            message = fault_text(fault) if fault is not None else "the task failed without a fault"
            extra["fault"] = fault_name(fault) if fault is not None else ""
            return TaskResult(ok=False, task_ref=task_ref, message=message, extra=extra), None
        result_ref = self.session.call(action, lambda c: self._result_ref(c, info.result))
        return TaskResult(
            ok=True, task_ref=task_ref, message="success", result_ref=result_ref, extra=extra
        ), info.result

    def run(self, action: str, submit: Callable[[vim.ServiceInstanceContent], vim.Task]) -> Any:
        """Submit a task and wait for it; a failed task is TaskFailed with vCenter's own text."""
        task = self.session.call(action, submit)
        outcome, result = self.wait(task, action=action)
        if not outcome.ok:
            raise failure(action, outcome)
        return result

    def wait_task(self, task_ref: str, timeout: float | None = None) -> TaskResult:
        """The contract's ``wait_task``: a task named by its moid (``task-123``).

        A task vCenter does not know is :class:`~hypervisors.base.NotFound`.
        """
        content = self.session.call("wait for task", lambda c: c)
        task = vim.Task(task_ref, content.propertyCollector._stub)
        return self.wait(task, timeout, action=f"task {task_ref}")[0]
