"""Incidents: opening one per (VM, category) and gathering its alerts, the containment decision, the
center's confirmation, dismissal and retry, and reading incidents with their timeline.

An incident is keyed on (VM, category) while it is not closed or dismissed: every alert of that pair
lands on it (``alert_count``, ``first_seen``, ``last_seen``, the gravest severity). The policy decides
when the incident opens, and again on each later alert while it is still ``open`` (awaiting a human),
so a weak signal followed by a strong one escalates to containment. Once containment is decided, later
alerts only count: one incident, one containment task, one adapter call.

For the notices work (issue 4 point 7): :func:`open_incident` with ``auto_contain=False`` opens (or
joins) the incident for a VM without acting, and :func:`confirm` is the center user's order to contain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from policies.compromise import (
    CATEGORY_NAMES_ZH,
    Category,
    Confidence,
    Containment,
    ContainmentDecision,
    Severity,
)
from policies.roles import Actor
from vmportal.audit.service import Who, record
from vmportal.incidents import containment, repository
from vmportal.incidents.containment import CONTAIN_TASK, RESTORE_TASK
from vmportal.incidents.lifecycle import INCIDENT, Action
from vmportal.incidents.models import (
    ContainmentState,
    Incident,
    IncidentState,
    RectificationState,
    Resolution,
    RestoreState,
)
from vmportal.incidents.repository import IncidentFilters, IncidentRow
from vmportal.incidents.timeline import add_event
from vmportal.jobs import outbox
from vmportal.kit import db, errors, pages
from vmportal.kit.scope import can_see_unit, ensure_visible
from vmportal.mail import service as mail
from vmportal.vm.models import VM, Lifecycle

POLICY_ACTOR = "policy"


def incident_key(vm_id: int, category: Category | str) -> str:
    return f"{vm_id}:{Category(category).value}"


def snapshot(incident: Incident) -> dict[str, Any]:
    return {
        "state": incident.state,
        "containment_state": incident.containment_state,
        "restore_state": incident.restore_state,
        "action": incident.action,
        "vm_id": incident.vm_id,
        "category": incident.category,
        "severity": incident.severity,
        "alert_count": incident.alert_count,
    }


# ---- opening and correlating -----------------------------------------------------------------------


@dataclass(frozen=True)
class Opening:
    incident: Incident
    created: bool
    containment_queued: bool  # this call decided to contain (the task is queued)


def _decision_values(decision: ContainmentDecision, decided_by: str) -> dict[str, Any]:
    return {
        "action": decision.action.value,
        "decision_rule": containment.rule_dict(decision.rule) if decision.rule is not None else None,
        "reasons_en": list(decision.reasons_en),
        "reasons_zh": list(decision.reasons_zh),
        "decision_fallback": decision.fallback,
        "decided_by": decided_by,
        "decided_at": db.utcnow(),
    }


def notify_only(en: str, zh: str) -> ContainmentDecision:
    """A decision to leave the VM alone and let a human decide, for a reason of the caller's."""
    return ContainmentDecision(Containment.NOTIFY_ONLY, None, (en,), (zh,), fallback=False)


def open_incident(
    session: Session,
    who: Who,
    *,
    vm: VM,
    category: Category | str,
    severity: Severity | str,
    confidence: Confidence | str,
    title: str,
    seen_at: datetime,
    origin: str = "alert",
    count: int = 1,
    auto_contain: bool = True,
    hold_reason: tuple[str, str] | None = None,
) -> Opening:
    """Open the (VM, category) incident or add to the open one, and apply the containment policy.

    ``seen_at`` is when the portal received the evidence (an alert's ``received_at``): first/last seen,
    and the start of the containment latency. ``auto_contain=False`` never acts by itself: the incident
    waits for a center user's :func:`confirm`; ``hold_reason`` (en, zh) says why (a notice entered by
    hand, a VM named as the victim rather than the culprit). Runs in the caller's transaction.
    """
    assert vm.id is not None
    category, severity, confidence = Category(category), Severity(severity), Confidence(confidence)
    key = incident_key(vm.id, category)
    incident, created = _find_or_create(
        session, vm, key, category, severity, confidence, title, seen_at, origin, count
    )
    if not created:
        incident.alert_count += count
        incident.last_seen = max(incident.last_seen, seen_at)
        incident.first_seen = min(incident.first_seen, seen_at)
        if severity > incident.severity:
            incident.severity = severity.value
        if confidence is Confidence.HIGH:
            incident.confidence = Confidence.HIGH.value
        incident.updated_at = db.utcnow()
        session.add(incident)
    if incident.state != IncidentState.OPEN:
        return Opening(incident, created, False)  # already acted on (or being): later alerts only count

    if not auto_contain or hold_reason is not None:
        en, zh = hold_reason or (
            "Entered for a human to decide: the center confirms the containment.",
            "待人工研判：由信息中心确认处置方式。",
        )
        decision = notify_only(en, zh)
    else:
        decision = containment.decide(session, vm, category, severity, confidence)
        if vm.protected and decision.action is not Containment.NOTIFY_ONLY:
            # Marked by the center (set_protected): a human decides.
            decision = notify_only(
                "The center marked this VM as protected: it is never contained automatically; the center "
                "decides.",
                "该虚拟机已被信息中心标记为受保护，不自动处置，由信息中心研判。",
            )
        elif vm.unit_id is None and decision.action is not Containment.NOTIFY_ONLY:
            # Protected: a VM of no unit may be the center's own DNS or vCenter; a human decides.
            decision = notify_only(
                "The VM belongs to no unit (it may be the center's own infrastructure): it is never "
                "contained automatically; the center decides.",
                "该虚拟机不属于任何单位（可能是信息中心自身的基础设施），不自动处置，由信息中心研判。",
            )
    if created:
        for name, value in _decision_values(decision, POLICY_ACTOR).items():
            setattr(incident, name, value)
        session.add(incident)
        session.flush()
        add_event(
            session,
            incident,
            "opened",
            actor=who.actor,
            en=f"Incident opened: {category.value} ({severity.value}, {confidence.value} confidence) on VM "
            f"{vm.name}. Decision: {decision.action.value}. " + " ".join(decision.reasons_en),
            zh=f"安全事件开立：虚拟机 {vm.name} 出现{CATEGORY_NAMES_ZH[category]}告警。处置决定："
            f"{containment.ACTION_ZH[decision.action]}。" + "".join(decision.reasons_zh),
            data={"decision": decision.action.value, "rule": incident.decision_rule},
        )
        opened = _Audit(
            "security.incident.open",
            after={**snapshot(incident), "reasons_en": list(decision.reasons_en)},
        )
    else:
        opened = None
    if decision.action is Containment.NOTIFY_ONLY:
        if opened is not None:
            _audit(session, who, incident, opened)
            _mail_notify_only(session, incident, vm, decision)
        return Opening(incident, created, False)

    values = _decision_values(decision, POLICY_ACTOR)
    if created:
        values = {}  # already stored above
    else:
        add_event(
            session,
            incident,
            "escalated",
            actor=who.actor,
            en=f"A further {severity.value} alert of {confidence.value} confidence decides containment: "
            f"{decision.action.value}. " + " ".join(decision.reasons_en),
            zh=f"新的告警（{severity.value}，置信度{confidence.value}）触发处置："
            f"{containment.ACTION_ZH[decision.action]}。" + "".join(decision.reasons_zh),
        )
    _start_containment(
        session, who, incident, Action.CONTAIN, trigger_at=seen_at, decision=values, audit_first=opened
    )
    return Opening(incident, created, True)


def set_protected(session: Session, who: Who, vm_id: int, protected: bool, reason: str) -> VM:
    """The center marks (or unmarks) a VM as never contained automatically; audited with the reason.
    Setting the value it already has changes nothing and writes no audit row."""
    vm = session.get(VM, vm_id)
    if vm is None:
        raise errors.NotFound("vm", vm_id)
    if vm.protected == protected:
        return vm
    before = {"protected": vm.protected}
    vm.protected = protected
    session.add(vm)
    session.flush()
    record(
        session,
        who,
        "security.vm.protect" if protected else "security.vm.unprotect",
        "vm",
        vm.id,
        before=before,
        after={"protected": protected, "reason": reason},
        unit_id=vm.unit_id,
    )
    return vm


def _mail_notify_only(session: Session, incident: Incident, vm: VM, decision: ContainmentDecision) -> None:
    """A notify-only incident is for humans: the unit (if any) and the center hear of it."""
    why_en, why_zh = " ".join(decision.reasons_en), "".join(decision.reasons_zh)
    category_zh = CATEGORY_NAMES_ZH.get(Category(incident.category), incident.category)
    mail.notify(
        session,
        # The outbox's kinds have none for "told, not contained"; a notice is what it is to the reader.
        mail.MailEvent.NOTICE,
        incident.unit_id,
        subject_zh=f"安全事件 #{incident.id}：虚拟机 {vm.name} 出现告警（未自动处置，请研判）",
        subject_en=f"Security incident #{incident.id}: alert on VM {vm.name} (not contained, please review)",
        body_zh=f"虚拟机 {vm.name}（{vm.ip_address or '无地址'}）出现{category_zh}告警。{why_zh}",
        body_en=f"VM {vm.name} ({vm.ip_address or 'no address'}): a {incident.category} alert. {why_en}",
        related_type="incident",
        related_id=incident.id,
        link=pages.incident(incident.id),
        dedup_key=f"incident-notify-only-{incident.id}",
        center_only=incident.unit_id is None,
    )


@dataclass(frozen=True)
class _Audit:
    """An audit row of an incident, written after the step's other writes (see :func:`_audit`)."""

    action: str
    after: dict[str, Any]
    before: dict[str, Any] | None = None


def _audit(session: Session, who: Who, incident: Incident, *rows: _Audit) -> None:
    """Append ``rows`` to the audit log, last thing in the step: appending locks the log's head until
    the commit, and every audited change of the portal (alert posts, containments, the API) waits for
    that lock, so the other writes of the step go first."""
    for row in rows:
        record(
            session,
            who,
            row.action,
            "incident",
            incident.id,
            before=row.before,
            after=row.after,
            unit_id=incident.unit_id,
        )


def _find_or_create(
    session: Session,
    vm: VM,
    key: str,
    category: Category,
    severity: Severity,
    confidence: Confidence,
    title: str,
    seen_at: datetime,
    origin: str,
    count: int,
) -> tuple[Incident, bool]:
    found = repository.open_incident_locked(session, key)
    if found is not None:
        return found, False
    incident = Incident(
        vm_id=vm.id,
        unit_id=vm.unit_id,
        system_id=vm.system_id,
        origin=origin,
        category=category.value,
        severity=severity.value,
        confidence=confidence.value,
        title=title[:500],
        open_key=key,
        alert_count=count,
        first_seen=seen_at,
        last_seen=seen_at,
    )
    new_id = repository.insert_open_incident(session, incident)
    found = repository.open_incident_locked(session, key)  # ours, or a concurrent transaction's
    assert found is not None
    return found, new_id is not None and found.id == new_id


def _start_containment(
    session: Session,
    who: Who,
    incident: Incident,
    step: Action,
    *,
    trigger_at: datetime,
    decision: dict[str, Any] | None = None,
    audit_first: _Audit | None = None,
) -> None:
    """Move the incident to ``containing`` and queue the containment task. ``audit_first``: the
    audit row of the step that led here (the incident's opening), written just before this one."""
    before = snapshot(incident)
    INCIDENT.move(
        session,
        incident,
        step,
        containment_state=ContainmentState.PENDING.value,
        trigger_at=trigger_at,
        last_error="",
        **(decision or {}),
    )
    outbox.enqueue(session, CONTAIN_TASK, incident_id=incident.id)
    add_event(
        session,
        incident,
        "containment_queued",
        actor=who.actor,
        en=f"Containment ({incident.action}) queued for the hypervisor.",
        zh=f"已下发处置（{containment.ACTION_ZH[Containment(incident.action)]}），等待虚拟化平台执行。",
    )
    queued = _Audit(
        f"security.incident.{step.value}",
        before=before,
        after={**snapshot(incident), "reasons_en": incident.reasons_en},
    )
    _audit(session, who, incident, *([audit_first] if audit_first else []), queued)


# ---- the center's decisions -------------------------------------------------------------------------


def _require_vm(incident: Incident, vm: VM | None, action: str) -> VM:
    if vm is None:
        raise errors.StateConflict(
            "incident",
            incident.state,
            action,
            message="the incident names no VM: there is nothing to contain",
        )
    if vm.lifecycle != Lifecycle.ACTIVE:
        raise errors.StateConflict(
            "vm",
            vm.lifecycle,
            action,
            message=f"VM {vm.id} ({vm.name}) is {vm.lifecycle}: nothing to contain",
        )
    return vm


def _chosen_decision(
    session: Session, vm: VM, action: Containment, who: Who, reason: str
) -> ContainmentDecision:
    if action is Containment.NOTIFY_ONLY:
        raise errors.InvalidField(
            "action",
            "contains",
            "choose isolate_network, power_off or block_web",
            message_zh="请选择一种处置方式",
        )
    en = [f"Containment ordered by {who.actor} ({who.role or 'center'}): {action.value}."]
    zh = [f"信息中心（{who.actor}）确认处置：{containment.ACTION_ZH[action]}。"]
    if reason:
        en.append(f"Reason: {reason}")
        zh.append(f"理由：{reason}")
    fallback = False
    if action is Containment.BLOCK_WEB and not containment.web_block_supported(session, vm):
        action, fallback = Containment.ISOLATE_NETWORK, True
        en.append(
            "Blocking only the web service is not supported for this VM, so its network is isolated instead."
        )
        zh.append("该虚拟机所在环境不支持单独断开WEB服务，改为断开网络。")
    return ContainmentDecision(action, None, tuple(en), tuple(zh), fallback)


def confirm(
    session: Session, actor: Actor, who: Who, incident_id: int, action: Containment, reason: str = ""
) -> Incident:
    """A center user orders the containment of an open incident (notify-only, a notice, a victim)."""
    incident, vm = repository.lock_incident(session, incident_id)
    INCIDENT.check(Action.CONFIRM, incident.state)
    vm = _require_vm(incident, vm, Action.CONFIRM.value)
    decision = _chosen_decision(session, vm, Containment(action), who, reason)
    _start_containment(
        session,
        who,
        incident,
        Action.CONFIRM,
        trigger_at=db.utcnow(),
        decision=_decision_values(decision, who.actor),
    )
    return incident


def retry(
    session: Session, actor: Actor, who: Who, incident_id: int, action: Containment | None = None
) -> Incident:
    """Run again a containment or restore the hypervisor refused (or that still waits for it)."""
    incident, vm = repository.lock_incident(session, incident_id)
    INCIDENT.check(Action.RETRY, incident.state)
    before = snapshot(incident)
    if incident.state == IncidentState.CONTAINING:
        if incident.containment_state not in (ContainmentState.FAILED, ContainmentState.PENDING):
            raise errors.StateConflict("containment", incident.containment_state, Action.RETRY.value)
        vm = _require_vm(incident, vm, Action.RETRY.value)
        values: dict[str, Any] = {"containment_state": ContainmentState.PENDING.value, "last_error": ""}
        if action is not None and action.value != incident.action:
            values.update(_decision_values(_chosen_decision(session, vm, action, who, ""), who.actor))
        INCIDENT.move(session, incident, Action.RETRY, **values)
        outbox.enqueue(session, CONTAIN_TASK, incident_id=incident.id)
        en, zh = f"Containment ({incident.action}) retried.", "重新执行处置。"
    else:
        if incident.restore_state not in (RestoreState.FAILED, RestoreState.PENDING):
            raise errors.StateConflict("restore", incident.restore_state, Action.RETRY.value)
        INCIDENT.move(
            session, incident, Action.RETRY, restore_state=RestoreState.PENDING.value, last_error=""
        )
        outbox.enqueue(session, RESTORE_TASK, incident_id=incident.id)
        en, zh = "Restore retried.", "重新执行恢复。"
    add_event(session, incident, "retry", actor=who.actor, en=en, zh=zh)
    record(
        session,
        who,
        "security.incident.retry",
        "incident",
        incident.id,
        before=before,
        after=snapshot(incident),
        unit_id=incident.unit_id,
    )
    return incident


def dismiss(session: Session, actor: Actor, who: Who, incident_id: int, reason: str) -> Incident:
    """The center judges the incident a false positive: closed, and the VM released if it was held."""
    incident, _vm = repository.lock_incident(session, incident_id)
    target = INCIDENT.check(Action.DISMISS, incident.state)
    before = snapshot(incident)
    values: dict[str, Any] = {
        "resolution": Resolution.FALSE_POSITIVE.value,
        "resolution_reason": reason[:2000],
        "resolved_by": actor.user_id,
    }
    if target is IncidentState.RESTORING:
        values["restore_state"] = RestoreState.PENDING.value
        if incident.containment_state == ContainmentState.PENDING:
            values["containment_state"] = ContainmentState.NONE.value  # cancelled before it happened
    INCIDENT.move(session, incident, Action.DISMISS, **values)
    for rect in repository.submitted_rectifications(session, incident.id or 0):
        rect.state = RectificationState.WITHDRAWN.value
        rect.decided_by = actor.user_id
        rect.decided_at = db.utcnow()
        rect.decision_reason = "the incident was dismissed as a false positive"
        session.add(rect)
    if target is IncidentState.RESTORING:
        outbox.enqueue(session, RESTORE_TASK, incident_id=incident.id)
    add_event(
        session,
        incident,
        "dismissed",
        actor=who.actor,
        en=f"Dismissed as a false positive by {who.actor}: {reason}"
        + (" The VM is being restored." if target is IncidentState.RESTORING else ""),
        zh=f"信息中心（{who.actor}）判定为误报：{reason}"
        + ("，正在恢复虚拟机。" if target is IncidentState.RESTORING else ""),
    )
    record(
        session,
        who,
        "security.incident.dismiss",
        "incident",
        incident.id,
        before=before,
        after=snapshot(incident),
        detail=reason,
        unit_id=incident.unit_id,
    )
    return incident


# ---- reading ----------------------------------------------------------------------------------------


def list_incidents(session: Session, actor: Actor, f: IncidentFilters) -> tuple[list[IncidentRow], int]:
    return repository.incident_rows(session, actor, f)


def get_incident(session: Session, actor: Actor, incident_id: int) -> IncidentRow:
    row = repository.incident_row(session, incident_id)
    if row is None or not can_see_unit(actor, row.incident.unit_id):
        raise errors.NotFound("incident", incident_id)
    return row


def find_incident(session: Session, actor: Actor, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise errors.NotFound("incident", incident_id)
    ensure_visible(actor, incident.unit_id, "incident", incident_id)
    return incident


@dataclass(frozen=True)
class TimelineItem:
    at: datetime
    kind: str
    actor: str
    message_en: str
    message_zh: str
    data: dict[str, Any]


MAX_TIMELINE_ALERTS = 500


def timeline(session: Session, actor: Actor, incident_id: int) -> list[TimelineItem]:
    """Alerts, decisions and actions in time order (the newest alerts when there are very many)."""
    incident = find_incident(session, actor, incident_id)
    items = [
        TimelineItem(e.at, e.kind, e.actor, e.message_en, e.message_zh, dict(e.data or {}))
        for e in repository.events_of(session, incident.id or 0)
    ]
    alerts = repository.alerts_of(session, incident.id or 0, limit=MAX_TIMELINE_ALERTS)
    for alert, source in alerts:
        resolved = (
            " (the sender reports it resolved; the VM is not released by that)" if alert.resolved else ""
        )
        items.append(
            TimelineItem(
                alert.received_at,
                "alert",
                f"source:{source}",
                f"{alert.format} alert from {source}: {alert.title} "
                f"({alert.category}, {alert.severity}){resolved}",
                f"来自 {source} 的{alert.format}告警：{alert.title}（{alert.category}，{alert.severity}）"
                + ("（发送方报告已恢复，但不会据此解除暂停）" if alert.resolved else ""),
                {
                    "alert_id": alert.id,
                    "external_id": alert.external_id,
                    "repeats": alert.repeats,
                    "match": alert.match,
                },
            )
        )
    items.sort(key=lambda i: i.at)
    return items
