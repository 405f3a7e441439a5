"""Typed errors carrying their HTTP status; one handler in ``vmportal.app.factory`` renders them all.

Every error answer has the shape ``{"error": {"code", "message", "message_zh", ...}}`` with the
field, rule, or current state that explains it.
"""

from __future__ import annotations

from typing import Any

from policies import Decision
from vmportal.kit.labels import field_name_zh

#: Every record type an answer can name, in Chinese: a Chinese message never carries an English noun.
RECORD_NAMES_ZH: dict[str, str] = {
    "alert": "告警",
    "alert record": "告警原始记录",
    "alert source": "告警来源",
    "attachment": "附件",
    "attachment file": "附件文件",
    "cleanup campaign": "清理工作",
    "cleanup item": "清理项目",
    "maintenance window": "计划停机",
    "containment": "处置",
    "contact": "联络人",
    "delivery credentials of vm": "虚拟机交付凭据",
    "document": "文件",
    "document file": "文件内容",
    "exemption": "服务豁免",
    "finding": "安全隐患",
    "hypervisor connection": "虚拟化平台连接",
    "incident": "安全事件",
    "information system": "信息系统",
    "ip pool": "IP 地址池",
    "notice": "通报",
    "notification": "通知邮件",
    "robot_message": "群机器人消息",
    "group_robot": "群机器人",
    "power operation": "电源操作",
    "rectification": "整改报告",
    "request": "虚拟机申请",
    "restore": "恢复",
    "scan": "扫描",
    "template": "模板",
    "unit": "单位",
    "user": "用户",
    "violation": "违规服务",
    "vm": "虚拟机",
}


def record_name_zh(what: str) -> str:
    return RECORD_NAMES_ZH.get(what, what)


#: Every state a 409 can name, in Chinese (the values of the domains' state enums; kit imports no
#: domain, so the names live here). A word several records share reads right for each of them.
STATE_NAMES_ZH: dict[str, str] = {
    "accepted": "已通过",
    "active": "运行中",
    "approved": "已批准",
    "cancelled": "已撤回",
    "closed": "已关闭",
    "confirmed": "已确认",
    "contained": "已处置",
    "corrected": "已更正",
    "containing": "处置中",
    "deadline_passed": "已截止",
    "decommissioned": "已回收",
    "delivered": "已交付",
    "dismissed": "已排除",
    "endorsed": "已审核",
    "exempted": "已豁免",
    "failed": "失败",
    "fixed": "已整改",
    "held": "暂缓",
    "matched": "已匹配",
    "missing": "缺失",
    "none": "无",
    "normal": "正常",
    "noted": "已记录",
    "notified": "已通知",
    "open": "待处理",
    "pending": "等待中",
    "provisioning": "交付中",
    "received": "已接收",
    "rectification_submitted": "已提交整改报告",
    "registered": "已登记",
    "rejected": "已驳回",
    "released": "已解除",
    "resolved": "已解决",
    "restored": "已恢复",
    "retired": "已停用",
    "restoring": "恢复中",
    "retested": "已复测",
    "revoked": "已撤销",
    "running": "进行中",
    "sending": "发送中",
    "sent": "已发送",
    "shut_down": "已关停",
    "submitted": "已提交",
    "succeeded": "已成功",
    "suspended": "已暂停",
    "unmatched": "未匹配",
    "withdrawn": "已撤回",
}

#: Every action a 409 can name, in Chinese.
ACTION_NAMES_ZH: dict[str, str] = {
    "accept": "通过",
    "approve": "批准",
    "assign": "分配",
    "block_web": "封禁网站",
    "cancel": "撤销",
    "close": "关闭",
    "confirm": "确认",
    "contain": "处置",
    "contained": "确认处置",
    "correct": "更正",
    "decline": "不同意",
    "decommission": "回收",
    "deliver": "交付",
    "dismiss": "排除",
    "endorse": "审核",
    "fail": "判定失败",
    "fetch credentials": "获取交付凭据",
    "fix": "整改",
    "isolate_network": "断网",
    "notify": "通知",
    "pass": "判定通过",
    "power_off": "关机",
    "reboot": "重启操作系统",
    "reconnect": "恢复网络",
    "reject": "驳回",
    "release": "解除",
    "resend": "重新发送",
    "restart": "重启",
    "retest": "复测",
    "retire": "停用",
    "retry": "重试",
    "revoke": "撤销",
    "shutdown": "关闭操作系统",
    "start": "开机",
    "start_provisioning": "开始交付",
    "stop": "关机",
    "submit_rectification": "提交整改报告",
    "unblock_web": "解除网站封禁",
}


def state_name_zh(state: str) -> str:
    return STATE_NAMES_ZH.get(state, state)


def action_name_zh(action: str) -> str:
    return ACTION_NAMES_ZH.get(action, action)


class PortalError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, message_zh: str = "", **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.message_zh = message_zh or message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "message_zh": self.message_zh, **self.extra}


class BadRequest(PortalError):
    status = 400
    code = "bad_request"


class InvalidField(PortalError):
    """422 naming the field and the rule it broke."""

    status = 422
    code = "validation_error"

    def __init__(self, field: str, rule: str, message: str, *, message_zh: str = "") -> None:
        super().__init__(
            f"{field}: {message}",
            message_zh=f"{field_name_zh(field)}：{message_zh or message}",
            fields=[{"field": field, "rule": rule, "message": message}],
        )


class Unauthorized(PortalError):
    status = 401
    code = "unauthorized"


class Forbidden(PortalError):
    status = 403
    code = "forbidden"


class PolicyDenied(PortalError):
    """403 carrying the deciding rules with both messages, as the policy layer wrote them."""

    status = 403
    code = "policy_denied"

    def __init__(self, decision: Decision) -> None:
        denials = decision.denials
        super().__init__(
            " ".join(d.message_en for d in denials),
            message_zh="".join(d.message_zh for d in denials),
            rule=denials[0].rule if denials else "default",
            rules=[d.rule for d in denials],
            denials=[d.as_dict() for d in denials],
        )
        self.decision = decision


class NotFound(PortalError):
    status = 404
    code = "not_found"

    def __init__(self, what: str, ident: object) -> None:
        super().__init__(
            f"{what} {ident} not found", message_zh=f"未找到{record_name_zh(what)} {ident}", resource=what
        )


class StateConflict(PortalError):
    """409: the action is not allowed in the record's current state, which the answer names."""

    status = 409
    code = "state_conflict"

    def __init__(self, what: str, state: str, action: str, *, message: str = "") -> None:
        super().__init__(
            message or f"cannot {action} {what} in state '{state}'",
            message_zh=f"{record_name_zh(what)}当前状态为“{state_name_zh(state)}”，"
            f"不能执行“{action_name_zh(action)}”",
            state=state,
            action=action,
        )


class Conflict(PortalError):
    status = 409
    code = "conflict"


class Gone(PortalError):
    status = 410
    code = "gone"


class PayloadTooLarge(PortalError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(PortalError):
    status = 415
    code = "unsupported_media_type"


class Locked(PortalError):
    status = 423
    code = "locked"


class UpstreamError(PortalError):
    """The hypervisor refused or failed; the message is the adapter's, for an operator."""

    status = 502
    code = "hypervisor_error"
