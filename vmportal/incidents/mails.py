"""The incident workflow's e-mails: the unit and the center hear of containment (done or failed),
rectification decisions and dismissals. Rendered here, queued in the step's transaction through the
notification outbox (:mod:`vmportal.mail`), which knows no incident; :func:`on_event` is called by
``incidents.timeline.add_event`` with the timeline row each step adds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlmodel import Session

from policies.compromise import CATEGORY_NAMES_ZH, SEVERITY_NAMES_ZH, Category, Containment, Severity
from vmportal.incidents.models import Incident, IncidentEvent, Rectification
from vmportal.kit import pages
from vmportal.mail import service as notification
from vmportal.mail.service import MailEvent
from vmportal.unit import recipients as _recipients  # noqa: F401  (registers who a unit's mail goes to)
from vmportal.unit.models import Unit
from vmportal.vm.models import VM

log = logging.getLogger(__name__)

_ACTION_ZH = {
    Containment.ISOLATE_NETWORK: "断开网络",
    Containment.POWER_OFF: "关机",
    Containment.BLOCK_WEB: "断开WEB服务",
    Containment.NOTIFY_ONLY: "仅通知",
}


@dataclass(frozen=True)
class _Subject:
    vm_zh: str
    vm_en: str
    unit_zh: str
    category_zh: str
    severity_zh: str


def _subject_of(session: Session, incident: Incident) -> _Subject:
    with session.no_autoflush:
        vm = session.get(VM, incident.vm_id) if incident.vm_id is not None else None
        unit = session.get(Unit, incident.unit_id) if incident.unit_id is not None else None
    ip = f"（{vm.ip_address}）" if vm is not None and vm.ip_address else ""
    ip_en = f" ({vm.ip_address})" if vm is not None and vm.ip_address else ""
    try:
        category_zh = CATEGORY_NAMES_ZH[Category(incident.category)]
    except ValueError:
        category_zh = incident.category
    try:
        severity_zh = SEVERITY_NAMES_ZH[Severity(incident.severity)]
    except ValueError:
        severity_zh = incident.severity
    return _Subject(
        vm_zh=f"虚拟机 {vm.name}{ip}" if vm is not None else "（未关联虚拟机）",
        vm_en=f"VM {vm.name}{ip_en}" if vm is not None else "(no VM)",
        unit_zh=f"{unit.name_zh}：\n\n" if unit is not None else "",
        category_zh=category_zh,
        severity_zh=severity_zh,
    )


def _action_zh(value: str) -> str:
    try:
        return _ACTION_ZH[Containment(value)]
    except ValueError:
        return value


def on_event(session: Session, incident: Incident, event: IncidentEvent) -> None:
    """The incident workflow's hook: e-mail the unit and the center about the steps they must hear of
    (containment confirmed or failed, rectification accepted or rejected, dismissal); other steps are
    ignored. Called with the timeline row the step just added, in the step's transaction.

    Never raises: a notification problem must not roll back the containment it reports. Reporting the
    same step twice (from two call sites) queues one mail.
    """
    try:
        _on_event(session, incident, event)
    except Exception:
        log.exception("no notification for incident %s, event %s", incident.id, event.kind)


def _on_event(session: Session, incident: Incident, event: IncidentEvent) -> None:
    kind = event.kind
    if kind not in _INCIDENT_MAILS:
        return
    s = _subject_of(session, incident)
    n = incident.id
    link = pages.incident(n)
    head_en = f"Security incident #{n} ({incident.category}, {incident.severity}) on {s.vm_en}."
    head_zh = f"{s.vm_zh}的安全事件 #{n}（{s.category_zh}，{s.severity_zh}）。"
    mail_event = _INCIDENT_MAILS[kind]
    action = incident.executed_action or incident.action
    if mail_event is MailEvent.CONTAINED:
        subject_zh = f"{s.vm_zh}因安全事件 #{n} 已被暂停（{_action_zh(action)}）"
        subject_en = f"{s.vm_en} suspended over security incident #{n} ({action})"
        body_zh = (
            f"{s.unit_zh}{head_zh}\n\n平台已执行处置：{_action_zh(action)}，并经虚拟化平台确认。\n"
            f"{event.message_zh}\n\n处置依据：{''.join(incident.reasons_zh)}\n\n"
            "根据《虚拟机服务协议书》第8条，虚拟机在整改完成前保持暂停，单位不能自行恢复。请单位网络安全管理员"
            "登录平台查看事件详情，清除问题后提交整改报告；信息中心核实后恢复虚拟机。"
        )
        body_en = (
            f"{head_en}\n\nThe portal contained it ({action}), confirmed by the hypervisor.\n"
            f"{event.message_en}\n\nWhy: {' '.join(incident.reasons_en)}\n\n"
            "Under §8 of the VM service agreement the VM stays suspended until the problem is fixed; the "
            "unit cannot restore it. The unit's security administrator should read the incident in the "
            "portal, fix the problem and submit a rectification report; the center restores the VM once "
            "it has verified it."
        )
    elif mail_event is MailEvent.CONTAINMENT_FAILED:
        subject_zh = f"安全事件 #{n} 处置失败，请处理：{s.vm_zh}"
        subject_en = f"Containment of security incident #{n} failed: {s.vm_en}"
        body_zh = f"{head_zh}\n\n{event.message_zh}\n\n请在平台上重试或改用其他处置方式。"
        body_en = f"{head_en}\n\n{event.message_en}\n\nRetry it or choose another action in the portal."
    elif mail_event is MailEvent.RECTIFICATION_ACCEPTED:
        subject_zh = f"整改报告已通过，{s.vm_zh}正在恢复（安全事件 #{n}）"
        subject_en = f"Rectification accepted: {s.vm_en} is being restored (security incident #{n})"
        body_zh = f"{s.unit_zh}{head_zh}\n\n{event.message_zh}\n\n恢复完成后虚拟机即可正常使用。"
        body_en = (
            f"{head_en}\n\n{event.message_en}\n\nThe VM is back in service once the restore is confirmed."
        )
    elif mail_event is MailEvent.RECTIFICATION_REJECTED:
        reason = _rectification_reason(session, event)
        subject_zh = f"整改报告被驳回，{s.vm_zh}保持暂停（安全事件 #{n}）"
        subject_en = f"Rectification rejected: {s.vm_en} stays suspended (security incident #{n})"
        body_zh = f"{s.unit_zh}{head_zh}\n\n{event.message_zh}" + (
            f"\n\n驳回理由：{reason}" if reason else ""
        )
        body_en = f"{head_en}\n\n{event.message_en}" + (f"\n\nReason: {reason}" if reason else "")
    else:  # dismissed
        subject_zh = f"安全事件 #{n} 已判定为误报：{s.vm_zh}"
        subject_en = f"Security incident #{n} dismissed as a false positive: {s.vm_en}"
        body_zh = f"{s.unit_zh}{head_zh}\n\n{event.message_zh}"
        body_en = f"{head_en}\n\n{event.message_en}"
    notification.notify(
        session,
        mail_event,
        incident.unit_id,
        subject_zh=subject_zh,
        subject_en=subject_en,
        body_zh=body_zh,
        body_en=body_en,
        related_type="incident",
        related_id=n,
        link=link,
        dedup_key=f"incident:{n}:{kind}:v{incident.version}:a{incident.attempts}",
        center_only=mail_event is MailEvent.CONTAINMENT_FAILED,
    )


_INCIDENT_MAILS: dict[str, MailEvent] = {
    "contained": MailEvent.CONTAINED,
    "containment_failed": MailEvent.CONTAINMENT_FAILED,
    "rectification_accepted": MailEvent.RECTIFICATION_ACCEPTED,
    "rectification_rejected": MailEvent.RECTIFICATION_REJECTED,
    "dismissed": MailEvent.DISMISSED,
}


def _rectification_reason(session: Session, event: IncidentEvent) -> str:
    rect_id = (event.data or {}).get("rectification_id")
    if not isinstance(rect_id, int):
        return ""
    with session.no_autoflush:
        rect = session.get(Rectification, rect_id)
    return rect.decision_reason if rect is not None else ""
