"""Rules ``power_ops`` (plan 二(二)4) and ``suspended_lock`` (agreement §8; plan 二(三)3).

Who may act on a VM: "各单位所属虚拟机的重启、开机、关机操作，由各单位的网络安全管理员统一负责", so the
unit's security administrators and the center, nobody else. And when the center has suspended a VM for
security, the unit may not bring it back by itself: only the center restores it, after verifying the
rectification report. Powering a suspended VM *down* stays allowed, since it can only reduce harm.
"""

from __future__ import annotations

from enum import StrEnum

from policies.base import Decision, Verdict, combine
from policies.catalog import RULES
from policies.roles import Actor, Role, is_center

POWER_RULE = RULES["power_ops"]
LOCK_RULE = RULES["suspended_lock"]


class SecurityState(StrEnum):
    NORMAL = "normal"
    SUSPENDED = "suspended"
    RECTIFICATION_SUBMITTED = "rectification_submitted"
    RESTORED = "restored"


class VMAction(StrEnum):
    START = "start"
    STOP = "stop"  # hard power off
    RESTART = "restart"  # hard reset
    SHUTDOWN = "shutdown"  # guest OS shutdown
    REBOOT = "reboot"  # guest OS reboot
    RECONNECT = "reconnect"  # reconnect the NICs the containment disconnected
    RELEASE = "release"  # lift the suspension
    UNBLOCK_WEB = "unblock_web"  # lift the web block


#: The states in which the center, not the unit, decides whether the VM comes back.
LOCKED_STATES: frozenset[SecurityState] = frozenset(
    {SecurityState.SUSPENDED, SecurityState.RECTIFICATION_SUBMITTED}
)

#: What a unit may still do to a locked VM: powering down a compromised VM can only reduce harm.
ALLOWED_WHILE_LOCKED: frozenset[VMAction] = frozenset({VMAction.STOP, VMAction.SHUTDOWN})

ACTION_NAMES: dict[VMAction, tuple[str, str]] = {
    VMAction.START: ("开机", "start"),
    VMAction.STOP: ("关机", "stop"),
    VMAction.RESTART: ("重启", "restart"),
    VMAction.SHUTDOWN: ("关闭操作系统", "shut down"),
    VMAction.REBOOT: ("重启操作系统", "reboot"),
    VMAction.RECONNECT: ("恢复网络连接", "reconnect"),
    VMAction.RELEASE: ("解除暂停", "release"),
    VMAction.UNBLOCK_WEB: ("恢复WEB服务", "unblock the web service of"),
}


def check_power_ops(actor: Actor, vm_unit_id: int) -> Verdict:
    """Allow the VM's own unit_admins and center staff; deny unit leads, auditors and other units."""
    if is_center(actor.role):
        return POWER_RULE.allow(
            reason_zh="信息中心工作人员可以操作各单位的虚拟机。",
            reason_en="Center staff may operate every unit's VMs.",
        )
    if actor.role is Role.UNIT_ADMIN and actor.belongs_to(vm_unit_id):
        return POWER_RULE.allow(
            reason_zh="本单位网络安全管理员操作本单位的虚拟机（方案二（二）4）。",
            reason_en="The unit's own security administrator operates the unit's VM (plan 二(二)4).",
        )
    if actor.role is Role.AUDITOR:
        return POWER_RULE.deny(
            message_zh="检查人员只能查看虚拟机，不能开机、关机或重启。",
            message_en="Auditors can view VMs but cannot start, stop or restart them.",
        )
    if not actor.belongs_to(vm_unit_id):
        return POWER_RULE.deny(
            message_zh="该虚拟机不属于您的单位，您不能操作它。各单位的虚拟机只由本单位的网络安全管理员操作（方案二（二）4）。",
            message_en=(
                "This VM does not belong to your unit, so you cannot operate it. A unit's VMs are operated "
                "only by that unit's security administrators (plan 二(二)4)."
            ),
        )
    return POWER_RULE.deny(
        message_zh=(
            "根据《校园网络安全综合治理方案》二（二）4，各单位虚拟机的开机、关机、重启由本单位的网络安全管理员统一负责；"
            "网络安全负责人可以查看，但不能操作。请联系本单位的网络安全管理员。"
        ),
        message_en=(
            "Under plan 二(二)4, starting, stopping and restarting a unit's VMs is the job of the unit's "
            "security administrator; the security lead can view them but not operate them. Please ask your "
            "unit's security administrator."
        ),
    )


def check_suspended_lock(
    actor: Actor, security_state: SecurityState | str, action: VMAction | str
) -> Verdict:
    """Only the center brings back a VM suspended for security; anyone may still power it down."""
    try:
        vm_action = VMAction(action)
    except ValueError:
        # Deny by default: the lock cannot vouch for an action it does not know.
        return LOCK_RULE.deny(
            message_zh=f"未知的操作“{action}”。可用的操作：" + "、".join(a.value for a in VMAction) + "。",
            message_en=f"Unknown action '{action}'. Known actions: "
            + ", ".join(a.value for a in VMAction)
            + ".",
            field="action",
        )
    try:
        state = SecurityState(security_state)
    except ValueError:
        return LOCK_RULE.deny(
            message_zh=f"未知的安全状态“{security_state}”，无法判断是否允许该操作。",
            message_en=(
                f"Unknown security state '{security_state}'; cannot tell whether the action is allowed."
            ),
            field="security_state",
        )

    if state not in LOCKED_STATES:
        return LOCK_RULE.allow(
            reason_zh="该虚拟机未因安全问题被暂停。",
            reason_en="The VM is not suspended for security.",
        )
    if is_center(actor.role):
        # Releasing still needs a verified rectification report; the app's suspension workflow holds
        # that record, this rule only says the center is the one who may do it.
        return LOCK_RULE.allow(
            reason_zh="虚拟机已被暂停，只有信息中心可以恢复；恢复须以核实整改报告为前提。",
            reason_en=(
                "The VM is suspended; only the center restores it, after verifying the rectification report."
            ),
        )
    if vm_action in ALLOWED_WHILE_LOCKED:
        return LOCK_RULE.allow(
            reason_zh="虚拟机已被暂停，但仍可关机。",
            reason_en="The VM is suspended, but it may still be powered down.",
        )

    action_zh, action_en = ACTION_NAMES[vm_action]
    if state is SecurityState.SUSPENDED:
        status_zh = "请排查并整改安全问题，在门户中提交整改报告"
        status_en = "Please find and fix the security problem and submit a rectification report in the portal"
    else:
        status_zh = "整改报告已提交，正在等待信息中心核实"
        status_en = "Your rectification report has been submitted and is waiting for the center to verify it"
    return LOCK_RULE.deny(
        message_zh=(
            f"该虚拟机因安全问题已被信息中心暂停（《虚拟机服务协议书》第8条），在信息中心核实整改之前不能{action_zh}。"
            f"{status_zh}；信息中心确认安全隐患消除后恢复该虚拟机（方案二（三）3）。在此期间仍可关机。"
        ),
        message_en=(
            "This VM has been suspended by the center for a security problem (VM service agreement §8), "
            f"so you cannot {action_en} it until the center has verified the rectification. {status_en}; "
            "the center restores the VM once it has confirmed the problem is gone (plan 二(三)3). "
            "You may still power it down."
        ),
    )


def check_power(
    actor: Actor, vm_unit_id: int, security_state: SecurityState | str, action: VMAction | str
) -> Decision:
    """Both power rules for one action on one VM: who may act, and whether the suspension lock allows it."""
    return combine(check_power_ops(actor, vm_unit_id), check_suspended_lock(actor, security_state, action))
