"""Security response: alert sources and what they post, incidents and their containment, rectification
reports, and (for the notices, findings, forbidden-services and e-mail work of issue 4) the tables those
build on.

How the rows relate::

    alert_source ──< alert_record ──< security_alert >── incident ──< incident_event
         └──< alert_webhook_id                              ├──< rectification ──< rectification_attachment
                                                            ├──< finding          (points 7–8)
    notice ──> incident                                     └── vm
    service_scan ──< service_violation >── vm ──< service_exemption   (point 9)
    notification                                                      (point 10: the e-mail outbox)

Every posted record is an ``alert_record`` (kept raw, size-limited, with the reason when no parser
understood it); each alert a parser read from it is a ``security_alert``. An ``incident`` gathers the
alerts of one (VM, category) while it is open; ``open_key`` is that pair while the incident is open and
NULL afterwards, so the unique constraint allows one open incident per pair and any number of closed ones.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from vmportal.kit.db import EncryptedString, UTCDateTime, utcnow

# The e-mail outbox is mail's own table; re-exported here for the callers that import it from here.
from vmportal.mail.models import Notification, NotificationState  # noqa: F401

# ---- enumerations (stored as plain strings) ----------------------------------------------------------


class AlertState(enum.StrEnum):
    RECEIVED = "received"  # stored, not yet matched (the processing task is queued)
    MATCHED = "matched"  # attached to a VM and an incident
    UNMATCHED = "unmatched"  # no VM or system of the inventory: waits for a human
    NOTED = "noted"  # matched, but nothing to do (a "resolved" message with no open incident)


class IncidentState(enum.StrEnum):
    OPEN = "open"  # awaiting a center user's decision (notify only, or a VM named but not accused)
    CONTAINING = "containing"  # containment decided; the task runs, or waits for the hypervisor
    CONTAINED = "contained"  # the hypervisor confirmed the containment: the VM is suspended
    RECTIFICATION_SUBMITTED = "rectification_submitted"  # the unit reported; the center reviews
    RESTORING = "restoring"  # report accepted (or dismissed): the restore task runs
    CLOSED = "closed"  # rectified, verified, VM restored
    DISMISSED = "dismissed"  # a false positive, released by the center


class ContainmentState(enum.StrEnum):
    NONE = "none"  # nothing decided to do (notify only)
    PENDING = "pending"  # queued, or waiting for an unreachable hypervisor (see last_error)
    CONFIRMED = "confirmed"  # the hypervisor reported the VM isolated / off / web-blocked
    FAILED = "failed"  # the hypervisor refused (see last_error); the center may retry
    RELEASED = "released"  # undone by the restore, confirmed by the hypervisor


class RestoreState(enum.StrEnum):
    NONE = "none"
    PENDING = "pending"
    CONFIRMED = "confirmed"  # the hypervisor confirmed the VM reconnected / powered on
    HELD = "held"  # the incident closed, but another open incident still holds the VM
    FAILED = "failed"


class Resolution(enum.StrEnum):
    NONE = ""
    RECTIFIED = "rectified"  # the center accepted the unit's rectification report
    FALSE_POSITIVE = "false_positive"  # the center dismissed the incident


class RectificationState(enum.StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"  # the incident was dismissed while the report waited for review


class FindingState(enum.StrEnum):
    OPEN = "open"
    NOTIFIED = "notified"  # the unit has been told (e-mail, notice)
    FIXED = "fixed"  # the unit says it is fixed
    RETESTED = "retested"  # the center retested it
    CLOSED = "closed"


class ViolationState(enum.StrEnum):
    OPEN = "open"
    EXEMPTED = "exempted"  # an exemption was granted after it was raised
    RESOLVED = "resolved"  # a later scan no longer sees the service
    SHUT_DOWN = "shut_down"  # the center shut the VM down over it


# ---- alert sources and what they post -----------------------------------------------------------------


class AlertSource(SQLModel, table=True):
    """A machine that may post alerts (IDS, host agent, SIEM, monitoring), with its own credentials."""

    __tablename__ = "alert_source"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, sa_column_kwargs={"unique": True}, nullable=False)  # the URL path
    kind: str = Field(max_length=20)  # vmportal.alerts.SourceKind
    description: str = Field(default="", max_length=500)
    # Encrypted at rest, shown once when generated; None when the source does not use that method.
    secret: str | None = Field(default=None, sa_type=EncryptedString)  # Standard Webhooks HMAC key
    token: str | None = Field(default=None, sa_type=EncryptedString)  # bearer token
    allowed_cidrs: list[str] = Field(default_factory=list, sa_type=sa.JSON)  # empty: any address
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: int | None = Field(default=None, foreign_key="user.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    credentials_rotated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_post_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AlertWebhookId(SQLModel, table=True):
    """A signed post's ``webhook-id``, remembered against replay (the unique pair is the guard)."""

    __tablename__ = "alert_webhook_id"
    __table_args__ = (sa.UniqueConstraint("source_id", "webhook_id", name="uq_alert_webhook_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="alert_source.id")
    webhook_id: str = Field(max_length=256)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    record_count: int = 0


class AlertRecord(SQLModel, table=True):
    """One record of a post, as received (size-limited), kept whether or not a parser understood it."""

    __tablename__ = "alert_record"

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = Field(foreign_key="alert_source.id", index=True)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    webhook_id: str = Field(default="", max_length=256)
    position: int = 0  # index in the posted body (array element or JSON line)
    raw: str = Field(default="", sa_type=sa.Text)
    raw_truncated: bool = False
    format: str = Field(default="", max_length=20)  # the format understood; "" when none was
    error_code: str = Field(default="", max_length=40, index=True)  # "" when understood
    error: str = Field(default="", max_length=2000)
    error_field: str = Field(default="", max_length=200)
    alert_count: int = 0  # alerts read from it (an Alertmanager group holds several)


class SecurityAlert(SQLModel, table=True):
    """One alert in the internal form (``vmportal.alerts.Alert``), with what the portal did with it."""

    __tablename__ = "security_alert"
    __table_args__ = (
        # Deduplication: a sender's key per source (Alertmanager's resolved message of an alert shares
        # the firing one's key, so the resolution is its own row).
        sa.UniqueConstraint("source_id", "external_id", "resolved", name="uq_security_alert_external"),
    )

    id: int | None = Field(default=None, primary_key=True)
    record_id: int = Field(foreign_key="alert_record.id", index=True)
    source_id: int = Field(foreign_key="alert_source.id", index=True)
    received_at: datetime = Field(sa_type=UTCDateTime, index=True)
    format: str = Field(max_length=20)
    category: str = Field(max_length=20)
    severity: str = Field(max_length=10)
    confidence: str = Field(max_length=10)
    external_id: str = Field(max_length=512)
    window_key: str | None = Field(default=None, max_length=512)
    resolved: bool = False
    title: str = Field(default="", max_length=500)
    addresses: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    subject_roles: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    target_host: str | None = Field(default=None, max_length=253)
    target_host_role: str | None = Field(default=None, max_length=10)
    evidence: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    state: str = Field(default=AlertState.RECEIVED, max_length=20, index=True)
    vm_id: int | None = Field(default=None, foreign_key="vm.id", index=True)
    match: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)  # via, value, role, field, accused
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    repeats: int = 0  # the same alert (same external_id) posted again
    last_repeat_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    assigned_by: int | None = Field(default=None, foreign_key="user.id")  # a human matched it


# ---- incidents ---------------------------------------------------------------------------------------


class Incident(SQLModel, table=True):
    __tablename__ = "incident"

    id: int | None = Field(default=None, primary_key=True)
    vm_id: int | None = Field(default=None, foreign_key="vm.id", index=True)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    system_id: int | None = Field(default=None, foreign_key="information_system.id")
    origin: str = Field(default="alert", max_length=20)  # alert | notice | scan | manual
    category: str = Field(max_length=20)
    severity: str = Field(max_length=10)  # the gravest seen
    confidence: str = Field(max_length=10)  # high once any alert was of high confidence
    title: str = Field(default="", max_length=500)
    state: str = Field(default=IncidentState.OPEN, max_length=30, index=True)
    containment_state: str = Field(default=ContainmentState.NONE, max_length=20, index=True)
    restore_state: str = Field(default=RestoreState.NONE, max_length=20)
    # "<vm id>:<category>" while the incident is open, NULL once closed or dismissed.
    open_key: str | None = Field(default=None, max_length=100, sa_column_kwargs={"unique": True})
    alert_count: int = 0
    first_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # The containment decision (policies.compromise) and its reasons, as shown to people.
    action: str = Field(default="notify_only", max_length=20)  # policies.compromise.Containment
    decision_rule: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    reasons_en: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    reasons_zh: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    decision_fallback: bool = False
    decided_by: str = Field(default="", max_length=100)  # "policy" or the username who confirmed
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Execution
    executed_action: str = Field(default="", max_length=20)  # what the hypervisor did (after fallback)
    trigger_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # latency measured from here
    contained_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    containment_latency_seconds: float | None = None
    attempts: int = 0
    last_error: str = Field(default="", max_length=2000)
    # Release
    resolution: str = Field(default="", max_length=20)  # rectified | false_positive
    resolution_reason: str = Field(default="", max_length=2000)
    resolved_by: int | None = Field(default=None, foreign_key="user.id")
    restored_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    quarantine_seconds: float | None = None  # contained_at → restored_at
    version: int = 0  # bumped on every state change


class IncidentEvent(SQLModel, table=True):
    """The incident's timeline: decisions, actions and their results, in words for people."""

    __tablename__ = "incident_event"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    kind: str = Field(max_length=40)
    actor: str = Field(default="", max_length=100)
    message_en: str = Field(default="", max_length=2000)
    message_zh: str = Field(default="", max_length=2000)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class ContainmentPolicy(SQLModel, table=True):
    """The center's containment table (one row, id 1); absent means ``policies.compromise.DEFAULT_TABLE``."""

    __tablename__ = "containment_policy"

    id: int | None = Field(default=None, primary_key=True)
    rules: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_by: int | None = Field(default=None, foreign_key="user.id")


# ---- rectification -----------------------------------------------------------------------------------


class Rectification(SQLModel, table=True):
    """A unit's rectification report (整改报告) on an incident, and the center's verdict."""

    __tablename__ = "rectification"

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", index=True)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    vm_id: int | None = Field(default=None, foreign_key="vm.id")
    text: str = Field(sa_type=sa.Text)
    state: str = Field(default=RectificationState.SUBMITTED, max_length=20, index=True)
    submitted_by: int | None = Field(default=None, foreign_key="user.id")
    submitted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    decided_by: int | None = Field(default=None, foreign_key="user.id")
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decision_reason: str = Field(default="", max_length=2000)


class RectificationAttachment(SQLModel, table=True):
    __tablename__ = "rectification_attachment"

    id: int | None = Field(default=None, primary_key=True)
    rectification_id: int = Field(foreign_key="rectification.id", index=True)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=100)
    size: int
    sha256: str = Field(max_length=64)  # stored under upload_dir/<sha256>, like signed documents


# ---- notices and findings (issue 4 points 7–8) --------------------------------------------------------


class Notice(SQLModel, table=True):
    """A notice (通报) from the ministry, police, CNCERT, the cyberspace administration or a scanning
    service, entered by center staff."""

    __tablename__ = "notice"
    __table_args__ = (sa.UniqueConstraint("issuer", "notice_number", name="uq_notice_issuer_number"),)

    id: int | None = Field(default=None, primary_key=True)
    issuer: str = Field(max_length=200)
    issuer_kind: str = Field(
        default="other", max_length=20
    )  # ministry | police | cncert | cac | scanner | other
    notice_number: str = Field(max_length=100)  # 通报编号
    received_on: date | None = None
    target_url: str = Field(default="", max_length=2000)
    target_ip: str = Field(default="", max_length=64)
    target_mailbox: str = Field(default="", max_length=254)
    event_type: str = Field(default="", max_length=100)  # as the notice words it (挂马, 暗链…)
    category: str = Field(max_length=20)  # policies.compromise.Category
    severity: str = Field(default="high", max_length=10)
    evidence: str = Field(default="", sa_type=sa.Text)
    required_action: str = Field(default="", max_length=500)  # 清除, 关停, 限制校外访问
    deadline_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    vm_id: int | None = Field(default=None, foreign_key="vm.id", index=True)
    system_id: int | None = Field(default=None, foreign_key="information_system.id")
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    state: str = Field(default="open", max_length=20, index=True)
    entered_by: int | None = Field(default=None, foreign_key="user.id")
    entered_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    confirmed_by: int | None = Field(default=None, foreign_key="user.id")
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    feedback_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # 整改反馈 sent to the issuer


class Finding(SQLModel, table=True):
    """A vulnerability, backdoor, dark link or weak password to fix by a deadline set by severity:
    open → notified → fixed (by the unit) → retested (by the center) → closed."""

    __tablename__ = "finding"

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    vm_id: int | None = Field(default=None, foreign_key="vm.id", index=True)
    system_id: int | None = Field(default=None, foreign_key="information_system.id")
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    notice_id: int | None = Field(default=None, foreign_key="notice.id", index=True)
    origin: str = Field(default="manual", max_length=20)  # alert | notice | scan | manual
    category: str = Field(max_length=20)  # policies.compromise.Category
    severity: str = Field(max_length=10)
    title: str = Field(max_length=500)
    description: str = Field(default="", sa_type=sa.Text)
    target: str = Field(default="", max_length=2000)  # URL, ip:port, account
    evidence: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    state: str = Field(default=FindingState.OPEN, max_length=20, index=True)
    deadline_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: int | None = Field(default=None, foreign_key="user.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    notified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    fixed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    fixed_by: int | None = Field(default=None, foreign_key="user.id")
    fix_note: str = Field(default="", max_length=2000)
    retested_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    retested_by: int | None = Field(default=None, foreign_key="user.id")
    retest_passed: bool | None = None
    retest_note: str = Field(default="", max_length=2000)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = 0


# ---- forbidden services (point 9) ---------------------------------------------------------------------


class ServiceScan(SQLModel, table=True):
    """An uploaded Nmap XML report."""

    __tablename__ = "service_scan"

    id: int | None = Field(default=None, primary_key=True)
    uploaded_by: int | None = Field(default=None, foreign_key="user.id")
    uploaded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    filename: str = Field(default="", max_length=255)
    sha256: str = Field(max_length=64, index=True)
    scanner: str = Field(default="", max_length=500)  # nmap version and arguments
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    hosts_up: int = 0
    open_ports: int = 0
    violations_raised: int = 0


class ServiceViolation(SQLModel, table=True):
    """A forbidden service (mail, DNS, proxy, forum) seen open on a VM without an exemption. Raised once
    per appearance: ``open_key`` (vm:protocol/port:service) is set while open and cleared when resolved."""

    __tablename__ = "service_violation"

    id: int | None = Field(default=None, primary_key=True)
    vm_id: int = Field(foreign_key="vm.id", index=True)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    scan_id: int | None = Field(default=None, foreign_key="service_scan.id")  # the scan that raised it
    last_scan_id: int | None = Field(default=None, foreign_key="service_scan.id")  # last seen in
    ip: str = Field(max_length=64)
    protocol: str = Field(max_length=10)
    port: int
    service: str = Field(max_length=20)  # policies.forbidden_services.ServiceKind
    product: str = Field(default="", max_length=200)
    version: str = Field(default="", max_length=100)
    evidence: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    reasons_en: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    reasons_zh: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    state: str = Field(default=ViolationState.OPEN, max_length=20, index=True)
    open_key: str | None = Field(default=None, max_length=200, sa_column_kwargs={"unique": True})
    first_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_by: int | None = Field(default=None, foreign_key="user.id")
    note: str = Field(default="", max_length=1000)


class ServiceExemption(SQLModel, table=True):
    """The center's approval (agreement §6: 经有关部门同意) for a service on a VM."""

    __tablename__ = "service_exemption"

    id: int | None = Field(default=None, primary_key=True)
    vm_id: int = Field(foreign_key="vm.id", index=True)
    unit_id: int | None = Field(default=None, foreign_key="unit.id", index=True)
    service: str = Field(max_length=20)  # policies.forbidden_services.ServiceKind
    protocol: str | None = Field(default=None, max_length=10)  # None: any
    port: int | None = None  # None: any port
    reason: str = Field(max_length=1000)
    granted_by: int | None = Field(default=None, foreign_key="user.id")
    granted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_by: int | None = Field(default=None, foreign_key="user.id")
