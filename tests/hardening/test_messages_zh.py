"""Issue 11 point 7: a 409's Chinese message names the record's state and the refused action in
Chinese. kit imports no domain, so its names are kept beside the errors; this walks every state and
action enum of the domains and the policies, so a new state without a Chinese name fails here, and
checks the message a 409 built outside a lifecycle machine carries."""

from __future__ import annotations

import enum
import importlib
import re

import pytest

from vmportal.kit import errors

LATIN_WORD = re.compile(r"[A-Za-z]{3,}")

#: (module, enum name) of every state and action a 409 can name.
_STATES = [
    ("vmportal.request.models", "RequestState"),
    ("vmportal.compliance.models", "NoticeState"),
    ("vmportal.incidents.models", "AlertState"),
    ("vmportal.incidents.models", "IncidentState"),
    ("vmportal.incidents.models", "ContainmentState"),
    ("vmportal.incidents.models", "RestoreState"),
    ("vmportal.incidents.models", "RectificationState"),
    ("vmportal.incidents.models", "FindingState"),
    ("vmportal.incidents.models", "ViolationState"),
    ("vmportal.mail.models", "NotificationState"),
    ("vmportal.vm.models", "Lifecycle"),
    ("vmportal.vm.models", "PowerOpState"),
    ("policies.power", "SecurityState"),
]
_ACTIONS = [
    ("vmportal.request.lifecycle", "Action"),
    ("vmportal.compliance.lifecycle", "FindingAction"),
    ("vmportal.incidents.lifecycle", "Action"),
    ("vmportal.incidents.schemas", "ContainAction"),
    ("policies.power", "VMAction"),
]


def _values(module: str, name: str) -> list[str]:
    kind = getattr(importlib.import_module(module), name)
    assert issubclass(kind, enum.Enum)
    return [str(member.value) for member in kind]


@pytest.mark.parametrize(("module", "name"), _STATES)
def test_every_state_has_a_chinese_name(module: str, name: str) -> None:
    for value in _values(module, name):
        zh = errors.state_name_zh(value)
        assert not LATIN_WORD.search(zh), f"{name}.{value} has no Chinese name in kit.errors"


@pytest.mark.parametrize(("module", "name"), _ACTIONS)
def test_every_action_has_a_chinese_name(module: str, name: str) -> None:
    for value in _values(module, name):
        zh = errors.action_name_zh(value)
        assert not LATIN_WORD.search(zh), f"{name}.{value} has no Chinese name in kit.errors"


@pytest.mark.parametrize(
    ("what", "state", "action", "zh"),
    [
        ("request", "delivered", "approve", "虚拟机申请当前状态为“已交付”，不能执行“批准”"),
        ("vm", "missing", "fetch credentials", "虚拟机当前状态为“缺失”，不能执行“获取交付凭据”"),
        ("notification", "sent", "resend", "通知邮件当前状态为“已发送”，不能执行“重新发送”"),
        ("vm", "decommissioned", "shutdown", "虚拟机当前状态为“已回收”，不能执行“关闭操作系统”"),
    ],
)
def test_a_state_conflict_is_entirely_chinese(what: str, state: str, action: str, zh: str) -> None:
    exc = errors.StateConflict(what, state, action)
    assert exc.message_zh == zh
    assert not LATIN_WORD.search(exc.message_zh)
    # The English message and the machine-readable fields keep the ids.
    assert exc.extra["state"] == state and state in exc.message
