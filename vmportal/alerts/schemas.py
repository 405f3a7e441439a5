"""What the alert endpoints accept and answer: sources, alerts, the raw records."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from vmportal.alerts import SourceKind
from vmportal.alerts.sources import NAME_PATTERN, AuthMethod
from vmportal.incidents.models import AlertState

Cidr = Annotated[str, StringConstraints(min_length=1, max_length=64)]

# ---- sources ----------------------------------------------------------------------------------------


class SourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=NAME_PATTERN,
        max_length=64,
        description="Lower-case name, used in the URL: POST /api/v1/alerts/{name}",
    )
    kind: SourceKind = Field(description="The format it posts; generic detects each record's format")
    auth: AuthMethod | None = Field(
        None,
        description="hmac (Standard Webhooks signature), bearer (token, for senders that cannot sign) or "
        "both. Default: bearer for suricata, wazuh, zeek, alertmanager and elastic; hmac for generic.",
    )
    allowed_cidrs: list[Cidr] = Field(
        default_factory=list, max_length=100, description="Addresses it may post from; empty: any"
    )
    description: str = Field("", max_length=500)
    active: bool = True


class SourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: SourceKind | None = None
    allowed_cidrs: list[Cidr] | None = Field(None, max_length=100)
    description: str | None = Field(None, max_length=500)
    active: bool | None = None


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auth: AuthMethod | None = Field(None, description="Default: the methods the source has now")


class SourceOut(BaseModel):
    id: int
    name: str
    kind: str
    description: str
    auth: str
    has_secret: bool
    has_token: bool
    allowed_cidrs: list[str]
    active: bool
    created_at: datetime
    updated_at: datetime
    credentials_rotated_at: datetime | None
    last_post_at: datetime | None
    endpoint: str


class SourceCredentials(SourceOut):
    secret: str | None = Field(
        description="Shown only in this answer. Sign each post: webhook-signature: v1,<base64 of "
        "HMAC-SHA256(key, webhook-id + '.' + webhook-timestamp + '.' + body)>, the key being the "
        "base64-decoded part after 'whsec_'"
    )
    token: str | None = Field(description="Shown only in this answer. Send: Authorization: Bearer <token>")


# ---- alerts ------------------------------------------------------------------------------------------


class AlertOut(BaseModel):
    id: int
    source: str
    record_id: int
    received_at: datetime
    format: str
    category: str
    severity: str
    confidence: str
    title: str
    external_id: str
    resolved: bool
    addresses: list[dict[str, Any]]
    subject_roles: list[str]
    target_host: str | None
    state: AlertState
    vm_id: int | None
    match: dict[str, Any] | None
    incident_id: int | None
    repeats: int
    last_repeat_at: datetime | None
    processed_at: datetime | None
    evidence: dict[str, Any] | None = None


class AlertList(BaseModel):
    items: list[AlertOut]
    total: int
    limit: int
    offset: int


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vm_id: int = Field(ge=1, le=2**31 - 1)


class RecordOut(BaseModel):
    id: int
    source: str
    received_at: datetime
    webhook_id: str
    position: int
    format: str
    error_code: str
    error: str
    error_field: str
    alert_count: int
    raw_truncated: bool
    raw: str | None = None


class RecordList(BaseModel):
    items: list[RecordOut]
    total: int
    limit: int
    offset: int
