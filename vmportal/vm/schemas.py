"""What the VM and power-operation endpoints accept and answer."""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from hypervisors.base import PowerAction, PowerState
from policies.power import SecurityState
from vmportal.vm.models import Lifecycle, PowerOpState


class LifecycleFilter(enum.StrEnum):
    ACTIVE = Lifecycle.ACTIVE.value
    DECOMMISSIONED = Lifecycle.DECOMMISSIONED.value
    MISSING = Lifecycle.MISSING.value
    PROVISIONING = Lifecycle.PROVISIONING.value  # a delivery placeholder until the clone is confirmed
    ALL = "all"


class VMSort(enum.StrEnum):
    ID = "id"
    ID_DESC = "-id"
    NAME = "name"
    NAME_DESC = "-name"
    CREATED = "created_at"
    CREATED_DESC = "-created_at"
    IP = "ip_address"
    IP_DESC = "-ip_address"


class VMListQuery(BaseModel):
    """The query of "list VMs", validated as one model (one pydantic pass instead of one FastAPI
    parameter at a time: this is the most frequent request of all). Unknown parameters are ignored."""

    unit_id: int | None = Field(None, ge=1, le=2**31 - 1)
    power_state: PowerState | None = None
    security_state: SecurityState | None = None
    lifecycle: LifecycleFilter = LifecycleFilter.ACTIVE
    q: str | None = Field(None, min_length=1, max_length=100, description="part of name, hostname or IP")
    sort: VMSort = VMSort.ID
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=1_000_000)


class PowerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: PowerAction = Field(
        description="start | stop (hard) | restart (hard reset) | shutdown | reboot (guest)"
    )
    reason: str = Field("", max_length=500, description="Why; kept with the operation and in the audit log.")


class DecommissionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=1, max_length=1000, description="Why the VM is retired (kept in the audit log)."
    )


class Links(BaseModel):
    self: str
    vm: str | None = None
    operations: str | None = None


class VMOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    hostname: str
    unit_id: int | None
    unit_code: str | None = None
    unit_name: str | None = None
    system_id: int | None
    request_id: int | None
    connection_id: int
    template_name: str
    vcpus: int
    memory_gib: int
    disk_gib: int
    ip_address: str | None
    ips: list[str]
    macs: list[str]
    admin_account: str
    power_state: str
    network_connected: bool
    security_state: str
    lifecycle: str
    registered: bool
    created_at: datetime
    synced_at: datetime | None
    decommissioned_at: datetime | None
    version: int
    links: Links


class VMList(BaseModel):
    items: list[VMOut]
    total: int
    limit: int
    offset: int


class PowerOperationOut(BaseModel):
    id: int
    vm_id: int
    action: str
    state: PowerOpState
    reason: str
    requested_by: int | None = Field(description="User id; null when the portal itself acted (containment).")
    requested_by_username: str | None
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    power_before: str
    power_after: str
    error: str
    links: Links


class OperationList(BaseModel):
    items: list[PowerOperationOut]
    total: int
    limit: int
    offset: int


class DecommissionOut(BaseModel):
    vm_id: int
    lifecycle: str
    state: str = Field(description="pending until the hypervisor confirmed the deletion, then done")
    decommissioned_at: datetime | None
    links: Links
