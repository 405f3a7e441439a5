"""What the security endpoints accept and answer."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from policies.compromise import Category, Confidence, Containment, Severity
from vmportal.incidents.models import ContainmentState, IncidentState

Cidr = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ContainAction(enum.StrEnum):
    """The actions a center user may order (notify-only is what an open incident already is)."""

    ISOLATE_NETWORK = Containment.ISOLATE_NETWORK.value
    POWER_OFF = Containment.POWER_OFF.value
    BLOCK_WEB = Containment.BLOCK_WEB.value


# ---- policy ------------------------------------------------------------------------------------------


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: Category
    min_severity: Severity
    confidence: Confidence
    action: Containment


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[RuleIn] = Field(max_length=200)


class PolicyOut(BaseModel):
    rules: list[RuleIn]
    is_default: bool
    updated_at: datetime | None
    updated_by: int | None


# ---- incidents ---------------------------------------------------------------------------------------


class IncidentOut(BaseModel):
    id: int
    vm_id: int | None
    vm_name: str | None
    vm_ip: str | None
    unit_id: int | None
    unit_code: str | None
    system_id: int | None
    origin: str
    category: str
    severity: str
    confidence: str
    title: str
    state: IncidentState
    containment_state: ContainmentState
    restore_state: str
    alert_count: int
    first_seen: datetime
    last_seen: datetime
    created_at: datetime
    updated_at: datetime
    action: str
    decision_rule: dict[str, Any] | None
    reasons_en: list[str]
    reasons_zh: list[str]
    decision_fallback: bool
    decided_by: str
    decided_at: datetime | None
    executed_action: str
    contained_at: datetime | None
    containment_latency_seconds: float | None
    attempts: int
    last_error: str
    resolution: str
    resolution_reason: str
    restored_at: datetime | None
    closed_at: datetime | None
    quarantine_seconds: float | None
    version: int
    actions: list[str] = Field(description="What the caller may do now")
    links: dict[str, str]


class IncidentList(BaseModel):
    items: list[IncidentOut]
    total: int
    limit: int
    offset: int


class TimelineItemOut(BaseModel):
    at: datetime
    kind: str
    actor: str
    message_en: str
    message_zh: str
    data: dict[str, Any]


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: ContainAction
    reason: str = Field("", max_length=1000)


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: ContainAction | None = Field(None, description="Another containment action (containment only)")


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class ProtectedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protected: bool
    reason: str = Field(min_length=1, max_length=2000)


class ProtectedOut(BaseModel):
    vm_id: int
    protected: bool


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=2000)


class AttachmentOut(BaseModel):
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    link: str


class RectificationOut(BaseModel):
    id: int
    incident_id: int
    unit_id: int | None
    vm_id: int | None
    text: str
    state: str
    submitted_by: int | None
    submitted_at: datetime
    decided_by: int | None
    decided_at: datetime | None
    decision_reason: str
    attachments: list[AttachmentOut]
