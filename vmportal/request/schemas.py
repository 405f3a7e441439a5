"""What the VM request endpoints accept and answer.

Sizes are bounded here (a 422 names the field); whether the request is allowed at all is the
policy layer's answer (a 403 names the rule). ``purpose`` accepts every value the purpose rule knows,
news and personal included, so that such a request is refused by rule ``purpose`` with the reason
and the pointer to the site-cluster platform, not by a bare enum error.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from policies.deadline import DeadlineStatus
from policies.purpose import Beneficiary, Purpose
from vmportal.request.models import RequestState

#: RFC 1123 host name label: letters, digits and hyphens, 1–63 characters, no hyphen at either end.
HOSTNAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"

MIN_VCPUS, MAX_VCPUS = 1, 64
MIN_MEMORY_GIB, MAX_MEMORY_GIB = 1, 512
MIN_DISK_GIB, MAX_DISK_GIB = 10, 4096


class RequestIn(BaseModel):
    """Either ``system_id`` (a registered information system of the unit) or ``system_name`` with
    ``purpose`` (and optionally ``beneficiary`` and ``description``)."""

    model_config = ConfigDict(extra="forbid")

    system_id: int | None = Field(None, gt=0, description="A registered information system of your unit.")
    system_name: str | None = Field(None, min_length=1, max_length=200)
    purpose: Purpose | None = Field(None, description="teaching | research | management (others are refused)")
    beneficiary: Beneficiary = Field(Beneficiary.UNIT, description="unit (persons are refused)")
    description: str = Field("", max_length=2000)
    hostname: str = Field(min_length=1, max_length=63, pattern=HOSTNAME_PATTERN)
    connection_id: int = Field(gt=0, description="The hypervisor connection (see GET /templates).")
    template_ref: str = Field(min_length=1, max_length=200, description="A template of that connection.")
    vcpus: int = Field(ge=MIN_VCPUS, le=MAX_VCPUS)
    memory_gib: int = Field(ge=MIN_MEMORY_GIB, le=MAX_MEMORY_GIB)
    disk_gib: int = Field(ge=MIN_DISK_GIB, le=MAX_DISK_GIB)
    pool_id: int | None = Field(None, gt=0, description="IP pool; default: the connection's default pool.")


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    override_reason: str | None = Field(
        None,
        max_length=2000,
        description="center_admin only: approve over the unit's quota, for this recorded reason.",
    )
    pool_id: int | None = Field(None, gt=0, description="Deliver from this IP pool instead.")


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, description="Told to the unit; kept in the audit log.")


class DeclineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=1, max_length=2000, description="Told to the unit's admin; kept in the audit log."
    )


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    override_reason: str | None = Field(None, max_length=2000)


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=2000)


class RequestOut(BaseModel):
    id: int
    unit_id: int
    system_id: int | None
    requested_by: int
    state: RequestState
    purpose: str
    beneficiary: str
    system_name: str
    description: str
    hostname: str
    connection_id: int
    template_ref: str
    template_name: str
    vcpus: int
    memory_gib: int
    disk_gib: int
    pool_id: int | None
    submitted_at: datetime
    due_at: datetime
    deadline_status: DeadlineStatus | None = Field(
        description="on_time | at_risk (< 48 h left) | overdue | met | missed; "
        "null once rejected or cancelled"
    )
    endorsed_by: int | None
    endorsed_at: datetime | None
    decided_by: int | None
    decided_at: datetime | None
    decision_reason: str
    override_reason: str
    provisioning_attempts: int
    failure_reason: str
    delivered_at: datetime | None
    vm_id: int | None
    updated_at: datetime
    actions: list[str] = Field(description="What you may do with this request now.")


class RequestPage(BaseModel):
    items: list[RequestOut]
    total: int = Field(description="Requests matching the filters, all pages together.")
    limit: int
    offset: int
