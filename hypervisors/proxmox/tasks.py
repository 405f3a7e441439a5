"""Proxmox tasks, named by their UPID: waiting for them and what their exit status means.

An asynchronous PVE call (clone, start, config with a cloud-init drive, resize, delete...) answers
with a UPID (``UPID:<node>:...``); the node is read from it, and ``/nodes/<node>/tasks/<upid>/status``
is polled (backing off from 50 ms to 2 s) until the task has stopped. ``OK`` and ``WARNINGS: n``
are success; any other exit status is PVE's own error text.
"""

from __future__ import annotations

import time
from typing import Any

from hypervisors.base import ConnectionConfig, NotFound, Retriable, TaskFailed, TaskResult
from hypervisors.proxmox.api import Api


def upid_node(upid: str) -> str:
    """The node a task runs on, from its UPID."""
    # UPID:node:pid:pstart:starttime:type:id:user:  (nine fields, the last usually empty)
    parts = upid.split(":")
    if len(parts) < 9 or parts[0] != "UPID" or not parts[1]:
        raise NotFound(f"{upid!r} is not a Proxmox task id", detail={"task": upid})
    return parts[1]


class Tasks:
    """Waits for the tasks of one API client; ``config.task_timeout`` bounds every wait."""

    def __init__(self, api: Api, config: ConnectionConfig) -> None:
        self.api = api
        self.config = config

    def wait_task(self, task_ref: str, timeout: float | None = None) -> TaskResult:
        """The contract's ``wait_task``: a failed task is ``ok=False`` with PVE's exit status; still
        running after the timeout is :class:`Retriable`; a malformed UPID is :class:`NotFound`."""
        node = upid_node(task_ref)
        limit = self.config.task_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        interval = 0.05
        while True:
            status = self.api.get(f"nodes/{node}/tasks/{task_ref}/status", f"read task {task_ref}")
            if status.get("status") == "stopped":
                exitstatus = str(status.get("exitstatus", ""))
                # "WARNINGS: n" is how PVE reports a task that completed with warnings.
                ok = exitstatus == "OK" or exitstatus.startswith("WARNINGS")
                return TaskResult(
                    ok=ok,
                    task_ref=task_ref,
                    message=exitstatus,
                    extra={"type": status.get("type"), "id": status.get("id"), "node": node},
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Retriable(
                    f"Proxmox task {task_ref} still running after {limit:.0f}s",
                    defer=30.0,
                    detail={"task": task_ref},
                )
            time.sleep(min(interval, remaining))
            interval = min(interval * 1.5, 2.0)  # short tasks answer fast, long clones cost few polls

    def finish(self, upid: Any, what: str) -> None:
        """Wait for a task a call started; a failed task becomes TaskFailed with PVE's text."""
        if not upid:  # some calls finish synchronously and return null
            return
        result = self.wait_task(str(upid))
        if not result.ok:
            raise TaskFailed(f"{what} failed: {result.message}", detail={"task": result.task_ref})
