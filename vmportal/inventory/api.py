"""Inventory reconciliation and the VMs found on hypervisors that the portal does not govern."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from vmportal.connection.service import get_connection
from vmportal.identity.deps import CurrentWho, require
from vmportal.inventory import service
from vmportal.jobs import outbox
from vmportal.kit.http import SessionDep
from vmportal.kit.scope import CENTER, CENTER_READ

router = APIRouter(prefix="/inventory", tags=["inventory"])


class SyncRequest(BaseModel):
    connection_id: int | None = Field(None, description="One connection; omit for all active ones.")


class AssignRequest(BaseModel):
    unit_id: int = Field(gt=0)
    system_id: int | None = Field(None, gt=0)


class UnregisteredVM(BaseModel):
    id: int
    connection_id: int
    connection: str
    hypervisor_ref: str
    name: str
    power_state: str
    ips: list[str]
    vcpus: int
    memory_gib: int
    disk_gib: int
    lifecycle: str


@router.post("/sync", status_code=status.HTTP_202_ACCEPTED, dependencies=[require(*CENTER)])
def request_sync(body: SyncRequest, session: SessionDep) -> dict[str, Any]:
    """Queue a reconciliation; the result shows up as audit rows and VM states."""
    if body.connection_id is not None:
        get_connection(session, body.connection_id)
    row = outbox.enqueue(session, "vmportal.inventory.sync", connection_id=body.connection_id)
    session.flush()
    return {"queued": True, "task_id": row.id, "connection_id": body.connection_id}


@router.get("/unregistered", dependencies=[require(*CENTER_READ)])
def unregistered(session: SessionDep, connection_id: int | None = None) -> list[UnregisteredVM]:
    return [
        UnregisteredVM(
            id=vm.id or 0,
            connection_id=vm.connection_id,
            connection=name,
            hypervisor_ref=vm.hypervisor_ref,
            name=vm.name,
            power_state=vm.power_state,
            ips=list(vm.ips or []),
            vcpus=vm.vcpus,
            memory_gib=vm.memory_gib,
            disk_gib=vm.disk_gib,
            lifecycle=vm.lifecycle,
        )
        for vm, name in service.unregistered(session, connection_id)
    ]


@router.post("/vms/{vm_id}/assign", dependencies=[require(*CENTER)])
def assign(vm_id: int, body: AssignRequest, session: SessionDep, who: CurrentWho) -> dict[str, Any]:
    vm = service.assign(session, who, vm_id, body.unit_id, body.system_id)
    return {"id": vm.id, "unit_id": vm.unit_id, "system_id": vm.system_id, "registered": vm.registered}
