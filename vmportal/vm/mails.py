"""The mail of a failed power operation (issue 14 point 6): the VM's unit's administrator and the
center hear that a start, stop, restart … a person asked for did not happen, and why.

:func:`power_finished` is called by the power queue with every operation it finishes, in the
transaction that records the outcome (:func:`vmportal.vm.service.power._finish`); it queues a mail
through the notification outbox only for a failed operation that a person requested. The portal's own
operations (``requested_by`` None: containment and its restore) are reported by their workflow's
mails (``incidents.mails``: containment failed), so they are not mailed twice.

Recipients: the unit's security administrator (contact registry) and the account that asked, when it
is a user of that unit, the center's mailbox in copy; a VM with no unit, or nobody with an address,
goes to the center's mailbox alone. Never raises: a mail problem must not roll back the outcome.
"""

from __future__ import annotations

import logging

from sqlmodel import Session

from hypervisors.base import PowerAction
from vmportal.identity.models import User
from vmportal.kit import pages
from vmportal.mail.service import MailEvent, beijing, notify
from vmportal.unit import recipients as _recipients  # noqa: F401  (registers who a unit's mail goes to)
from vmportal.unit import service as units
from vmportal.unit.models import ContactRole
from vmportal.vm.models import VM, PowerOperation, PowerOpState

log = logging.getLogger(__name__)

ACTION_ZH: dict[str, str] = {
    PowerAction.START: "开机",
    PowerAction.STOP: "关机（强制）",
    PowerAction.SHUTDOWN: "关机（操作系统）",
    PowerAction.RESTART: "重启（强制）",
    PowerAction.REBOOT: "重启（操作系统）",
}


def power_finished(session: Session, op: PowerOperation, vm: VM | None) -> None:
    """Mail the unit's admin and the center when ``op`` (a person's request) ended failed."""
    if op.state != PowerOpState.FAILED or op.requested_by is None:
        return
    try:
        _mail(session, op, vm)
    except Exception:
        log.exception("no notification for failed power operation %s", op.id)


def _addresses(session: Session, op: PowerOperation, unit_id: int) -> list[str]:
    out: list[str] = []
    contact = units.get_contact(session, unit_id, ContactRole.SECURITY_ADMIN)
    with session.no_autoflush:
        requester = session.get(User, op.requested_by) if op.requested_by is not None else None
    asked = requester.email if requester is not None and requester.unit_id == unit_id else None
    for raw in (contact.email if contact is not None else None, asked):
        address = (raw or "").strip()
        if "@" in address and address not in out:
            out.append(address)
    return out


def _mail(session: Session, op: PowerOperation, vm: VM | None) -> None:
    unit_id = vm.unit_id if vm is not None else None
    name = vm.name if vm is not None else f"VM {op.vm_id}"
    ip_zh = f"（{vm.ip_address}）" if vm is not None and vm.ip_address else ""
    ip_en = f" ({vm.ip_address})" if vm is not None and vm.ip_address else ""
    action_zh = ACTION_ZH.get(op.action, op.action)
    state = op.power_after or "unknown"
    error = op.error.strip() or "—"
    when = beijing(op.finished_at)
    facts_zh = (
        f"虚拟机：{name}{ip_zh}\n操作：{action_zh}（#{op.id}）\n申请时间：{beijing(op.requested_at)}（北京时间）\n"
        f"结束时间：{when}（北京时间）\n当前电源状态：{state}\n失败原因：{error}"
    )
    facts_en = (
        f"VM: {name}{ip_en}\nOperation: {op.action} (#{op.id})\nRequested: {beijing(op.requested_at)} "
        f"(Beijing time)\nFinished: {when} (Beijing time)\nPower state now: {state}\nError: {error}"
    )
    notify(
        session,
        MailEvent.POWER_FAILED,
        unit_id,
        subject_zh=f"虚拟机 {name}{ip_zh} 的{action_zh}操作失败",
        subject_en=f"Power operation {op.action} of VM {name}{ip_en} failed",
        body_zh=(
            f"以下电源操作未能完成，虚拟机保持原状态。请在平台上查看虚拟机的电源状态，必要时重新操作；"
            f"如问题持续，请联系信息中心。\n\n{facts_zh}"
        ),
        body_en=(
            "The power operation below did not complete; the VM stays as it was. Check its power state "
            f"in the portal and try again if needed; contact the center if it keeps failing.\n\n{facts_en}"
        ),
        related_type="power_operation",
        related_id=op.id,
        link=pages.vm(op.vm_id),
        dedup_key=f"power_operation:{op.id}:failed",
        unit_addresses=_addresses(session, op, unit_id) if unit_id is not None else None,
    )
