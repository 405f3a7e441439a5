"""What the VM endpoints accept and answer, and the VM list's filters.

:class:`VMOut` is *the* public shape of a VM, stated once: the ORM path builds it from VMOut's own
fields (:func:`vm_out`), and the document PostgreSQL keeps per VM for the SQL read path
(``vm.api_json``, migration 0004) is checked against it key for key (tests/api/test_vm_reads.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from hypervisors.base import PowerAction, PowerState
from policies.power import SecurityState
from vmportal.vm.models import VM, Lifecycle, PowerOpState

#: Where the API is mounted; links in answers are absolute paths under it.
PREFIX = "/api/v1"
#: Integer columns on PostgreSQL: a larger id is a 422, not a database error.
MAX_ID = 2**31 - 1


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

    unit_id: int | None = Field(None, ge=1, le=MAX_ID)
    power_state: PowerState | None = None
    security_state: SecurityState | None = None
    lifecycle: LifecycleFilter = LifecycleFilter.ACTIVE
    q: str | None = Field(None, min_length=1, max_length=100, description="part of name, hostname or IP")
    sort: VMSort = VMSort.ID
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0, le=1_000_000)


@dataclass(frozen=True)
class VMFilters:
    """The list's filters and page, as the ORM query and the SQL reader both take them (hashable:
    the reader keeps the statement of each shape it has seen)."""

    unit_id: int | None = None
    power_state: PowerState | None = None
    security_state: SecurityState | None = None
    lifecycle: LifecycleFilter = LifecycleFilter.ACTIVE
    q: str | None = None
    sort: VMSort = VMSort.ID
    limit: int = 50
    offset: int = 0

    @classmethod
    def of(cls, query: VMListQuery) -> VMFilters:
        return cls(**query.model_dump())


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
    protected: bool = Field(
        False, description="Marked by the center: never contained automatically (an alert opens an incident)"
    )
    created_at: datetime
    synced_at: datetime | None
    decommissioned_at: datetime | None
    version: int
    links: Links


#: VMOut's fields read off the VM row itself (the others come from its unit and its id).
_ROW_FIELDS = tuple(name for name in VMOut.model_fields if name not in ("unit_code", "unit_name", "links"))


def vm_links(vm_id: int) -> Links:
    return Links(self=f"{PREFIX}/vms/{vm_id}", operations=f"{PREFIX}/vms/{vm_id}/operations")


def operation_links(op_id: int, vm_id: int) -> Links:
    return Links(self=f"{PREFIX}/operations/{op_id}", vm=f"{PREFIX}/vms/{vm_id}")


def vm_out(vm: VM, unit_code: str | None, unit_name: str | None) -> VMOut:
    """The VM as the API shows it, field by field from :class:`VMOut` itself."""
    assert vm.id is not None
    values = {name: getattr(vm, name) for name in _ROW_FIELDS}
    return VMOut.model_validate(
        {**values, "unit_code": unit_code, "unit_name": unit_name, "links": vm_links(vm.id)}
    )


class VMList(BaseModel):
    items: list[VMOut]
    total: int
    limit: int
    offset: int


class PowerWarningOut(BaseModel):
    code: str = Field(description="What the warning is about, e.g. `maintenance` (a planned outage).")
    message: str
    message_zh: str
    detail: dict[str, object] = Field(default_factory=dict)


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
    warnings: list[PowerWarningOut] = Field(
        default_factory=list,
        description="Why the operation may fail although accepted (the answer to a request only), e.g. "
        "a planned outage of the VM's platform now.",
    )


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


# ---- one-time credentials (rule credentials_once) --------------------------------------------------

NOTICE_ZH = "初始密码只显示这一次，信息中心不保存、也不能恢复该密码。请立即妥善保管，并尽快修改密码。"
NOTICE_EN = (
    "The initial password is shown this once; the center keeps no copy and cannot recover it. "
    "Store it safely now and change it soon."
)


class CredentialsOut(BaseModel):
    vm_id: int
    hostname: str
    ip_address: str | None
    prefix_length: int | None
    gateway: str | None
    dns: list[str]
    admin_account: str
    password: str = Field(description="Shown once; not stored after this answer.")
    fetched_at: datetime
    notice_zh: str = NOTICE_ZH
    notice_en: str = NOTICE_EN


# ---- cutting and restoring the network -------------------------------------------------------------


class NetworkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connected: bool = Field(description="false cuts every NIC of the VM; true restores them.")
    reason: str = Field(
        min_length=1, max_length=500, description="Why (kept in the audit log, shown to the unit)."
    )


class NICOut(BaseModel):
    key: str
    mac: str | None
    network: str | None
    connected: bool
    start_connected: bool


class NetworkOut(BaseModel):
    vm_id: int
    network_connected: bool
    power_state: str
    nics: list[NICOut]
    version: int
    previously_connected: bool = Field(description="What the portal recorded before this change.")
    links: dict[str, str]
