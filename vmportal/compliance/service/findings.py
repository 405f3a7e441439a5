"""Findings (issue 4 point 8): a vulnerability, backdoor, dark link, weak password… that a unit must fix
by a deadline set by its severity, and the center retests. The states and who moves them are
:data:`vmportal.compliance.lifecycle.FINDING`; every change here goes through its ``move``.

Deadlines (:mod:`.deadlines`) count from when the finding is opened or reopened, unless the finding
carries its own (a notice's "24小时内"). A finding is *overdue* while it is open or notified past its
deadline; once the unit reports it fixed the wait is the center's, so it no longer counts. Reminders
go out 48 hours before the deadline (only when the deadline was further away than that when it was
set: a 24-hour finding's opening mail already says so) and once when it passes, each once per
deadline; :mod:`vmportal.compliance.tasks` runs them, one finding per transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session

from policies.compromise import Category, Severity
from policies.roles import Actor
from vmportal.audit.service import Who, record
from vmportal.compliance import lifecycle, repository
from vmportal.compliance.lifecycle import AWAITING_UNIT, FINDING, FindingAction
from vmportal.compliance.schemas import FindingFilters
from vmportal.compliance.service import mails
from vmportal.compliance.service.deadlines import deadline_for
from vmportal.incidents.models import Finding, FindingState, Notification
from vmportal.kit import db, errors
from vmportal.kit.paging import Page, PageRequest
from vmportal.kit.settings import get_settings
from vmportal.mail import service as mail
from vmportal.mail.service import MailEvent

#: The deadline reminder goes out this long before the deadline.
REMIND_BEFORE = timedelta(hours=48)
#: The mails whose delivery tells the unit of a finding (a notice's mail tells it of the notice's).
_TELLING = frozenset(
    {MailEvent.FINDING_OPENED.value, MailEvent.FINDING_REOPENED.value, MailEvent.NOTICE.value}
)


def snapshot(finding: Finding) -> dict[str, Any]:
    """What the audit log keeps of a finding before and after a change."""
    return {
        "state": finding.state,
        "severity": finding.severity,
        "deadline_at": finding.deadline_at.isoformat() if finding.deadline_at else None,
        "unit_id": finding.unit_id,
        "vm_id": finding.vm_id,
    }


def is_overdue(finding: Finding, now: datetime) -> bool:
    return (
        finding.state in {s.value for s in AWAITING_UNIT}
        and finding.deadline_at is not None
        and finding.deadline_at < now
    )


def actions(finding: Finding, actor: Actor) -> list[str]:
    """The calls ``actor`` could make on ``finding`` now, for the UI."""
    return lifecycle.available(finding, actor)


# ---- creating ---------------------------------------------------------------------------------------


def create(
    session: Session,
    who: Who,
    *,
    category: Category | str,
    severity: Severity | str,
    title: str,
    unit_id: int | None,
    vm_id: int | None = None,
    system_id: int | None = None,
    incident_id: int | None = None,
    notice_id: int | None = None,
    origin: str = "manual",
    description: str = "",
    target: str = "",
    evidence: dict[str, Any] | None = None,
    deadline_at: datetime | None = None,
    created_by: int | None = None,
    mail: bool = True,
) -> Finding:
    """Open a finding (deadline by severity unless given) and, with ``mail``, e-mail the unit."""
    category, severity = Category(category), Severity(severity)
    now = db.utcnow()
    finding = Finding(
        unit_id=unit_id,
        vm_id=vm_id,
        system_id=system_id,
        incident_id=incident_id,
        notice_id=notice_id,
        origin=origin,
        category=category.value,
        severity=severity.value,
        title=title[:500],
        description=description,
        target=target[:2000],
        evidence=evidence or {},
        deadline_at=deadline_at or deadline_for(severity, now),
        created_at=now,
        updated_at=now,
        created_by=created_by,
    )
    session.add(finding)
    session.flush()
    record(
        session,
        who,
        "security.finding.create",
        "finding",
        finding.id,
        after={**snapshot(finding), "category": finding.category, "origin": origin, "title": finding.title},
        unit_id=unit_id,
    )
    if mail and unit_id is not None:
        mails.about_finding(session, finding, MailEvent.FINDING_OPENED)
    return finding


def create_for_vm(
    session: Session,
    actor: Actor,
    who: Who,
    *,
    vm_id: int | None,
    unit_id: int | None,
    category: Category,
    severity: Severity,
    title: str,
    description: str = "",
    target: str = "",
    deadline_at: datetime | None = None,
) -> Finding:
    """A center user records a finding (a scan result, a retest, an inspection) on a VM or a unit."""
    system_id = None
    if vm_id is not None:
        vm = repository.vm(session, vm_id)
        if vm is None:
            raise errors.InvalidField(
                "vm_id", "exists", f"VM {vm_id} does not exist", message_zh="虚拟机不存在"
            )
        if unit_id is not None and vm.unit_id != unit_id:
            raise errors.InvalidField(
                "unit_id",
                "matches_vm",
                f"VM {vm_id} belongs to unit {vm.unit_id}",
                message_zh="虚拟机不属于该单位",
            )
        unit_id, system_id = vm.unit_id, vm.system_id
    if unit_id is None:
        raise errors.InvalidField(
            "vm_id",
            "required",
            "name the VM (or at least the unit) the finding is about",
            message_zh="请指定虚拟机或单位",
        )
    if repository.unit(session, unit_id) is None:
        raise errors.InvalidField(
            "unit_id", "exists", f"unit {unit_id} does not exist", message_zh="单位不存在"
        )
    if deadline_at is not None and deadline_at <= db.utcnow():
        raise errors.InvalidField(
            "deadline_at", "future", "the deadline must be in the future", message_zh="整改期限须晚于当前时间"
        )
    return create(
        session,
        who,
        category=category,
        severity=severity,
        title=title,
        unit_id=unit_id,
        vm_id=vm_id,
        system_id=system_id,
        description=description,
        target=target,
        deadline_at=deadline_at,
        created_by=actor.user_id,
    )


# ---- the workflow -----------------------------------------------------------------------------------


def find(session: Session, actor: Actor, finding_id: int) -> Finding:
    """One finding ``actor`` may see (404 otherwise)."""
    return repository.visible_finding(session, actor, finding_id)


def _locked(session: Session, actor: Actor, finding_id: int) -> Finding:
    repository.visible_finding(session, actor, finding_id)
    return repository.lock_finding(session, finding_id)


def _audit(
    session: Session, who: Who, action: str, finding: Finding, before: dict[str, Any], **extra: Any
) -> None:
    record(
        session,
        who,
        f"security.finding.{action}",
        "finding",
        finding.id,
        before=before,
        after={**snapshot(finding), **extra},
        unit_id=finding.unit_id,
    )


def notify_unit(session: Session, actor: Actor, who: Who, finding_id: int, note: str = "") -> Finding:
    """The center tells the unit (again): the mail is queued and the finding is ``notified``."""
    finding = _locked(session, actor, finding_id)
    if finding.unit_id is None:
        raise errors.StateConflict(
            "finding",
            finding.state,
            "notify",
            message="the finding names no unit yet: there is nobody to notify",
        )
    before = snapshot(finding)
    FINDING.move(session, finding, FindingAction.NOTIFY, notified_at=db.utcnow())
    mails.about_finding(session, finding, MailEvent.FINDING_OPENED, extra_zh=note, extra_en=note)
    _audit(session, who, "notify", finding, before, note=note)
    return finding


def fix(session: Session, actor: Actor, who: Who, finding_id: int, note: str) -> Finding:
    """The unit reports the finding fixed, saying how; the center retests it next."""
    finding = _locked(session, actor, finding_id)
    if not FINDING.may(actor.role, FindingAction.FIX):
        raise errors.Forbidden(
            "only the unit's security administrator (or the center) reports a finding fixed",
            message_zh="由本单位网络安全管理员（或信息中心）报告整改完成",
            role=actor.role.value,
        )
    before = snapshot(finding)
    FINDING.move(
        session,
        finding,
        FindingAction.FIX,
        fixed_at=db.utcnow(),
        fixed_by=actor.user_id,
        fix_note=note[:2000],
    )
    _audit(session, who, "fix", finding, before, note=note[:2000])
    return finding


def retest(
    session: Session,
    actor: Actor,
    who: Who,
    finding_id: int,
    *,
    passed: bool,
    note: str = "",
    deadline_at: datetime | None = None,
) -> Finding:
    """The center's retest: passed → closed; failed → open again with a new deadline (given, or by
    severity from now), and the unit is told."""
    finding = _locked(session, actor, finding_id)
    before = snapshot(finding)
    now = db.utcnow()
    if deadline_at is not None and deadline_at <= now:
        raise errors.InvalidField(
            "deadline_at",
            "future",
            "the new deadline must be in the future",
            message_zh="新的整改期限须晚于当前时间",
        )
    FINDING.move(
        session,
        finding,
        FindingAction.RETEST,
        retested_at=now,
        retested_by=actor.user_id,
        retest_passed=passed,
        retest_note=note[:2000],
    )
    if passed:
        FINDING.move(session, finding, FindingAction.PASS)
    else:
        deadline = deadline_at or deadline_for(finding.severity, now)
        FINDING.move(
            session,
            finding,
            FindingAction.FAIL,
            # In UTC, as the column reads it back: the answer and the audit row show it so.
            deadline_at=deadline.astimezone(UTC),
            notified_at=None,
            fixed_at=None,
        )
        mails.about_finding(
            session,
            finding,
            MailEvent.FINDING_REOPENED,
            extra_zh=f"复测说明：{note}" if note else "",
            extra_en=f"Retest note: {note}" if note else "",
        )
    _audit(session, who, "retest", finding, before, passed=passed, note=note[:2000])
    return finding


def close(session: Session, actor: Actor, who: Who, finding_id: int, reason: str) -> Finding:
    """The center closes a finding without a retest (withdrawn, not applicable), saying why."""
    finding = _locked(session, actor, finding_id)
    before = snapshot(finding)
    FINDING.move(session, finding, FindingAction.CLOSE, retest_note=f"closed: {reason}"[:2000])
    _audit(session, who, "close", finding, before, reason=reason)
    return finding


@mail.on_delivered  # registered with the outbox at import: mail knows no finding
def on_delivered(session: Session, sent: Notification) -> None:
    """A mail was delivered: a finding it told the unit about is now ``notified``. Only mails that
    reached a unit address count (one that went to the center alone told the unit nothing)."""
    if sent.unit_id is None or sent.kind not in _TELLING:
        return
    center = get_settings().center_mailbox.strip()
    if not any(address != center for address in sent.to):
        return
    if sent.related_type not in ("finding", "notice") or not sent.related_id.isdigit():
        return
    now = db.utcnow()
    for finding in repository.open_findings_told_by(
        session, sent.related_type, int(sent.related_id), sent.unit_id
    ):
        try:
            FINDING.move(session, finding, FindingAction.NOTIFY, notified_at=now)
        except errors.StateConflict:
            continue  # moved on meanwhile (the center notified it, the unit fixed it): nothing to mark
        record(
            session,
            Who.system("mail"),
            "security.finding.notify",
            "finding",
            finding.id,
            before={"state": FindingState.OPEN.value},
            after={"state": finding.state, "notification_id": sent.id, "to": list(sent.to)},
            unit_id=sent.unit_id,
        )


# ---- reading ----------------------------------------------------------------------------------------


def list_findings(session: Session, actor: Actor, f: FindingFilters, page: PageRequest) -> Page[Finding]:
    """The findings ``actor`` sees that match ``f``, newest first."""
    rows, total = repository.findings(session, actor, f, db.utcnow(), page)
    return Page(rows, total, page.limit, page.offset)


@dataclass(frozen=True)
class OverdueUnit:
    unit_id: int | None
    unit_code: str | None
    unit_name_zh: str | None
    findings: list[Finding]

    @property
    def oldest_deadline(self) -> datetime | None:
        return min((f.deadline_at for f in self.findings if f.deadline_at), default=None)


def overdue_by_unit(session: Session, actor: Actor, now: datetime | None = None) -> list[OverdueUnit]:
    """Every overdue finding, grouped per unit, most overdue units first (units: their own only)."""
    now = now or db.utcnow()
    groups: dict[int | None, OverdueUnit] = {}
    for finding, code, name in repository.overdue_findings(session, actor, now):
        group = groups.setdefault(finding.unit_id, OverdueUnit(finding.unit_id, code, name, []))
        group.findings.append(finding)
    return sorted(groups.values(), key=lambda g: (-len(g.findings), g.oldest_deadline or now))


# ---- reminders --------------------------------------------------------------------------------------


def reminders_due(session: Session, now: datetime) -> list[int]:
    """The findings that may be due a reminder at ``now`` (deadline within 48 hours, or past)."""
    return repository.findings_due_by(session, now + REMIND_BEFORE)


def _deadline_set_at(finding: Finding) -> datetime:
    if finding.retest_passed is False and finding.retested_at is not None:
        return finding.retested_at  # reopened: the new deadline was set then
    return finding.created_at


def remind(session: Session, finding_id: int, now: datetime) -> str | None:
    """Queue the reminder ``finding_id`` is due at ``now``: "due_soon", "overdue", or None (none due,
    or queued before for this deadline)."""
    finding = repository.finding(session, finding_id)
    if finding is None or finding.deadline_at is None or finding.state not in AWAITING_UNIT:
        return None
    if finding.deadline_at <= now:
        what = MailEvent.FINDING_OVERDUE
    elif finding.deadline_at - _deadline_set_at(finding) > REMIND_BEFORE:
        what = MailEvent.FINDING_DUE_SOON
    else:
        return None  # set less than 48 h ahead: the opening mail said when it is due
    if mails.about_finding(session, finding, what) is None:
        return None
    return "overdue" if what is MailEvent.FINDING_OVERDUE else "due_soon"
