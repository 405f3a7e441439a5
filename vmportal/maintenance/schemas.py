"""The maintenance API's shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from vmportal.maintenance.models import ScopeKind, WindowState

_MAX_ID = 2**31 - 1
VMId = Annotated[int, Field(ge=1, le=_MAX_ID)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class WindowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200, description="What is maintained, e.g. 存储扩容")
    reason: str = Field(min_length=1, max_length=2000, description="Why (shown to the units).")
    scope: ScopeKind = Field(description="connection | cluster | host | vms")
    connection_id: int | None = Field(
        None, ge=1, le=_MAX_ID, description="The hypervisor connection (scope connection, cluster, host)."
    )
    names: list[Name] = Field(
        default_factory=list,
        max_length=100,
        description="The clusters or hosts (Proxmox: nodes) out of service (scope cluster, host).",
    )
    vm_ids: list[VMId] = Field(default_factory=list, max_length=5000, description="The VMs (scope vms).")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    emergency_reason: str = Field(
        "",
        max_length=1000,
        description="Why it cannot wait for the notice period (rule maintenance_notice); only needed when "
        "announced later than the center's notice period before the start.",
    )


class WindowChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, min_length=1, max_length=200)
    reason: str | None = Field(None, min_length=1, max_length=2000)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    emergency_reason: str = Field("", max_length=1000)


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000, description="Why it is called off (mailed).")


class AffectedVMOut(BaseModel):
    vm_id: int
    vm_name: str
    unit_id: int | None


class AffectedUnitOut(BaseModel):
    unit_id: int
    unit_code: str
    unit_name: str
    vms: int


class WindowOut(BaseModel):
    id: int
    title: str
    reason: str
    scope: ScopeKind
    connection_id: int | None
    names: list[str]
    starts_at: datetime
    ends_at: datetime
    state: WindowState
    current: bool = Field(description="Under way now (scheduled, started, not ended).")
    emergency: bool = Field(description="Announced inside the notice period with an emergency reason.")
    emergency_reason: str
    notice_hours: int
    announced_at: datetime
    changed_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str
    vms: list[AffectedVMOut] = Field(description="The affected VMs (a unit's users: their own unit's).")
    units: list[AffectedUnitOut] = Field(description="The affected units (a unit's users: their own).")
