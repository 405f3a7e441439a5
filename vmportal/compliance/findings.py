"""Findings (issue 4 point 8): a vulnerability, backdoor, dark link, weak password… that a unit must fix
by a deadline set by its severity, and the center retests.

    open ──notify (center, or the e-mail delivered)──> notified
    open | notified ──fix (the unit's admin, or the center on its behalf, with a note)──> fixed
    fixed ──retest (center)──> retested ──pass──> closed
                                        └─fail──> open   (a new deadline; the unit is told again)
    open | notified | fixed ──close (center, with a reason: withdrawn, not applicable)──> closed

A retest is one call (``POST /findings/{id}/retest {passed}``) that passes through ``retested`` to
``closed`` or back to ``open``; the retest's result, note and time stay on the finding. Every change is
a compare-and-set on the state (``UPDATE … WHERE state = :read``), so of two concurrent actions one
wins and the other gets a 409 naming the state found.

Deadlines (:data:`DEADLINE_BY_SEVERITY`) count from when the finding is opened or reopened, unless the
finding carries its own (a notice's "24小时内"): critical 24 hours, high 72 hours, medium 7 days, low
30 days. A finding is *overdue* while it is open or notified past its deadline; once the unit reports
it fixed the wait is the center's, so it no longer counts. Reminders go out 48 hours before the deadline
(only when the deadline was further away than that when it was set: a 24-hour finding's opening mail
already says so) and once when it passes, each once per deadline.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from policies.compromise import CATEGORY_NAMES_ZH, SEVERITY_NAMES_ZH, Category, Severity
from policies.roles import Actor, Role
from vmportal.audit.service import Who, record
from vmportal.incidents.models import Finding, FindingState, Notification
from vmportal.kit import db, errors
from vmportal.kit.scope import can_see_unit
from vmportal.kit.settings import get_settings
from vmportal.mail import service as notification
from vmportal.mail.service import MailEvent, beijing
from vmportal.unit.models import Unit
from vmportal.vm.models import VM

log = logging.getLogger(__name__)

F = FindingState

#: How long a unit has to fix a finding, by severity (counted from its opening or reopening).
DEADLINE_BY_SEVERITY: Mapping[Severity, timedelta] = {
    Severity.CRITICAL: timedelta(hours=24),
    Severity.HIGH: timedelta(hours=72),
    Severity.MEDIUM: timedelta(days=7),
    Severity.LOW: timedelta(days=30),
}
#: The deadline reminder goes out this long before the deadline.
REMIND_BEFORE = timedelta(hours=48)
#: States in which the unit still has to act: the only ones that can be overdue.
AWAITING_UNIT: frozenset[FindingState] = frozenset({F.OPEN, F.NOTIFIED})


def deadline_for(severity: Severity | str, start: datetime) -> datetime:
    return start + DEADLINE_BY_SEVERITY[Severity(severity)]


# ---- the state machine, as data ----------------------------------------------------------------------


class FindingAction(enum.StrEnum):
    NOTIFY = "notify"
    FIX = "fix"
    RETEST = "retest"
    PASS = "pass"  # noqa: S105  (the retest's outcome, not a secret)
    FAIL = "fail"
    CLOSE = "close"


CENTER: frozenset[Role] = frozenset({Role.CENTER_ADMIN, Role.CENTER_OPERATOR})


@dataclass(frozen=True)
class Transition:
    action: FindingAction
    moves: Mapping[FindingState, FindingState]
    roles: frozenset[Role] = field(default=CENTER)


TRANSITIONS: dict[FindingAction, Transition] = {
    t.action: t
    for t in (
        Transition(FindingAction.NOTIFY, {F.OPEN: F.NOTIFIED}),
        Transition(FindingAction.FIX, {F.OPEN: F.FIXED, F.NOTIFIED: F.FIXED}, CENTER | {Role.UNIT_ADMIN}),
        Transition(FindingAction.RETEST, {F.FIXED: F.RETESTED}),
        Transition(FindingAction.PASS, {F.RETESTED: F.CLOSED}),
        Transition(FindingAction.FAIL, {F.RETESTED: F.OPEN}),
        Transition(FindingAction.CLOSE, {F.OPEN: F.CLOSED, F.NOTIFIED: F.CLOSED, F.FIXED: F.CLOSED}),
    )
}
#: What a user may call (pass and fail are the retest's outcomes, not calls of their own).
CALLABLE = (FindingAction.NOTIFY, FindingAction.FIX, FindingAction.RETEST, FindingAction.CLOSE)

_STATE_ZH = {
    F.OPEN: "待整改",
    F.NOTIFIED: "已通知",
    F.FIXED: "单位已整改",
    F.RETESTED: "已复测",
    F.CLOSED: "已关闭",
}
_ACTION_ZH = {
    FindingAction.NOTIFY: "通知单位",
    FindingAction.FIX: "报告已整改",
    FindingAction.RETEST: "复测",
    FindingAction.PASS: "复测通过",
    FindingAction.FAIL: "复测未通过",
    FindingAction.CLOSE: "关闭",
}


def check(action: FindingAction, state: str) -> FindingState:
    """The state ``action`` leads to from ``state``; 409 naming ``state`` when it is not allowed."""
    moves = TRANSITIONS[action].moves
    try:
        current: FindingState | None = FindingState(state)
    except ValueError:
        current = None
    if current is not None and current in moves:
        return moves[current]
    allowed = ", ".join(sorted(s.value for s in moves))
    exc = errors.StateConflict(
        "finding",
        state,
        action.value,
        message=f"cannot {action.value} a finding in state '{state}' (only from: {allowed})",
    )
    exc.message_zh = (
        f"安全隐患当前状态为“{_STATE_ZH.get(current, state) if current else state}”，"
        f"不能执行“{_ACTION_ZH[action]}”"
    )
    raise exc


def available(finding: Finding, actor: Actor) -> list[str]:
    """The calls ``actor`` could make on ``finding`` now, for the UI."""
    out = []
    for action in CALLABLE:
        t = TRANSITIONS[action]
        if actor.role not in t.roles or finding.state not in t.moves:
            continue
        if actor.role is Role.UNIT_ADMIN and actor.unit_id != finding.unit_id:
            continue
        out.append(action.value)
    return out


def _move(session: Session, finding: Finding, action: FindingAction, /, **values: Any) -> FindingState:
    """Compare-and-set: the row moves only from the state this transaction read, else 409."""
    assert finding.id is not None
    target = check(action, finding.state)
    now = db.utcnow()
    values = {**values, "state": target.value, "updated_at": now, "version": finding.version + 1}
    if target is F.CLOSED:
        values.setdefault("closed_at", now)
    result = session.exec(
        update(Finding)
        .where(col(Finding.id) == finding.id, col(Finding.state) == finding.state)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        current = session.exec(select(Finding.state).where(col(Finding.id) == finding.id)).first()
        check(action, current or "deleted")
        raise errors.StateConflict("finding", current or "deleted", action.value)
    session.refresh(finding)
    return target


def snapshot(finding: Finding) -> dict[str, Any]:
    return {
        "state": finding.state,
        "severity": finding.severity,
        "deadline_at": finding.deadline_at.isoformat() if finding.deadline_at else None,
        "unit_id": finding.unit_id,
        "vm_id": finding.vm_id,
    }


# ---- e-mail -----------------------------------------------------------------------------------------


def _names(session: Session, finding: Finding) -> tuple[str, str, str, str]:
    """(vm in Chinese, vm in English, category in Chinese, severity in Chinese)."""
    with session.no_autoflush:
        vm = session.get(VM, finding.vm_id) if finding.vm_id is not None else None
    if vm is not None:
        ip = f"（{vm.ip_address}）" if vm.ip_address else ""
        vm_zh, vm_en = (
            f"虚拟机 {vm.name}{ip}",
            f"VM {vm.name}" + (f" ({vm.ip_address})" if vm.ip_address else ""),
        )
    else:
        vm_zh, vm_en = "（未关联虚拟机）", "(no VM)"
    try:
        category_zh = CATEGORY_NAMES_ZH[Category(finding.category)]
    except ValueError:
        category_zh = finding.category
    try:
        severity_zh = SEVERITY_NAMES_ZH[Severity(finding.severity)]
    except ValueError:
        severity_zh = finding.severity
    return vm_zh, vm_en, category_zh, severity_zh


def _mail(
    session: Session, finding: Finding, event: MailEvent, *, extra_zh: str = "", extra_en: str = ""
) -> Notification | None:
    vm_zh, vm_en, category_zh, severity_zh = _names(session, finding)
    due = beijing(finding.deadline_at)
    n = finding.id
    if event is MailEvent.FINDING_OPENED:
        subject_zh = f"安全隐患待整改 #{n}：{finding.title}（{severity_zh}，{due} 前完成）"
        subject_en = f"Finding #{n} to fix: {finding.title} ({finding.severity}, due {due} Beijing time)"
        lead_zh, lead_en = (
            "信息中心发现您单位存在以下安全隐患，请在期限内完成整改。",
            ("The center found the following security problem in your unit; please fix it by the deadline."),
        )
        dedup = None
    elif event is MailEvent.FINDING_REOPENED:
        subject_zh = f"复测未通过，请继续整改 #{n}：{finding.title}（{due} 前完成）"
        subject_en = f"Retest failed, finding #{n} reopened: {finding.title} (due {due} Beijing time)"
        lead_zh, lead_en = (
            "信息中心复测发现该隐患仍然存在，请继续整改。",
            ("The center's retest found the problem still there; please fix it."),
        )
        dedup = None
    elif event is MailEvent.FINDING_DUE_SOON:
        subject_zh = f"整改期限将至（{due}）#{n}：{finding.title}"
        subject_en = f"Finding #{n} due within 48 hours ({due} Beijing time): {finding.title}"
        lead_zh, lead_en = (
            "以下安全隐患的整改期限将在48小时内到期，请尽快完成整改并在平台上报告。",
            "The deadline of this finding is less than 48 hours away; please fix it and report it "
            "in the portal.",
        )
        dedup = _reminder_key(finding, "due_soon")
    else:
        subject_zh = f"已超过整改期限（{due}）#{n}：{finding.title}"
        subject_en = f"Finding #{n} overdue since {due} Beijing time: {finding.title}"
        lead_zh, lead_en = (
            "以下安全隐患已超过整改期限仍未整改，请立即处理；逾期情况将纳入通报。",
            "This finding is past its deadline and not fixed: please act now; overdue findings are reported.",
        )
        dedup = _reminder_key(finding, "overdue")
    body_zh = (
        f"{lead_zh}\n\n编号：#{n}\n对象：{vm_zh}\n类别：{category_zh}（{severity_zh}）\n问题：{finding.title}\n"
        + (f"位置：{finding.target}\n" if finding.target else "")
        + f"整改期限：{due}（北京时间）\n"
        + (f"\n{finding.description}\n" if finding.description else "")
        + (f"\n{extra_zh}\n" if extra_zh else "")
        + "\n整改完成后，请单位网络安全管理员在平台上报告已整改（附说明），信息中心将复测。"
    )
    body_en = (
        f"{lead_en}\n\nFinding: #{n}\nOn: {vm_en}\nCategory: {finding.category} ({finding.severity})\n"
        f"Problem: {finding.title}\n"
        + (f"Where: {finding.target}\n" if finding.target else "")
        + f"Deadline: {due} (Beijing time)\n"
        + (f"\n{extra_en}\n" if extra_en else "")
        + "\nOnce fixed, the unit's security administrator reports it in the portal (with a note); the "
        "center then retests it."
    )
    return notification.notify(
        session,
        event,
        finding.unit_id,
        subject_zh=subject_zh,
        subject_en=subject_en,
        body_zh=body_zh,
        body_en=body_en,
        related_type="finding",
        related_id=n,
        link=f"/api/v1/findings/{n}",
        dedup_key=dedup,
    )


def _reminder_key(finding: Finding, what: str) -> str:
    # To the microsecond: a deadline set again (a failed retest) is another deadline, however soon.
    deadline = finding.deadline_at.isoformat() if finding.deadline_at else "none"
    return f"finding:{finding.id}:{what}:{deadline}"


def on_delivered(session: Session, sent: Notification) -> None:
    """A mail was delivered: a finding it told the unit about is now ``notified``. Only mails that
    reached a unit address count (one that went to the center alone told the unit nothing)."""
    if sent.unit_id is None or sent.kind not in (
        MailEvent.FINDING_OPENED.value,
        MailEvent.FINDING_REOPENED.value,
        MailEvent.NOTICE.value,
    ):
        return
    center = get_settings().center_mailbox.strip()
    if not any(address != center for address in sent.to):
        return
    if sent.related_type == "finding" and sent.related_id.isdigit():
        condition = col(Finding.id) == int(sent.related_id)
    elif sent.related_type == "notice" and sent.related_id.isdigit():
        condition = col(Finding.notice_id) == int(sent.related_id)
    else:
        return
    now = db.utcnow()
    ids = session.exec(
        select(Finding.id).where(
            condition, col(Finding.state) == F.OPEN.value, col(Finding.unit_id) == sent.unit_id
        )
    ).all()
    for finding_id in ids:
        result = session.exec(
            update(Finding)
            .where(col(Finding.id) == finding_id, col(Finding.state) == F.OPEN.value)
            .values(state=F.NOTIFIED.value, notified_at=now, updated_at=now, version=Finding.version + 1)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            record(
                session,
                Who.system("mail"),
                "security.finding.notify",
                "finding",
                finding_id,
                before={"state": F.OPEN.value},
                after={"state": F.NOTIFIED.value, "notification_id": sent.id, "to": list(sent.to)},
                unit_id=sent.unit_id,
            )


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
        _mail(session, finding, MailEvent.FINDING_OPENED)
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
        vm = session.get(VM, vm_id)
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
    if session.get(Unit, unit_id) is None:
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
    finding = session.get(Finding, finding_id)
    if finding is None or not can_see_unit(actor, finding.unit_id):
        raise errors.NotFound("finding", finding_id)
    return finding


def _locked(session: Session, actor: Actor, finding_id: int) -> Finding:
    find(session, actor, finding_id)
    return session.exec(
        select(Finding)
        .where(col(Finding.id) == finding_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


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
    _move(session, finding, FindingAction.NOTIFY, notified_at=db.utcnow())
    _mail(session, finding, MailEvent.FINDING_OPENED, extra_zh=note, extra_en=note)
    _audit(session, who, "notify", finding, before, note=note)
    return finding


def fix(session: Session, actor: Actor, who: Who, finding_id: int, note: str) -> Finding:
    """The unit reports the finding fixed, saying how; the center retests it next."""
    finding = _locked(session, actor, finding_id)
    if actor.role not in TRANSITIONS[FindingAction.FIX].roles:
        raise errors.Forbidden(
            "only the unit's security administrator (or the center) reports a finding fixed",
            message_zh="由本单位网络安全管理员（或信息中心）报告整改完成",
            role=actor.role.value,
        )
    before = snapshot(finding)
    _move(
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
    _move(
        session,
        finding,
        FindingAction.RETEST,
        retested_at=now,
        retested_by=actor.user_id,
        retest_passed=passed,
        retest_note=note[:2000],
    )
    if passed:
        _move(session, finding, FindingAction.PASS)
    else:
        _move(
            session,
            finding,
            FindingAction.FAIL,
            deadline_at=deadline_at or deadline_for(finding.severity, now),
            notified_at=None,
            fixed_at=None,
        )
        _mail(
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
    _move(session, finding, FindingAction.CLOSE, retest_note=f"closed: {reason}"[:2000])
    _audit(session, who, "close", finding, before, reason=reason)
    return finding


# ---- reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FindingFilters:
    unit_id: int | None = None
    vm_id: int | None = None
    state: FindingState | None = None
    overdue: bool | None = None
    category: Category | None = None
    notice_id: int | None = None
    limit: int = 50
    offset: int = 0


def overdue_condition(now: datetime) -> Any:
    return (
        col(Finding.state).in_([s.value for s in AWAITING_UNIT])
        & col(Finding.deadline_at).is_not(None)
        & (col(Finding.deadline_at) < now)
    )


def is_overdue(finding: Finding, now: datetime) -> bool:
    return (
        finding.state in {s.value for s in AWAITING_UNIT}
        and finding.deadline_at is not None
        and finding.deadline_at < now
    )


def _conditions(actor: Actor, f: FindingFilters, now: datetime) -> list[Any]:
    conditions: list[Any] = []
    if actor.role in (Role.UNIT_ADMIN, Role.UNIT_LEAD):
        conditions.append(col(Finding.unit_id) == actor.unit_id)
    if f.unit_id is not None:
        conditions.append(col(Finding.unit_id) == f.unit_id)
    if f.vm_id is not None:
        conditions.append(col(Finding.vm_id) == f.vm_id)
    if f.state is not None:
        conditions.append(col(Finding.state) == f.state.value)
    if f.category is not None:
        conditions.append(col(Finding.category) == f.category.value)
    if f.notice_id is not None:
        conditions.append(col(Finding.notice_id) == f.notice_id)
    if f.overdue is True:
        conditions.append(overdue_condition(now))
    elif f.overdue is False:
        conditions.append(~overdue_condition(now))
    return conditions


def list_findings(session: Session, actor: Actor, f: FindingFilters) -> tuple[list[Finding], int]:
    conditions = _conditions(actor, f, db.utcnow())
    rows = session.exec(
        select(Finding).where(*conditions).order_by(col(Finding.id).desc()).limit(f.limit).offset(f.offset)
    ).all()
    total = int(session.exec(select(func.count()).select_from(Finding).where(*conditions)).one())
    return list(rows), total


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
    conditions = [overdue_condition(now)]
    if actor.role in (Role.UNIT_ADMIN, Role.UNIT_LEAD):
        conditions.append(col(Finding.unit_id) == actor.unit_id)
    rows = session.exec(
        select(Finding, Unit.code, Unit.name_zh)
        .outerjoin(Unit, col(Unit.id) == col(Finding.unit_id))
        .where(*conditions)
        .order_by(col(Finding.deadline_at), col(Finding.id))
    ).all()
    groups: dict[int | None, OverdueUnit] = {}
    for finding, code, name in rows:
        group = groups.setdefault(finding.unit_id, OverdueUnit(finding.unit_id, code, name, []))
        group.findings.append(finding)
    return sorted(groups.values(), key=lambda g: (-len(g.findings), g.oldest_deadline or now))


# ---- reminders (beat) -------------------------------------------------------------------------------


def _deadline_set_at(finding: Finding) -> datetime:
    if finding.retest_passed is False and finding.retested_at is not None:
        return finding.retested_at  # reopened: the new deadline was set then
    return finding.created_at


def send_reminders(now: datetime | None = None) -> dict[str, int]:
    """Queue the 48-hour and the overdue reminders that are due, each once per deadline. Each finding
    in a transaction of its own, so one that fails (or that a concurrent run reminded) stops nothing."""
    now = now or db.utcnow()
    with db.transaction() as s:
        rows = s.exec(
            select(Finding.id, Finding.deadline_at)
            .where(
                col(Finding.state).in_([x.value for x in AWAITING_UNIT]),
                col(Finding.unit_id).is_not(None),
                col(Finding.deadline_at).is_not(None),
                col(Finding.deadline_at) <= now + REMIND_BEFORE,
            )
            .order_by(col(Finding.deadline_at))
        ).all()
    counts = {"due_soon": 0, "overdue": 0}
    for finding_id, _deadline in rows:
        try:
            with db.transaction() as s:
                finding = s.get(Finding, finding_id)
                if finding is None or finding.deadline_at is None or finding.state not in AWAITING_UNIT:
                    continue
                if finding.deadline_at <= now:
                    what = MailEvent.FINDING_OVERDUE
                elif finding.deadline_at - _deadline_set_at(finding) > REMIND_BEFORE:
                    what = MailEvent.FINDING_DUE_SOON
                else:
                    continue  # set less than 48 h ahead: the opening mail said when it is due
                if _mail(s, finding, what) is not None:
                    counts["overdue" if what is MailEvent.FINDING_OVERDUE else "due_soon"] += 1
        except IntegrityError:
            log.info("reminder for finding %s queued by a concurrent run", finding_id)
    return counts
