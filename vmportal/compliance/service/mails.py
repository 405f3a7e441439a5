"""The e-mails compliance sends, in Chinese first and English: a finding opened, reopened after a
failed retest, due within 48 hours, overdue; a notice (to the unit, or to the center when it matched
nothing); forbidden services a scan found; a VM shut down over one.

Each is queued in the caller's transaction through :func:`vmportal.mail.service.notify` (sent after
the commit, retried by the outbox); a reminder carries a ``dedup_key``, so it is queued once per
finding and deadline however often the reminder run passes.
"""

from __future__ import annotations

from collections import defaultdict

from sqlmodel import Session

from policies.compromise import CATEGORY_NAMES_ZH, SEVERITY_NAMES_ZH, Category, Severity
from policies.forbidden_services import KIND_NAMES, ServiceKind
from vmportal.compliance import repository
from vmportal.incidents.models import Finding, Notice, Notification, ServiceViolation
from vmportal.kit import pages
from vmportal.mail import service as notification
from vmportal.mail.service import MailEvent, beijing
from vmportal.unit import recipients as _recipients  # noqa: F401  (registers who a unit's mail goes to)
from vmportal.vm.models import VM

# ---- findings ---------------------------------------------------------------------------------------


def _names(session: Session, finding: Finding) -> tuple[str, str, str, str]:
    """(vm in Chinese, vm in English, category in Chinese, severity in Chinese)."""
    vm = repository.vm(session, finding.vm_id) if finding.vm_id is not None else None
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


def reminder_key(finding: Finding, what: str) -> str:
    """The reminder ``what`` of this finding's current deadline: queued once."""
    # To the microsecond: a deadline set again (a failed retest) is another deadline, however soon.
    deadline = finding.deadline_at.isoformat() if finding.deadline_at else "none"
    return f"finding:{finding.id}:{what}:{deadline}"


def about_finding(
    session: Session, finding: Finding, event: MailEvent, *, extra_zh: str = "", extra_en: str = ""
) -> Notification | None:
    """Tell the finding's unit (and the center) about ``event``; None when a reminder went out already."""
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
        dedup = reminder_key(finding, "due_soon")
    else:
        subject_zh = f"已超过整改期限（{due}）#{n}：{finding.title}"
        subject_en = f"Finding #{n} overdue since {due} Beijing time: {finding.title}"
        lead_zh, lead_en = (
            "以下安全隐患已超过整改期限仍未整改，请立即处理；逾期情况将纳入通报。",
            "This finding is past its deadline and not fixed: please act now; overdue findings are reported.",
        )
        dedup = reminder_key(finding, "overdue")
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
        link=pages.finding(n),
        dedup_key=dedup,
    )


# ---- notices ----------------------------------------------------------------------------------------


def about_notice(session: Session, notice: Notice, finding: Finding) -> None:
    """Tell the unit a notice names it (the center in copy); the center alone when it matched nothing."""
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
            link=pages.notice(notice.id),
            center_only=True,
        )
        return
    vm = repository.vm(session, notice.vm_id) if notice.vm_id is not None else None
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
        link=pages.notice(notice.id),
    )


# ---- forbidden services ---------------------------------------------------------------------------


def describe(v: ServiceViolation) -> tuple[str, str]:
    """The violation in one line, in Chinese and in English: address, port, kind, product."""
    kind_zh, kind_en = KIND_NAMES[ServiceKind(v.service)]
    product = f"（{v.product}）" if v.product else ""
    return (
        f"{v.ip} {v.port}/{v.protocol} {kind_zh}服务{product}",
        f"{v.ip} {v.port}/{v.protocol} {kind_en} service" + (f" ({v.product})" if v.product else ""),
    )


def violations_raised(session: Session, raised: list[ServiceViolation]) -> None:
    """One mail per unit listing the forbidden services a scan raised on its VMs."""
    per_unit: dict[int | None, list[ServiceViolation]] = defaultdict(list)
    for v in raised:
        per_unit[v.unit_id].append(v)
    for unit_id, items in per_unit.items():
        lines = [describe(v) for v in items]
        notification.notify(
            session,
            MailEvent.VIOLATION,
            unit_id,
            subject_zh=f"扫描发现违规服务 {len(items)} 项，请关闭或申请批准",
            subject_en=f"A scan found {len(items)} forbidden service(s): stop them or ask for approval",
            body_zh="信息中心扫描发现您单位的虚拟机开放了以下服务：\n\n"
            + "\n".join(f"  #{v.id} {zh}" for v, (zh, _) in zip(items, lines, strict=True))
            + "\n\n"
            + (items[0].reasons_zh[0] if items[0].reasons_zh else ""),
            body_en="A scan by the center found these services on your unit's VMs:\n\n"
            + "\n".join(f"  #{v.id} {en}" for v, (_, en) in zip(items, lines, strict=True))
            + "\n\n"
            + (items[0].reasons_en[0] if items[0].reasons_en else ""),
            related_type="service_scan",
            related_id=items[0].scan_id or "",
            link=pages.VIOLATIONS,
        )


def shut_down(session: Session, violation: ServiceViolation, vm: VM, reason: str) -> None:
    """Tell the unit its VM was shut down over a forbidden service (agreement §6)."""
    zh, en = describe(violation)
    notification.notify(
        session,
        MailEvent.VIOLATION_SHUTDOWN,
        violation.unit_id,
        subject_zh=f"虚拟机 {vm.name} 因违规服务已被信息中心关闭",
        subject_en=f"VM {vm.name} shut down by the center over a forbidden service",
        body_zh=f"信息中心扫描发现虚拟机 {vm.name} 开放 {zh}，未经批准，"
        f"依据《虚拟机服务协议书》第6条已关闭该虚拟机。"
        + (f"\n说明：{reason}" if reason else "")
        + "\n请关闭该服务后联系信息中心，或申请批准。",
        body_en=f"A scan found {en} on VM {vm.name} without approval; under §6 of the VM service agreement "
        "the center shut the VM down."
        + (f"\nNote: {reason}" if reason else "")
        + "\nStop the service and contact the center, or ask for its approval.",
        related_type="service_violation",
        related_id=violation.id,
        link=pages.violation(violation.id),
    )
