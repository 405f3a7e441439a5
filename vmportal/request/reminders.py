"""Provisioning deadline reminders (agreement §3: the center opens a VM within a week).

Beat runs :func:`send_reminders` every 15 minutes (``vmportal.request.deadline_reminders``). A request
the center still owes a VM (submitted, endorsed, approved, provisioning or failed) gets at most two
mails, each once:

- **due soon**, once 48 hours or less remain (``policies.deadline.AT_RISK``, the same window the API's
  ``at_risk`` filter and the request's ``deadline`` use): to the center's mailbox alone, since only the
  center can act on it;
- **overdue**, once the due time has passed: to the requesting unit's administrator (the registry's
  security administrator, and the account that filed the request when its address differs), the
  center's mailbox in copy.

A request first seen already overdue (beat was down, or the reminders were just deployed) gets the
overdue mail only: a late "due within 48 hours" would be wrong by the time it arrives.

Once-only is a row of ``vm_request_reminder`` per (request, kind), inserted in the transaction that
queues the mail, under a unique constraint: two beat runs, or a beat task delivered twice, cannot both
insert it, and the loser's mail is rolled back with it. The mail itself goes through the security
notification outbox (:func:`vmportal.mail.service.notify`): sent after the commit, retried with
backoff, visible to the center in ``GET /notifications``. The reminder row, not the notification's
``dedup_key``, is the record, because sent notifications are pruned after ``VMPORTAL_RETENTION_DAYS``
(:mod:`vmportal.app.retention`) while a request may stay overdue longer than that.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from policies.deadline import DeadlineStatus, deadline_status
from vmportal.identity import service as identity
from vmportal.identity.models import User
from vmportal.kit import db, errors, pages
from vmportal.mail.service import MailEvent, beijing, notify
from vmportal.request import repository
from vmportal.request.lifecycle import OPEN_STATES
from vmportal.request.models import ReminderKind, RequestReminder, RequestState, VMRequest
from vmportal.request.service.checks import find_unit
from vmportal.unit import service as units
from vmportal.unit.models import ContactRole

log = logging.getLogger(__name__)

#: Requests reminded per run at most (each in a transaction of its own); the rest wait 15 minutes.
BATCH = 500

_STATE_ZH: dict[str, str] = {
    RequestState.SUBMITTED: "待审批",
    RequestState.ENDORSED: "单位负责人已确认，待审批",
    RequestState.APPROVED: "已批准，等待开通",
    RequestState.PROVISIONING: "正在开通",
    RequestState.FAILED: "开通失败，待信息中心重试",
}
_STATE_EN: dict[str, str] = {
    RequestState.SUBMITTED: "waiting for the center's decision",
    RequestState.ENDORSED: "endorsed by the unit lead, waiting for the center's decision",
    RequestState.APPROVED: "approved, waiting to be provisioned",
    RequestState.PROVISIONING: "being provisioned",
    RequestState.FAILED: "provisioning failed, waiting for the center's retry",
}


def due_ids(now: datetime, limit: int = BATCH) -> list[int]:
    """Open requests owed a reminder at ``now``, the most urgent first."""
    with db.transaction() as s:
        return repository.owed_reminders(s, now, limit)


def kind_at(req: VMRequest, now: datetime) -> ReminderKind | None:
    """The reminder a request is owed at ``now`` by its deadline alone (None: none, or not open)."""
    if req.state not in OPEN_STATES:
        return None
    status = deadline_status(req.due_at, now)
    if status is DeadlineStatus.OVERDUE:
        return ReminderKind.OVERDUE
    if status is DeadlineStatus.AT_RISK:
        return ReminderKind.DUE_SOON
    return None


def send_reminders(now: datetime | None = None) -> dict[str, int]:
    """Queue the due-soon and overdue reminders that are owed at ``now``, each once per request.

    Each request in a transaction of its own, so one that fails (or that a concurrent run reminded
    first) stops nothing. Returns how many of each kind were queued."""
    now = now or db.utcnow()
    counts = {ReminderKind.DUE_SOON.value: 0, ReminderKind.OVERDUE.value: 0}
    for request_id in due_ids(now):
        try:
            with db.transaction() as s:
                kind = _remind(s, request_id, now)
            if kind is not None:
                counts[kind.value] += 1
        except IntegrityError:
            log.info("deadline reminder for request %s queued by a concurrent run", request_id)
        except Exception:
            log.exception("no deadline reminder for request %s", request_id)
    return counts


def _remind(session: Session, request_id: int, now: datetime) -> ReminderKind | None:
    req = repository.get(session, request_id)
    if req is None or req.id is None:
        return None
    kind = kind_at(req, now)
    if kind is None:
        return None  # delivered, rejected or cancelled since the selection
    if repository.reminded(session, req.id, kind):
        return None
    session.add(RequestReminder(request_id=req.id, kind=kind.value, due_at=req.due_at))
    # A concurrent run's row makes this flush fail, before any mail is composed; the caller rolls back.
    session.flush()
    _mail(session, req, kind)
    return kind


def unit_admin_addresses(session: Session, req: VMRequest) -> list[str]:
    """The requesting unit's administrator: the registry's security administrator, then the account
    that filed the request (usually the same person, created from that registry row)."""
    addresses: list[str] = []
    contact = units.get_contact(session, req.unit_id, ContactRole.SECURITY_ADMIN)
    registry = contact.email if contact is not None else None
    requester = _user(session, req.requested_by)
    for raw in (registry, requester.email if requester is not None and requester.active else None):
        address = (raw or "").strip()
        if "@" in address and address not in addresses:
            addresses.append(address)
    return addresses


def _user(session: Session, user_id: int) -> User | None:
    try:
        return identity.get_user(session, user_id)
    except errors.NotFound:
        return None


def _mail(session: Session, req: VMRequest, kind: ReminderKind) -> None:
    unit = find_unit(session, req.unit_id)
    unit_zh = unit.name_zh if unit is not None else f"单位 {req.unit_id}"
    unit_en = (unit.name_en or unit.name_zh) if unit is not None else f"unit {req.unit_id}"
    n = req.id
    due = beijing(req.due_at)
    state_zh = _STATE_ZH.get(req.state, req.state)
    state_en = _STATE_EN.get(req.state, req.state)
    facts_zh = (
        f"申请编号：#{n}\n申请单位：{unit_zh}\n信息系统：{req.system_name}\n主机名：{req.hostname}\n"
        f"配置：{req.vcpus} 核 / {req.memory_gib} GiB 内存 / {req.disk_gib} GiB 磁盘\n"
        f"提交时间：{beijing(req.submitted_at)}（北京时间）\n开通期限：{due}（北京时间）\n当前状态：{state_zh}"
    )
    facts_en = (
        f"Request: #{n}\nUnit: {unit_en}\nInformation system: {req.system_name}\nHostname: {req.hostname}\n"
        f"Size: {req.vcpus} vCPUs / {req.memory_gib} GiB memory / {req.disk_gib} GiB disk\n"
        f"Submitted: {beijing(req.submitted_at)} (Beijing time)\nDue: {due} (Beijing time)\n"
        f"State: {state_en}"
    )
    if kind is ReminderKind.DUE_SOON:
        notify(
            session,
            MailEvent.REQUEST_DUE_SOON,
            req.unit_id,
            subject_zh=f"虚拟机申请 #{n} 将于 {due} 到期，尚未开通（{unit_zh}）",
            subject_en=f"VM request #{n} ({unit_en}) is due {due} Beijing time and not delivered yet",
            body_zh=(
                f"以下虚拟机申请距开通期限已不足48小时，尚未开通。\n\n{facts_zh}\n\n"
                "根据《虚拟机服务协议书》第3条，信息中心应在单位提交申请表和协议书后一周内开通虚拟机。"
                "请在期限前完成审批和开通。"
            ),
            body_en=(
                f"This VM request is due in less than 48 hours and is not delivered yet.\n\n{facts_en}\n\n"
                "Under §3 of the VM service agreement the center opens the VM within a week of the unit "
                "submitting its request and agreement. Please decide and provision it before it is due."
            ),
            related_type="request",
            related_id=n,
            link=pages.request(n),
            center_only=True,
        )
        return
    notify(
        session,
        MailEvent.REQUEST_OVERDUE,
        req.unit_id,
        subject_zh=f"虚拟机申请 #{n} 已超过开通期限（{due}），尚未开通",
        subject_en=f"VM request #{n} is past its provisioning deadline ({due} Beijing time), not delivered",
        body_zh=(
            f"{unit_zh}：\n\n您单位的以下虚拟机申请已超过《虚拟机服务协议书》第3条约定的开通期限"
            f"（提交申请表和协议书后一周内），尚未开通。信息中心已收到本提醒并将尽快处理；开通后即可在平台上"
            f"领取虚拟机的IP地址、管理员账号和初始密码。如有疑问，请联系信息中心。\n\n{facts_zh}"
        ),
        body_en=(
            f"{unit_en}:\n\nYour unit's VM request below is past the provisioning deadline of §3 of the VM "
            "service agreement (a week after the request and the agreement were submitted) and is not "
            "delivered yet. The center has this reminder too and will act on it; once the VM is delivered, "
            "its address, admin account and initial password are in the portal. Please contact the center "
            f"with any question.\n\n{facts_en}"
        ),
        related_type="request",
        related_id=n,
        link=pages.request(n),
        unit_addresses=unit_admin_addresses(session, req),
    )
