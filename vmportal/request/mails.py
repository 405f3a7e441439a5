"""The request lifecycle's e-mails (issue 14 point 6): submitted, endorsed, approved, rejected (with its
reason), delivered (where to collect the credentials, never the password) and failed.

Every transition's use case calls :func:`after_move` with the request once it has moved (submission
too, once the new request is written), in the transition's own transaction: the mail is a row of the
notification outbox (:func:`vmportal.mail.service.notify`), committed with the change or rolled back
with it, and sent after the commit. Which mail it is follows from the state the request is in now, so
each call site is one line and a move that has no mail (start of provisioning, retry, withdrawal)
sends nothing. Who hears of what:

- **submitted** → the center's mailbox (it decides). When the center requires the unit lead's
  endorsement, the lead (contact registry) is asked to endorse, the center in copy.
- **endorsed** → the center (it decides now) and the unit's security administrator and lead.
- **approved**, **rejected** (with the center's reason) → the unit's security administrator and
  lead, the center in copy.
- **delivered** → the unit's administrator (the registry's security administrator and the account
  that filed the request), the center in copy: the VM's address, the admin account's name and where
  to collect the initial password once. The password itself never enters a mail.
- **failed** → the center, with the hypervisor's message, at every failed attempt (it retries); the
  unit's administrator once per request, without the technical detail, so that the unit knows the
  center is on it and the deadline stands.

Like the incident mails, a mail problem never rolls back the transition it reports: errors are
logged and swallowed. A repeated call for the same state and attempt queues one mail (``dedup_key``).
"""

from __future__ import annotations

import logging

from sqlmodel import Session

from vmportal.center import service as center
from vmportal.kit import pages
from vmportal.mail.service import MailEvent, beijing, notify
from vmportal.request import reminders
from vmportal.request.models import RequestState, VMRequest
from vmportal.request.service.checks import find_unit
from vmportal.unit import recipients as _recipients  # noqa: F401  (registers who a unit's mail goes to)
from vmportal.unit import service as units
from vmportal.unit.models import ContactRole
from vmportal.vm import repository as vm_repository

log = logging.getLogger(__name__)

#: Where the unit's admin collects a delivered VM's initial password (once; rule credentials_once).
CREDENTIALS_API = "/api/v1/vms/{id}/credentials"


def after_move(session: Session, req: VMRequest) -> None:
    """Queue the mail the request's new state calls for (none for the states without one).

    Called in the transition's transaction, after the move. Never raises."""
    try:
        _after_move(session, req)
    except Exception:
        log.exception("no notification for request %s in state %s", req.id, req.state)


def _facts(session: Session, req: VMRequest) -> tuple[str, str, str, str]:
    """(unit_zh, unit_en, facts_zh, facts_en) of a request, for every mail about it."""
    unit = find_unit(session, req.unit_id)
    unit_zh = unit.name_zh if unit is not None else f"单位 {req.unit_id}"
    unit_en = (unit.name_en or unit.name_zh) if unit is not None else f"unit {req.unit_id}"
    due = beijing(req.due_at)
    facts_zh = (
        f"申请编号：#{req.id}\n申请单位：{unit_zh}\n信息系统：{req.system_name}\n主机名：{req.hostname}\n"
        f"配置：{req.vcpus} 核 / {req.memory_gib} GiB 内存 / {req.disk_gib} GiB 磁盘\n"
        f"提交时间：{beijing(req.submitted_at)}（北京时间）\n开通期限：{due}（北京时间）"
    )
    facts_en = (
        f"Request: #{req.id}\nUnit: {unit_en}\nInformation system: {req.system_name}\n"
        f"Hostname: {req.hostname}\n"
        f"Size: {req.vcpus} vCPUs / {req.memory_gib} GiB memory / {req.disk_gib} GiB disk\n"
        f"Submitted: {beijing(req.submitted_at)} (Beijing time)\nDue: {due} (Beijing time)"
    )
    return unit_zh, unit_en, facts_zh, facts_en


def _lead_addresses(session: Session, unit_id: int) -> list[str]:
    contact = units.get_contact(session, unit_id, ContactRole.SECURITY_LEAD)
    address = (contact.email or "").strip() if contact is not None else ""
    return [address] if "@" in address else []


def _after_move(session: Session, req: VMRequest) -> None:
    state = req.state
    if state not in _MAILS or req.id is None:
        return
    n = req.id
    unit_zh, unit_en, facts_zh, facts_en = _facts(session, req)
    key = f"request:{n}:{state}:a{req.provisioning_attempts}"

    if state == RequestState.SUBMITTED:
        lead = _lead_addresses(session, req.unit_id) if center.endorsement_required(session) else []
        ask_zh = (
            "信息中心要求单位负责人先行确认：请单位网络安全负责人登录平台确认该申请，确认后信息中心再审批。"
            if lead
            else "请信息中心登录平台审批。"
        )
        ask_en = (
            "The center requires the unit lead's endorsement first: the unit's security lead should "
            "endorse the request in the portal; the center decides after that."
            if lead
            else "Please decide on it in the portal."
        )
        notify(
            session,
            MailEvent.REQUEST_SUBMITTED,
            req.unit_id,
            subject_zh=f"新的虚拟机申请 #{n}（{unit_zh}）待审批",
            subject_en=f"New VM request #{n} ({unit_en}) waiting for a decision",
            body_zh=f"{unit_zh}提交了以下虚拟机申请。{ask_zh}\n\n{facts_zh}",
            body_en=f"{unit_en} submitted the VM request below. {ask_en}\n\n{facts_en}",
            dedup_key=key,
            center_only=not lead,
            unit_addresses=lead or None,
            related_type="request",
            related_id=n,
            link=pages.request(n),
        )
    elif state == RequestState.ENDORSED:
        notify(
            session,
            MailEvent.REQUEST_ENDORSED,
            req.unit_id,
            subject_zh=f"虚拟机申请 #{n} 已经单位负责人确认，待信息中心审批",
            subject_en=f"VM request #{n} endorsed by the unit lead, waiting for the center's decision",
            body_zh=(
                f"{unit_zh}：\n\n以下虚拟机申请已经单位网络安全负责人确认"
                f"（{beijing(req.endorsed_at)}，北京时间），现由信息中心审批。\n\n{facts_zh}"
            ),
            body_en=(
                f"{unit_en}:\n\nThe unit's security lead endorsed the VM request below "
                f"({beijing(req.endorsed_at)} Beijing time); the center decides on it now.\n\n{facts_en}"
            ),
            dedup_key=key,
            related_type="request",
            related_id=n,
            link=pages.request(n),
        )
    elif state == RequestState.APPROVED:
        notify(
            session,
            MailEvent.REQUEST_APPROVED,
            req.unit_id,
            subject_zh=f"虚拟机申请 #{n} 已批准，正在开通",
            subject_en=f"VM request #{n} approved, being provisioned",
            body_zh=(
                f"{unit_zh}：\n\n信息中心已批准以下虚拟机申请（{beijing(req.decided_at)}，北京时间），"
                "平台正在开通。开通完成后您将收到交付邮件，并可在平台上领取虚拟机的管理员账号和初始密码。"
                f"\n\n{facts_zh}"
            ),
            body_en=(
                f"{unit_en}:\n\nThe center approved the VM request below ({beijing(req.decided_at)} Beijing "
                "time); the portal is provisioning it. You will get a delivery mail once it is done, and "
                f"can then collect the VM's admin account and initial password in the portal.\n\n{facts_en}"
            ),
            dedup_key=key,
            related_type="request",
            related_id=n,
            link=pages.request(n),
        )
    elif state == RequestState.REJECTED:
        reason = req.decision_reason.strip()
        notify(
            session,
            MailEvent.REQUEST_REJECTED,
            req.unit_id,
            subject_zh=f"虚拟机申请 #{n} 未获批准",
            subject_en=f"VM request #{n} rejected",
            body_zh=(
                f"{unit_zh}：\n\n信息中心驳回了以下虚拟机申请（{beijing(req.decided_at)}，北京时间）。\n\n"
                f"驳回理由：{reason}\n\n如需继续申请，请按理由修改后重新提交。\n\n{facts_zh}"
            ),
            body_en=(
                f"{unit_en}:\n\nThe center rejected the VM request below ({beijing(req.decided_at)} Beijing "
                f"time).\n\nReason: {reason}\n\nTo go on, submit a new request that meets the reason.\n\n"
                f"{facts_en}"
            ),
            dedup_key=key,
            related_type="request",
            related_id=n,
            link=pages.request(n),
        )
    elif state == RequestState.DELIVERED:
        _delivered(session, req, unit_zh, unit_en, facts_zh, facts_en, key)
    elif state == RequestState.FAILED:
        _failed(session, req, unit_zh, unit_en, facts_zh, facts_en, key)


def _delivered(
    session: Session, req: VMRequest, unit_zh: str, unit_en: str, facts_zh: str, facts_en: str, key: str
) -> None:
    n = req.id
    vm = vm_repository.get(session, req.vm_id) if req.vm_id is not None else None
    vm_id = vm.id if vm is not None else req.vm_id
    name = vm.name if vm is not None else req.hostname
    address = (vm.ip_address or "—") if vm is not None else "—"
    account = (vm.admin_account or "—") if vm is not None else "—"
    collect = CREDENTIALS_API.format(id=vm_id)
    notify(
        session,
        MailEvent.REQUEST_DELIVERED,
        req.unit_id,
        subject_zh=f"虚拟机申请 #{n} 已交付：{name}（{address}）",
        subject_en=f"VM request #{n} delivered: {name} ({address})",
        body_zh=(
            f"{unit_zh}：\n\n您单位申请的虚拟机已开通（{beijing(req.delivered_at)}，北京时间）。\n\n"
            f"虚拟机：{name}\nIP地址：{address}\n管理员账号：{account}\n\n"
            "初始密码不通过邮件发送。请单位网络安全管理员登录平台，在该虚拟机的页面查看，"
            f"并通过 {collect} 领取初始密码；密码只能领取一次，领取后平台即删除。"
            "请在首次登录后立即修改密码，并按《虚拟机服务协议书》做好安全管理。\n\n"
            f"{facts_zh}"
        ),
        body_en=(
            f"{unit_en}:\n\nThe VM your unit requested is delivered ({beijing(req.delivered_at)} Beijing "
            f"time).\n\nVM: {name}\nAddress: {address}\nAdmin account: {account}\n\n"
            "The initial password is not sent by mail. The unit's security administrator signs in to the "
            f"portal, opens the VM's page and collects the initial password with {collect}; it can be "
            "collected once and is erased from the portal then. Change it at the first login and keep "
            f"the VM secure as the VM service agreement requires.\n\n{facts_en}"
        ),
        related_type="request",
        related_id=n,
        link=pages.vm(vm_id) if vm_id is not None else pages.request(n),
        dedup_key=key,
        unit_addresses=reminders.unit_admin_addresses(session, req),
    )


def _failed(
    session: Session, req: VMRequest, unit_zh: str, unit_en: str, facts_zh: str, facts_en: str, key: str
) -> None:
    n = req.id
    assert n is not None
    reason = req.failure_reason.strip() or "—"
    attempt = req.provisioning_attempts
    notify(
        session,
        MailEvent.REQUEST_FAILED,
        req.unit_id,
        subject_zh=f"虚拟机申请 #{n} 开通失败，请处理（{unit_zh}）",
        subject_en=f"Provisioning of VM request #{n} ({unit_en}) failed",
        body_zh=(
            f"以下虚拟机申请第 {attempt} 次开通失败，已释放所占IP地址。请排除问题后在平台上重新开通。\n\n"
            f"失败原因：{reason}\n\n{facts_zh}"
        ),
        body_en=(
            f"Provisioning attempt {attempt} of the VM request below failed; its address was released. "
            f"Fix the cause and retry it in the portal.\n\nError: {reason}\n\n{facts_en}"
        ),
        related_type="request",
        related_id=n,
        link=pages.request(n),
        dedup_key=key,
        center_only=True,
    )
    notify(
        session,
        MailEvent.REQUEST_FAILED,
        req.unit_id,
        subject_zh=f"虚拟机申请 #{n} 开通遇到问题，信息中心正在处理",
        subject_en=f"VM request #{n}: provisioning hit a problem, the center is on it",
        body_zh=(
            f"{unit_zh}：\n\n您单位的以下虚拟机申请在开通时遇到问题，信息中心已收到通知并将重新开通，"
            f"单位无需重新提交申请。开通期限不变。\n\n{facts_zh}"
        ),
        body_en=(
            f"{unit_en}:\n\nProvisioning your unit's VM request below hit a problem. The center has been "
            "told and will provision it again; the unit need not submit it again. The deadline stands."
            f"\n\n{facts_en}"
        ),
        related_type="request",
        related_id=n,
        link=pages.request(n),
        dedup_key=f"request:{n}:failed:unit",
        unit_addresses=reminders.unit_admin_addresses(session, req),
    )


_MAILS: frozenset[str] = frozenset(
    {
        RequestState.SUBMITTED,
        RequestState.ENDORSED,
        RequestState.APPROVED,
        RequestState.REJECTED,
        RequestState.DELIVERED,
        RequestState.FAILED,
    }
)
