"""Notices (通报) from the authorities (issue 4 point 7): the ministry of education, the police, the
cyberspace administration, CNCERT, a scanning service such as 360.

They arrive as documents, e-mails or platform tickets, so center staff enter them: issuer and notice
number, the target (URL, campus IP or mailbox), the event type as the notice words it, evidence and
attachments, the required action and the deadline. The portal then

* matches the target to a VM: the IP (or the URL's host when it is an IP) against the inventory's
  addresses, else the URL's host against the domains of the VMs' information systems (exactly, as
  alerts do); a domain registered for a system with no VM still names the unit;
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

Deadlines are entered as the notice words them: an ISO date-time (Beijing time when it has no zone), a
date (the end of that day), "3月20日前" / "2026年3月20日18时前" (the end of the day unless an hour is
given; a month-day already past this year is next year's), or a duration counted from the moment the
notice is entered: "24小时内", "3天内", "5个工作日内" (Monday to Friday, public holidays not known: enter
the date when one falls inside). Without one, the finding's deadline follows its severity.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, col, func, select

from policies.compromise import Category, Confidence, Containment, Severity
from policies.roles import Actor, Role
from vmportal.alerts.ingest import build_inventory
from vmportal.alerts.model import normalise_host, normalise_ip
from vmportal.audit.service import Who, record
from vmportal.compliance import findings
from vmportal.incidents import service as incidents
from vmportal.incidents.lifecycle import add_event
from vmportal.incidents.models import Finding, Incident, Notice
from vmportal.incidents.rectification import Stored, Upload, store_attachment
from vmportal.kit import db, errors
from vmportal.kit.scope import can_see_unit
from vmportal.kit.settings import Settings, get_settings
from vmportal.mail import service as notification
from vmportal.mail.service import MailEvent, beijing
from vmportal.unit.models import InformationSystem, Unit
from vmportal.unit.service import BEIJING
from vmportal.vm.models import VM, Lifecycle


class Issuer(enum.StrEnum):
    MINISTRY = "教育部"
    POLICE = "公安"
    CAC = "网信"
    CNCERT = "CNCERT"
    SCANNER_360 = "360"
    OTHER = "other"


ISSUER_KIND: dict[Issuer, str] = {
    Issuer.MINISTRY: "ministry",
    Issuer.POLICE: "police",
    Issuer.CAC: "cac",
    Issuer.CNCERT: "cncert",
    Issuer.SCANNER_360: "scanner",
    Issuer.OTHER: "other",
}


class EventType(enum.StrEnum):
    TROJAN_SITE = "挂马"
    DARK_LINK = "暗链"
    DEFACEMENT = "篡改"
    WEBSHELL = "webshell"
    BACKDOOR = "后门"
    BOTNET = "僵木蠕"
    MINING = "挖矿"
    HIGH_VULNERABILITY = "高危漏洞"
    MEDIUM_VULNERABILITY = "中危漏洞"
    WEAK_PASSWORD = "弱口令"  # noqa: S105  (the event's name, not a secret)
    HARMFUL_CONTENT = "有害信息"


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


class NoticeState(enum.StrEnum):
    UNMATCHED = "unmatched"  # no VM or unit found: the center assigns it
    OPEN = "open"  # matched; the incident waits for the center's confirmation (or names a unit only)
    CONFIRMED = "confirmed"  # a center user ordered the containment


HOLD_REASON = (
    "Entered from an authority's notice: the VM is contained only when a center user confirms it.",
    "来自主管部门通报，经信息中心确认后才执行处置。",
)
MAX_EVIDENCE = 20_000
MAX_FILES = 10


# ---- deadlines --------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^(\d{1,4})\s*个?\s*(小时|天|日|自然日|工作日|h|d)\s*(?:以?内)?$", re.IGNORECASE)
_MONTH_DAY = re.compile(
    r"^(?:(\d{4})\s*年\s*)?(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]"
    r"\s*(?:(\d{1,2})\s*[时点:：]\s*(?:(\d{1,2})\s*分?)?)?\s*(?:之?前|以前|为止)?$"
)


def _bad_deadline(text: str, why: str) -> errors.InvalidField:
    return errors.InvalidField(
        "deadline",
        "format",
        f"{why}: give an ISO date-time, a date, '3月20日前' or a duration such as '24小时内' "
        f"(got {text[:40]!r})",
        message_zh=f"{why}：请填写日期时间（如 2026-03-20T18:00）、“3月20日前”或“24小时内”",
    )


def _add_working_days(start: datetime, days: int) -> datetime:
    local = start.astimezone(BEIJING)
    while days > 0:
        local += timedelta(days=1)
        if local.weekday() < 5:
            days -= 1
    return local


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=BEIJING)


def parse_deadline(text: str | None, now: datetime) -> datetime | None:
    """The deadline a notice states, as an aware datetime; None when it states none (422 when unreadable)."""
    if text is None or not text.strip():
        return None
    raw = text.strip()
    if m := _RELATIVE.match(raw):
        amount, unit = int(m.group(1)), m.group(2).lower()
        if amount <= 0:
            raise _bad_deadline(raw, "the duration must be positive")
        if unit in ("小时", "h"):
            return now + timedelta(hours=amount)
        if unit == "工作日":
            return _add_working_days(now, amount)
        return now + timedelta(days=amount)
    if m := _MONTH_DAY.match(raw):
        year = int(m.group(1)) if m.group(1) else now.astimezone(BEIJING).year
        try:
            day = date(year, int(m.group(2)), int(m.group(3)))
        except ValueError:
            raise _bad_deadline(raw, "no such date") from None
        if not m.group(1) and day < now.astimezone(BEIJING).date():
            try:
                day = date(year + 1, day.month, day.day)  # "1月5日前" entered in late December
            except ValueError:
                raise _bad_deadline(raw, "no such date") from None
        if m.group(4) is None:
            return _end_of_day(day)
        hour, minute = int(m.group(4)), int(m.group(5) or 0)
        if hour > 24 or minute > 59 or (hour == 24 and minute):
            raise _bad_deadline(raw, "no such time")
        if hour == 24:
            return _end_of_day(day)
        return datetime.combine(day, time(hour, minute), tzinfo=BEIJING)
    try:
        if len(raw) == 10:
            return _end_of_day(date.fromisoformat(raw))
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad_deadline(raw, "not a date or a duration") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=BEIJING)


# ---- matching ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    vm: VM | None
    unit_id: int | None
    system_id: int | None
    via: str  # address | hostname | system_domain | ""
    value: str


def _url_host(url: str) -> str:
    text = url.strip()
    if not text:
        return ""
    try:
        parts = urlsplit(text if "://" in text else f"http://{text}")
        return (parts.hostname or "").strip()
    except ValueError:
        return ""


def match_target(session: Session, target_url: str, target_ip: str) -> Target:
    """The VM (or at least the unit) a notice is about; nothing when the inventory does not know it."""
    inventory = build_inventory(session)
    host = _url_host(target_url)
    addresses = [a for a in (normalise_ip(target_ip), normalise_ip(host)) if a]
    for address in addresses:
        vm_id = inventory.addresses.get(address)
        if vm_id is not None:
            vm = session.get(VM, vm_id)
            if vm is not None:
                return Target(vm, vm.unit_id, vm.system_id, "address", address)
    name = normalise_host(host) if host else None
    if name is not None:
        vm_id = inventory.hosts.get(name)
        if vm_id is not None:
            vm = session.get(VM, vm_id)
            if vm is not None:
                return Target(vm, vm.unit_id, vm.system_id, "hostname", name)
        owners = {
            (system.unit_id, system.id)
            for system in session.exec(select(InformationSystem))
            if name in {normalise_host(d) for d in system.domains or []}
        }
        if len(owners) == 1:  # two units claiming one domain: a human decides
            unit_id, system_id = owners.pop()
            return Target(None, unit_id, system_id, "system_domain", name)
    return Target(None, None, None, "", "")


# ---- entering ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeInput:
    issuer: Issuer
    issuer_name: str
    notice_number: str
    event_type: EventType
    target_url: str = ""
    target_ip: str = ""
    target_mailbox: str = ""
    received_on: date | None = None
    severity: Severity | None = None
    evidence: str = ""
    required_action: str = ""
    deadline: str | None = None
    title: str = ""


def _validate(data: NoticeInput) -> None:
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
    if data.target_url.strip() and not _url_host(data.target_url):
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


def issuer_text(data: NoticeInput) -> str:
    return (data.issuer_name.strip() or data.issuer.value)[:200]


def _title(notice: Notice) -> str:
    target = notice.target_url or notice.target_ip or notice.target_mailbox
    return f"{notice.issuer}通报 {notice.notice_number}：{notice.event_type} {target}".strip()[:500]


def create_notice(
    session: Session,
    actor: Actor,
    who: Who,
    data: NoticeInput,
    uploads: list[Upload] | None = None,
    settings: Settings | None = None,
) -> Notice:
    """Enter a notice: matched, turned into a (held) incident and a finding, the unit and center told."""
    settings = settings or get_settings()
    _validate(data)
    uploads = uploads or []
    if len(uploads) > MAX_FILES:
        raise errors.InvalidField("files", "max_items", f"at most {MAX_FILES} attachments")
    issuer_kind = ISSUER_KIND[data.issuer]
    number = data.notice_number.strip()
    existing = session.exec(
        select(Notice).where(col(Notice.issuer_kind) == issuer_kind, col(Notice.notice_number) == number)
    ).first()
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
        issuer=issuer_text(data),
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
    _mail(session, notice, finding)
    return notice


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


def _mail(session: Session, notice: Notice, finding: Finding) -> None:
    target = notice.target_url or notice.target_ip or notice.target_mailbox
    due = beijing(finding.deadline_at)
    if notice.unit_id is None:
        notification.notify(
            session,
            MailEvent.NOTICE,
            None,
            subject_zh=f"通报未能关联到虚拟机，请人工处理：{notice.issuer} {notice.notice_number}",
            subject_en=f"Notice {notice.notice_number} ({notice.issuer}) matches no VM: assign it by hand",
            body_zh=f"{notice.issuer}通报 {notice.notice_number}（{notice.event_type}）所指对象 {target} "
            f"不在虚拟机台账中。请核实后在平台上指定对应的虚拟机。整改期限：{due}。",
            body_en=f"Notice {notice.notice_number} from {notice.issuer} ({notice.event_type}) names "
            f"{target}, which the inventory does not know. Check it and assign it to a VM in the portal. "
            f"Deadline: {due}.",
            related_type="notice",
            related_id=notice.id,
            link=f"/api/v1/notices/{notice.id}",
            center_only=True,
        )
        return
    with session.no_autoflush:
        vm = session.get(VM, notice.vm_id) if notice.vm_id is not None else None
    on_vm_zh = f"（虚拟机 {vm.name}）" if vm is not None else ""
    on_vm_en = f" (VM {vm.name})" if vm is not None else ""
    notification.notify(
        session,
        MailEvent.NOTICE,
        notice.unit_id,
        subject_zh=f"{notice.issuer}安全通报 {notice.notice_number}：{notice.event_type}，请于 {due} 前整改",
        subject_en=f"Security notice {notice.notice_number} from {notice.issuer}: fix by {due} Beijing time",
        body_zh=(
            f"{notice.issuer}通报（编号 {notice.notice_number}）指出您单位的 {target}{on_vm_zh} 存在"
            f"“{notice.event_type}”问题。\n\n"
            + (f"处置要求：{notice.required_action}\n" if notice.required_action else "")
            + f"整改期限：{due}（北京时间）\n"
            + (f"\n证据：\n{notice.evidence}\n" if notice.evidence else "")
            + f"\n请立即核查整改，完成后在平台上报告（安全隐患 #{finding.id}）。"
            "信息中心将视情况断开该虚拟机的网络或服务，并在复测后向通报单位反馈整改情况。"
        ),
        body_en=(
            f"Notice {notice.notice_number} from {notice.issuer} reports '{notice.event_type}' on "
            f"{target}{on_vm_en} of your unit.\n\n"
            + (f"Required action: {notice.required_action}\n" if notice.required_action else "")
            + f"Deadline: {due} (Beijing time)\n\n"
            + f"Please check and fix it now, then report it in the portal (finding #{finding.id}). The "
            "center may disconnect the VM's network or service, and reports the rectification to the "
            "issuer after a retest."
        ),
        related_type="notice",
        related_id=notice.id,
        link=f"/api/v1/notices/{notice.id}",
    )


# ---- the center's follow-up --------------------------------------------------------------------------


def get_notice(session: Session, actor: Actor, notice_id: int) -> Notice:
    notice = session.get(Notice, notice_id)
    if notice is None or not can_see_unit(actor, notice.unit_id):
        raise errors.NotFound("notice", notice_id)
    return notice


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
) -> Notice:
    """A center user orders the containment the notice calls for, through the incident workflow."""
    notice = get_notice(session, actor, notice_id)
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
    return notice


def assign(session: Session, actor: Actor, who: Who, notice_id: int, vm_id: int) -> Notice:
    """A center user names the VM of a notice the inventory did not match (or matched to a unit only)."""
    notice = get_notice(session, actor, notice_id)
    if notice.vm_id is not None:
        raise errors.StateConflict(
            "notice",
            notice.state,
            "assign",
            message=f"notice {notice_id} is already linked to VM {notice.vm_id}",
        )
    vm = session.get(VM, vm_id)
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
    linked = list(session.exec(select(Finding).where(col(Finding.notice_id) == notice_id)).all())
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
        _mail(session, notice, linked[0])
    return notice


# ---- reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeFilters:
    state: NoticeState | None = None
    unit_id: int | None = None
    vm_id: int | None = None
    issuer: Issuer | None = None
    limit: int = 50
    offset: int = 0


def list_notices(session: Session, actor: Actor, f: NoticeFilters) -> tuple[list[Notice], int]:
    conditions: list[Any] = []
    if actor.role in (Role.UNIT_ADMIN, Role.UNIT_LEAD):
        conditions.append(col(Notice.unit_id) == actor.unit_id)
    if f.state is not None:
        conditions.append(col(Notice.state) == f.state.value)
    if f.unit_id is not None:
        conditions.append(col(Notice.unit_id) == f.unit_id)
    if f.vm_id is not None:
        conditions.append(col(Notice.vm_id) == f.vm_id)
    if f.issuer is not None:
        conditions.append(col(Notice.issuer_kind) == ISSUER_KIND[f.issuer])
    rows = session.exec(
        select(Notice).where(*conditions).order_by(col(Notice.id).desc()).limit(f.limit).offset(f.offset)
    ).all()
    total = int(session.exec(select(func.count()).select_from(Notice).where(*conditions)).one())
    return list(rows), total


def findings_of(session: Session, notice_ids: list[int]) -> dict[int, list[Finding]]:
    out: dict[int, list[Finding]] = {i: [] for i in notice_ids}
    if notice_ids:
        for f in session.exec(
            select(Finding).where(col(Finding.notice_id).in_(notice_ids)).order_by(col(Finding.id))
        ):
            if f.notice_id is not None:
                out.setdefault(f.notice_id, []).append(f)
    return out


def incidents_of(session: Session, notices: list[Notice]) -> dict[int, Incident]:
    ids = [n.incident_id for n in notices if n.incident_id is not None]
    if not ids:
        return {}
    return {
        i.id: i for i in session.exec(select(Incident).where(col(Incident.id).in_(ids))) if i.id is not None
    }


def attachments(finding_rows: list[Finding]) -> list[dict[str, Any]]:
    for f in finding_rows:
        found = (f.evidence or {}).get("attachments")
        if isinstance(found, list):
            return [a for a in found if isinstance(a, dict)]
    return []


def unit_code(session: Session, unit_id: int | None) -> str | None:
    unit = session.get(Unit, unit_id) if unit_id is not None else None
    return unit.code if unit is not None else None
