"""The compliance API's shapes (in and out), the limits of its inputs, and its list filters.

Findings, notices, forbidden services (scans, violations, exemptions, shutdown) and the e-mail outbox
the center reads. The ``*Out`` shapes are filled by :mod:`vmportal.compliance.api`; the filters are
plain dataclasses the services take, so a page or a CLI command filters the same way as a route.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from policies.compromise import Category, Severity
from policies.forbidden_services import ServiceKind
from vmportal.compliance.models import EventType, Issuer, NoticeState
from vmportal.incidents.models import FindingState, NotificationState, ViolationState
from vmportal.incidents.schemas import ContainAction

MAX_ID = 2**31 - 1
#: A notice's evidence text, and how many evidence files it may carry.
MAX_EVIDENCE = 20_000
MAX_FILES = 10
#: Largest Nmap report accepted: a /16 scanned with -sV fits easily (answered 413 beyond).
MAX_SCAN_BYTES = 32 * 1024 * 1024


# ---- findings ------------------------------------------------------------------------------------------


class FindingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vm_id: int | None = Field(None, ge=1, le=MAX_ID, description="The VM; or give unit_id alone")
    unit_id: int | None = Field(None, ge=1, le=MAX_ID)
    category: Category = Field(description="vulnerability, backdoor, dark_link, weak_password…")
    severity: Severity = Field(
        description="Sets the deadline: critical 24 h, high 72 h, medium 7 d, low 30 d"
    )
    title: str = Field(min_length=1, max_length=500)
    description: str = Field("", max_length=20_000)
    target: str = Field("", max_length=2000, description="URL, ip:port, account")
    deadline_at: AwareDatetime | None = Field(None, description="Instead of the severity's deadline")


class FindingOut(BaseModel):
    id: int
    unit_id: int | None
    vm_id: int | None
    system_id: int | None
    incident_id: int | None
    notice_id: int | None
    origin: str
    category: str
    severity: str
    title: str
    description: str
    target: str
    evidence: dict[str, Any]
    state: FindingState
    deadline_at: datetime | None
    overdue: bool
    created_at: datetime
    created_by: int | None
    updated_at: datetime
    notified_at: datetime | None
    fixed_at: datetime | None
    fixed_by: int | None
    fix_note: str
    retested_at: datetime | None
    retested_by: int | None
    retest_passed: bool | None
    retest_note: str
    closed_at: datetime | None
    version: int
    actions: list[str] = Field(description="What the caller may do now")
    links: dict[str, str]


class FindingList(BaseModel):
    items: list[FindingOut]
    total: int
    limit: int
    offset: int


class FixIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=2000, description="What was fixed, and how")


class RetestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    passed: bool
    note: str = Field("", max_length=2000)
    deadline_at: AwareDatetime | None = Field(
        None, description="New deadline when failed; default by severity"
    )


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field("", max_length=2000)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class OverdueUnitOut(BaseModel):
    unit_id: int | None
    unit_code: str | None
    unit_name_zh: str | None
    count: int
    oldest_deadline: datetime | None
    findings: list[FindingOut]


class OverdueReport(BaseModel):
    generated_at: datetime
    total: int
    units: list[OverdueUnitOut]


@dataclass(frozen=True)
class FindingFilters:
    unit_id: int | None = None
    vm_id: int | None = None
    state: FindingState | None = None
    #: True: open or notified past the deadline; False: every other finding.
    overdue: bool | None = None
    category: Category | None = None
    notice_id: int | None = None


# ---- notices -------------------------------------------------------------------------------------------


class NoticeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuer: Issuer = Field(description="教育部, 公安, 网信, CNCERT, 360 or other")
    issuer_name: str = Field("", max_length=200, description="The issuer's full name (required for other)")
    notice_number: str = Field(min_length=1, max_length=100, description="通报编号")
    received_on: date | None = None
    target_url: str = Field("", max_length=2000)
    target_ip: str = Field("", max_length=64)
    target_mailbox: str = Field("", max_length=254)
    event_type: EventType = Field(
        description="挂马, 暗链, 篡改, webshell, 后门, 僵木蠕, 挖矿, 高危漏洞, 中危漏洞, 弱口令, 有害信息"
    )
    severity: Severity | None = Field(None, description="Default by event type")
    evidence: str = Field("", max_length=MAX_EVIDENCE)
    required_action: str = Field("", max_length=500, description="清除, 关停, 限制校外访问…")
    deadline: str | None = Field(
        None,
        max_length=100,
        description="ISO date-time (Beijing time without a zone), a date, '3月20日前', '24小时内', '3天内', "
        "'5个工作日内'. Default: by severity.",
    )
    title: str = Field("", max_length=500)


class IncidentBrief(BaseModel):
    id: int
    state: str
    containment_state: str
    action: str
    link: str


class NoticeAttachmentOut(BaseModel):
    index: int
    filename: str
    content_type: str
    size: int
    sha256: str
    link: str


class NoticeOut(BaseModel):
    id: int
    issuer: str
    issuer_kind: str
    notice_number: str
    received_on: date | None
    target_url: str
    target_ip: str
    target_mailbox: str
    event_type: str
    category: str
    severity: str
    evidence: str
    required_action: str
    deadline_at: datetime | None
    unit_id: int | None
    unit_code: str | None
    vm_id: int | None
    system_id: int | None
    incident_id: int | None
    state: NoticeState
    entered_by: int | None
    entered_at: datetime
    confirmed_by: int | None
    confirmed_at: datetime | None
    suggested_action: str = Field(description="The containment the notice calls for (confirm's default)")
    incident: IncidentBrief | None
    findings: list[FindingOut]
    attachments: list[NoticeAttachmentOut]
    links: dict[str, str]


class NoticeList(BaseModel):
    items: list[NoticeOut]
    total: int
    limit: int
    offset: int


class NoticeConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: ContainAction | None = Field(None, description="Default: the notice's suggested action")
    reason: str = Field("", max_length=1000)


class NoticeAssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vm_id: int = Field(ge=1, le=MAX_ID)


@dataclass(frozen=True)
class NoticeFilters:
    state: NoticeState | None = None
    unit_id: int | None = None
    vm_id: int | None = None
    issuer: Issuer | None = None


# ---- forbidden services ----------------------------------------------------------------------------


class ViolationOut(BaseModel):
    id: int
    vm_id: int
    unit_id: int | None
    scan_id: int | None
    last_scan_id: int | None
    ip: str
    protocol: str
    port: int
    service: str
    product: str
    version: str
    evidence: dict[str, Any]
    reasons_en: list[str]
    reasons_zh: list[str]
    state: ViolationState
    open: bool = Field(description="Still this appearance: not resolved or exempted")
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    decided_by: int | None
    note: str
    links: dict[str, str]


class ViolationList(BaseModel):
    items: list[ViolationOut]
    total: int
    limit: int
    offset: int


class ScanOut(BaseModel):
    id: int
    uploaded_by: int | None
    uploaded_at: datetime
    filename: str
    sha256: str
    scanner: str
    started_at: datetime | None
    finished_at: datetime | None
    hosts_up: int
    open_ports: int
    violations_raised: int


class ScanList(BaseModel):
    items: list[ScanOut]
    total: int
    limit: int
    offset: int


class ScanResultOut(BaseModel):
    scan: ScanOut
    raised: list[ViolationOut] = Field(description="New violations (first appearance)")
    still_open: list[ViolationOut] = Field(description="Seen again: already raised, not raised twice")
    resolved: list[ViolationOut] = Field(description="No longer seen on a host up in this scan")
    exempted: list[dict[str, Any]] = Field(description="Forbidden services seen but approved")
    unmatched_hosts: list[str] = Field(description="Hosts up that are no VM of the inventory")


class ExemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vm_id: int = Field(ge=1, le=MAX_ID)
    kind: ServiceKind = Field(description="mail, dns, proxy or forum")
    port: int | None = Field(None, ge=1, le=65535, description="Only this port; default any")
    protocol: Literal["tcp", "udp", "sctp"] | None = Field(
        None, description="Only this protocol; default any"
    )
    reason: str = Field(min_length=1, max_length=1000, description="Who approved it (有关部门同意) and why")
    expires_at: AwareDatetime | None = None


class ExemptionOut(BaseModel):
    id: int
    vm_id: int
    unit_id: int | None
    kind: str
    protocol: str | None
    port: int | None
    reason: str
    granted_by: int | None
    granted_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: int | None
    active: bool
    closed_violations: list[int] = Field(default_factory=list, description="Violations this grant closed")


class ShutdownIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=1000)


class ShutdownOut(BaseModel):
    violation: ViolationOut
    operation_id: int | None = Field(description="The power operation (None: the VM was already off)")
    links: dict[str, str]


@dataclass(frozen=True)
class ViolationFilters:
    state: ViolationState | None = None
    #: True: still this appearance (open or shut down); False: resolved or exempted.
    open: bool | None = None
    vm_id: int | None = None
    unit_id: int | None = None
    #: The scan that raised it or last saw it.
    scan_id: int | None = None
    service: ServiceKind | None = None


# ---- the e-mail outbox -----------------------------------------------------------------------------


class NotificationOut(BaseModel):
    id: int
    to: list[str]
    cc: list[str]
    subject: str
    body: str
    kind: str
    related_type: str
    related_id: str
    unit_id: int | None
    state: NotificationState
    attempts: int
    next_attempt_at: datetime | None
    last_error: str
    created_at: datetime
    sent_at: datetime | None


class NotificationList(BaseModel):
    items: list[NotificationOut]
    total: int
    limit: int
    offset: int
