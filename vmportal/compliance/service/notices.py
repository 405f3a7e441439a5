"""Notices (通报) from the authorities (issue 4 point 7): the ministry of education, the police, the
cyberspace administration, CNCERT, a scanning service such as 360.

They arrive as documents, e-mails or platform tickets, so center staff enter them: issuer and notice
number, the target (URL, campus IP or mailbox), the event type as the notice words it, evidence and
attachments, the required action and the deadline (:func:`.deadlines.parse_deadline`). The portal then

* matches the target to a VM (:mod:`.targets`);
* opens (or joins) the VM's incident for the notice's category, **notify-only**: the notice is
  authoritative, but nothing is suspended until a center user confirms (``POST
  /notices/{id}/confirm`` or the incident's own confirm), which runs the incident workflow's
  containment;
* opens a finding with the notice's deadline, which the unit fixes and the center retests;
* e-mails the unit's security administrator and lead and the center (the center alone when nothing
  matched: such a notice waits for a human to assign it to a VM).

Event types map to categories per ``alert-formats.md``: 挂马 and 僵木蠕 → trojan, 暗链 → dark_link,
webshell, 后门 → backdoor, 挖矿 → virus, 弱口令 → weak_password, 漏洞 → vulnerability; 篡改 (a
defaced page) and 有害信息 (harmful content) → other.

A notice's state is ``unmatched`` → (assign) ``open`` → (confirm) ``confirmed``; the incident it
opened carries the containment's own states.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session

from policies.compromise import Category, Confidence, Containment, Severity
from policies.roles import Actor
from vmportal.alerts.model import normalise_ip
from vmportal.audit.service import Who, record
from vmportal.compliance import repository
from vmportal.compliance.models import ISSUER_KIND, EventType, Issuer, NoticeState
from vmportal.compliance.schemas import MAX_EVIDENCE, MAX_FILES, NoticeFilters, NoticeIn
from vmportal.compliance.service import findings, mails
from vmportal.compliance.service.deadlines import parse_deadline
from vmportal.compliance.service.targets import Target, match_target, url_host
from vmportal.incidents import service as incidents
from vmportal.incidents.models import Finding, Incident, Notice
from vmportal.incidents.rectification import Stored, Upload, store_attachment
from vmportal.incidents.timeline import add_event
from vmportal.kit import db, errors
from vmportal.kit.paging import Page, PageRequest
from vmportal.kit.settings import Settings, get_settings
from vmportal.mail.service import beijing
from vmportal.vm.models import Lifecycle

#: Event type → (category, default severity).
EVENT_TYPES: dict[EventType, tuple[Category, Severity]] = {
    EventType.TROJAN_SITE: (Category.TROJAN, Severity.HIGH),
    EventType.DARK_LINK: (Category.DARK_LINK, Severity.HIGH),
    EventType.DEFACEMENT: (Category.OTHER, Severity.HIGH),
    EventType.WEBSHELL: (Category.WEBSHELL, Severity.CRITICAL),
    EventType.BACKDOOR: (Category.BACKDOOR, Severity.CRITICAL),
    EventType.BOTNET: (Category.TROJAN, Severity.HIGH),
    EventType.MINING: (Category.VIRUS, Severity.HIGH),
    EventType.HIGH_VULNERABILITY: (Category.VULNERABILITY, Severity.HIGH),
    EventType.MEDIUM_VULNERABILITY: (Category.VULNERABILITY, Severity.MEDIUM),
    EventType.WEAK_PASSWORD: (Category.WEAK_PASSWORD, Severity.HIGH),
    EventType.HARMFUL_CONTENT: (Category.OTHER, Severity.HIGH),
}

HOLD_REASON = (
    "Entered from an authority's notice: the VM is contained only when a center user confirms it.",
    "来自主管部门通报，经信息中心确认后才执行处置。",
)


@dataclass(frozen=True)
class NoticeView:
    """A notice as the center reads it: with its unit's code, its findings and its incident."""

    notice: Notice
    unit_code: str | None
    findings: list[Finding]
    incident: Incident | None

    @property
    def suggested_action(self) -> Containment:
        return suggested_action(self.notice)

    @property
    def attachments(self) -> list[dict[str, Any]]:
        return attachments(self.findings)


@dataclass(frozen=True)
class AttachmentFile:
    path: Path
    content_type: str
    filename: str


# ---- entering ---------------------------------------------------------------------------------------


def _validate(data: NoticeIn) -> None:
    if not (data.target_url.strip() or data.target_ip.strip() or data.target_mailbox.strip()):
        raise errors.InvalidField(
            "target_url",
            "required_one_of",
            "give the target URL, IP address or mailbox the notice names",
            message_zh="请填写通报所指的网址、IP地址或邮箱",
        )
    if data.target_ip.strip() and normalise_ip(data.target_ip) is None:
        raise errors.InvalidField(
            "target_ip", "ip_address", "not an IP address", message_zh="不是有效的IP地址"
        )
    if data.target_url.strip() and not url_host(data.target_url):
        raise errors.InvalidField("target_url", "url", "no host in this URL", message_zh="网址中没有主机名")
    if data.target_mailbox.strip() and "@" not in data.target_mailbox:
        raise errors.InvalidField(
            "target_mailbox", "email", "not an e-mail address", message_zh="不是有效的邮箱地址"
        )
    if data.issuer is Issuer.OTHER and not data.issuer_name.strip():
        raise errors.InvalidField(
            "issuer_name", "required", "name the issuer when it is 'other'", message_zh="请填写通报单位名称"
        )
    if len(data.evidence) > MAX_EVIDENCE:
        raise errors.InvalidField("evidence", "max_length", f"at most {MAX_EVIDENCE} characters")


def _title(notice: Notice) -> str:
    target = notice.target_url or notice.target_ip or notice.target_mailbox
    return f"{notice.issuer}通报 {notice.notice_number}：{notice.event_type} {target}".strip()[:500]


def create_notice(
    session: Session,
    actor: Actor,
    who: Who,
    data: NoticeIn,
    uploads: list[Upload] | None = None,
    settings: Settings | None = None,
) -> NoticeView:
    """Enter a notice: matched, turned into a (held) incident and a finding, the unit and center told.
    ``uploads`` are the evidence files, read as they are stored (each checked and kept by its digest)."""
    settings = settings or get_settings()
    _validate(data)
    uploads = uploads or []
    if len(uploads) > MAX_FILES:
        raise errors.InvalidField("files", "max_items", f"at most {MAX_FILES} attachments")
    issuer_kind = ISSUER_KIND[data.issuer]
    number = data.notice_number.strip()
    existing = repository.notice_numbered(session, issuer_kind, number)
    if existing is not None:
        raise errors.Conflict(
            f"notice {number} of {existing.issuer} was entered already (notice {existing.id})",
            message_zh=f"通报 {number}（{existing.issuer}）已录入（编号 {existing.id}）",
            notice_id=existing.id,
        )
    now = db.utcnow()
    category, default_severity = EVENT_TYPES[data.event_type]
    severity = data.severity or default_severity
    deadline = parse_deadline(data.deadline, now)
    stored = [store_attachment(u, i, settings) for i, u in enumerate(uploads)]
    target = match_target(session, data.target_url, data.target_ip)

    notice = Notice(
        issuer=(data.issuer_name.strip() or data.issuer.value)[:200],
        issuer_kind=issuer_kind,
        notice_number=number[:100],
        received_on=data.received_on,
        target_url=data.target_url.strip()[:2000],
        target_ip=(normalise_ip(data.target_ip) or "") if data.target_ip.strip() else "",
        target_mailbox=data.target_mailbox.strip()[:254],
        event_type=data.event_type.value,
        category=category.value,
        severity=severity.value,
        evidence=data.evidence,
        required_action=data.required_action.strip()[:500],
        deadline_at=deadline,
        entered_by=actor.user_id,
        entered_at=now,
        state=NoticeState.UNMATCHED.value if target.unit_id is None else NoticeState.OPEN.value,
    )
    session.add(notice)
    session.flush()
    assert notice.id is not None
    title = data.title.strip() or _title(notice)
    evidence = {
        "notice_id": notice.id,
        "issuer": notice.issuer,
        "notice_number": notice.notice_number,
        "event_type": notice.event_type,
        "required_action": notice.required_action,
        "match": {"via": target.via, "value": target.value},
        "attachments": [_attachment_dict(f) for f in stored],
    }
    finding = findings.create(
        session,
        who,
        category=category,
        severity=severity,
        title=title,
        unit_id=target.unit_id,
        origin="notice",
        notice_id=notice.id,
        description=_finding_text(notice),
        target=notice.target_url or notice.target_ip or notice.target_mailbox,
        evidence=evidence,
        deadline_at=deadline,
        created_by=actor.user_id,
        mail=False,  # the notice's own mail tells the unit (its delivery marks the finding notified)
    )
    _attach(session, who, notice, finding, target, title)
    record(
        session,
        who,
        "security.notice.create",
        "notice",
        notice.id,
        after={
            "issuer": notice.issuer,
            "notice_number": notice.notice_number,
            "category": notice.category,
            "state": notice.state,
            "vm_id": notice.vm_id,
            "unit_id": notice.unit_id,
            "incident_id": notice.incident_id,
            "finding_id": finding.id,
            "deadline_at": finding.deadline_at.isoformat() if finding.deadline_at else None,
            "attachments": [f.sha256 for f in stored],
        },
        unit_id=notice.unit_id,
    )
    mails.about_notice(session, notice, finding)
    return _view(session, notice)


def _attachment_dict(f: Stored) -> dict[str, Any]:
    return {"filename": f.filename, "content_type": f.content_type, "size": f.size, "sha256": f.sha256}


def _finding_text(notice: Notice) -> str:
    parts = [f"通报单位：{notice.issuer}　通报编号：{notice.notice_number}　事件类型：{notice.event_type}"]
    if notice.required_action:
        parts.append(f"处置要求：{notice.required_action}")
    if notice.evidence:
        parts.append(f"证据：\n{notice.evidence}")
    return "\n".join(parts)


def _attach(session: Session, who: Who, notice: Notice, finding: Finding, target: Target, title: str) -> None:
    """Link a matched notice to its VM: the held incident, the finding's VM and unit."""
    notice.unit_id, notice.system_id = target.unit_id, target.system_id
    finding.unit_id, finding.system_id = target.unit_id, target.system_id
    if target.vm is None:
        session.add_all([notice, finding])
        return
    notice.vm_id = finding.vm_id = target.vm.id
    opening = incidents.open_incident(
        session,
        who,
        vm=target.vm,
        category=notice.category,
        severity=notice.severity,
        confidence=Confidence.HIGH,
        title=title,
        seen_at=db.utcnow(),
        origin="notice",
        auto_contain=False,
        hold_reason=HOLD_REASON,
    )
    incident = opening.incident
    notice.incident_id = finding.incident_id = incident.id
    session.add_all([notice, finding])
    add_event(
        session,
        incident,
        "notice",
        actor=who.actor,
        en=f"Notice {notice.notice_number} from {notice.issuer} ({notice.event_type}) on "
        f"{notice.target_url or notice.target_ip}; finding #{finding.id} due {beijing(finding.deadline_at)} "
        "(Beijing time). Waiting for a center user to confirm the containment.",
        zh=f"收到{notice.issuer}通报 {notice.notice_number}（{notice.event_type}）："
        f"{notice.target_url or notice.target_ip}；整改期限 {beijing(finding.deadline_at)}。"
        "待信息中心确认处置。",
        data={"notice_id": notice.id, "finding_id": finding.id, "match": target.via},
    )


# ---- the center's follow-up --------------------------------------------------------------------------


def suggested_action(notice: Notice) -> Containment:
    """What the notice asks for, as a containment: 关停 → power off; 限制校外访问, a page's content (暗链,
    篡改, 有害信息), a vulnerability or weak password → block the web service; malware → isolate."""
    wanted = notice.required_action
    if "关停" in wanted or "关闭" in wanted:
        return Containment.POWER_OFF
    if "限制" in wanted or "断开" in wanted:
        return Containment.BLOCK_WEB
    if notice.category in (
        Category.DARK_LINK.value,
        Category.OTHER.value,
        Category.VULNERABILITY.value,
        Category.WEAK_PASSWORD.value,
    ):
        return Containment.BLOCK_WEB
    return Containment.ISOLATE_NETWORK


def confirm(
    session: Session, actor: Actor, who: Who, notice_id: int, action: Containment | None, reason: str = ""
) -> NoticeView:
    """A center user orders the containment the notice calls for, through the incident workflow."""
    notice = repository.visible_notice(session, actor, notice_id)
    if notice.incident_id is None:
        raise errors.StateConflict(
            "notice",
            notice.state,
            "confirm",
            message=f"notice {notice_id} is not linked to a VM: assign it to one first",
        )
    chosen = action or suggested_action(notice)
    why = reason or f"notice {notice.notice_number} from {notice.issuer}"
    incidents.confirm(session, actor, who, notice.incident_id, chosen, why)
    before = notice.state
    notice.state = NoticeState.CONFIRMED.value
    notice.confirmed_by = actor.user_id
    notice.confirmed_at = db.utcnow()
    session.add(notice)
    record(
        session,
        who,
        "security.notice.confirm",
        "notice",
        notice_id,
        before={"state": before},
        after={"state": notice.state, "action": chosen.value, "incident_id": notice.incident_id},
        detail=reason,
        unit_id=notice.unit_id,
    )
    return _view(session, notice)


def assign(session: Session, actor: Actor, who: Who, notice_id: int, vm_id: int) -> NoticeView:
    """A center user names the VM of a notice the inventory did not match (or matched to a unit only)."""
    notice = repository.visible_notice(session, actor, notice_id)
    if notice.vm_id is not None:
        raise errors.StateConflict(
            "notice",
            notice.state,
            "assign",
            message=f"notice {notice_id} is already linked to VM {notice.vm_id}",
        )
    vm = repository.vm(session, vm_id)
    if vm is None or vm.lifecycle != Lifecycle.ACTIVE:
        raise errors.InvalidField(
            "vm_id", "active_vm", f"VM {vm_id} is not an active VM", message_zh="不是在用的虚拟机"
        )
    if notice.unit_id is not None and vm.unit_id != notice.unit_id:
        raise errors.InvalidField(
            "vm_id",
            "same_unit",
            f"the notice names unit {notice.unit_id}, VM {vm_id} is not theirs",
            message_zh="虚拟机不属于通报所指单位",
        )
    told_before = notice.unit_id is not None
    linked = repository.findings_of_notices(session, [notice_id])[notice_id]
    if not linked:
        raise errors.StateConflict(
            "notice", notice.state, "assign", message="the notice has no finding to assign"
        )
    before = {"state": notice.state, "vm_id": None, "unit_id": notice.unit_id}
    notice.state = NoticeState.OPEN.value
    target = Target(vm, vm.unit_id, vm.system_id, "manual", str(vm_id))
    for f in linked:
        _attach(session, who, notice, f, target, linked[0].title)
    record(
        session,
        who,
        "security.notice.assign",
        "notice",
        notice_id,
        before=before,
        after={
            "state": notice.state,
            "vm_id": vm_id,
            "unit_id": vm.unit_id,
            "incident_id": notice.incident_id,
        },
        unit_id=vm.unit_id,
    )
    if not told_before:
        mails.about_notice(session, notice, linked[0])
    return _view(session, notice)


# ---- reading ----------------------------------------------------------------------------------------


def attachments(finding_rows: list[Finding]) -> list[dict[str, Any]]:
    """The evidence files of a notice, as its finding keeps them (the first finding that has any)."""
    for f in finding_rows:
        found = (f.evidence or {}).get("attachments")
        if isinstance(found, list):
            return [a for a in found if isinstance(a, dict)]
    return []


def _views(session: Session, rows: list[Notice]) -> list[NoticeView]:
    related = repository.findings_of_notices(session, [n.id for n in rows if n.id is not None])
    incident_rows = repository.incidents(session, [n.incident_id for n in rows])
    codes = repository.unit_codes(session, [n.unit_id for n in rows])
    return [
        NoticeView(
            n,
            codes.get(n.unit_id) if n.unit_id is not None else None,
            related.get(n.id or 0, []),
            incident_rows.get(n.incident_id) if n.incident_id is not None else None,
        )
        for n in rows
    ]


def _view(session: Session, notice: Notice) -> NoticeView:
    return _views(session, [notice])[0]


def get_notice(session: Session, actor: Actor, notice_id: int) -> NoticeView:
    """One notice ``actor`` may see (404 otherwise), with its findings and incident."""
    return _view(session, repository.visible_notice(session, actor, notice_id))


def list_notices(session: Session, actor: Actor, f: NoticeFilters, page: PageRequest) -> Page[NoticeView]:
    """The notices ``actor`` sees that match ``f``, newest first."""
    rows, total = repository.notices(session, actor, f, page)
    return Page(_views(session, rows), total, page.limit, page.offset)


def attachment_file(
    session: Session, actor: Actor, notice_id: int, index: int, settings: Settings | None = None
) -> AttachmentFile:
    """Evidence file ``index`` of a notice ``actor`` may see, where it is kept (404 when it is not)."""
    repository.visible_notice(session, actor, notice_id)
    files = attachments(repository.findings_of_notices(session, [notice_id])[notice_id])
    if index >= len(files):
        raise errors.NotFound("attachment", index)
    a = files[index]
    path = (settings or get_settings()).upload_dir / str(a.get("sha256", ""))
    if not path.is_file():
        raise errors.NotFound("attachment file", index)
    return AttachmentFile(path, str(a.get("content_type")), str(a.get("filename")))
