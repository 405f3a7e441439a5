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
            message_zh=f"{record_name_zh(what)}当前状态为“{state}”，不能执行“{action}”",
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
