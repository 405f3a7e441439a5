"""The center's configuration of group robots (issue 14 point 6): for each unit, and one for the center
itself, a DingTalk or WeCom chat-group robot that hears the same notices as the mailbox.

Only a center_admin sets one up (the API's and the pages' gate). The webhook must be https on a host of
``VMPORTAL_ROBOT_ALLOWED_HOSTS`` (DingTalk's and WeCom's by default), with the path the service uses;
plain http is accepted only for a loopback host that list names (a relay on the same machine, the
tests' receiver). The webhook and the DingTalk secret are stored encrypted (``kit.crypto``) and shown
back only masked; every change is audited with the masked values. Sending is the mail domain's
(:mod:`vmportal.mail.robots`).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from vmportal.audit.service import Who, record
from vmportal.kit import crypto, errors
from vmportal.kit.db import utcnow
from vmportal.kit.settings import get_settings
from vmportal.mail import repository as mail_repository
from vmportal.mail import robots as sender
from vmportal.mail.models import GroupRobot, RobotKind
from vmportal.mail.service import MailEvent
from vmportal.unit import service as units

#: The path each service's custom robot posts to, and the query parameter that carries its token.
SERVICE_PATHS: dict[str, tuple[str, str]] = {
    RobotKind.DINGTALK.value: ("/robot/send", "access_token"),
    RobotKind.WECOM.value: ("/cgi-bin/webhook/send", "key"),
}
MAX_URL = 1000
MAX_SECRET = 200
#: A DingTalk 加签 secret is "SEC" and 64 hex digits; anything printable is accepted, no whitespace.
_SECRET = re.compile(r"^\S{1,200}$")
_LOOPBACK_NAMES = frozenset({"localhost"})

NOTICE_KINDS: tuple[str, ...] = tuple(e.value for e in MailEvent)


@dataclass(frozen=True)
class RobotChange:
    """What the center asks for; None keeps what is stored (a new robot needs kind and webhook)."""

    kind: str | None = None
    webhook_url: str | None = None
    secret: str | None = None  # "" removes the secret (an unsigned DingTalk robot)
    enabled: bool | None = None
    kinds: Sequence[str] | None = None  # empty: every kind of notice


def _bad(field: str, rule: str, en: str, zh: str) -> errors.InvalidField:
    return errors.InvalidField(field, rule, en, message_zh=zh)


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_webhook(kind: str, url: str) -> str:
    """The webhook as stored, or InvalidField naming ``webhook_url`` and the rule it broke."""
    url = url.strip()
    if not url:
        raise _bad(
            "webhook_url", "required", "the robot's webhook URL is required", "须填写机器人的 Webhook 地址"
        )
    if len(url) > MAX_URL:
        raise _bad("webhook_url", "max_length", f"at most {MAX_URL} characters", f"不能超过 {MAX_URL} 个字符")
    try:
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise _bad("webhook_url", "url", "not a valid URL", "不是有效的网址") from None
    if parts.scheme not in ("https", "http") or not host:
        raise _bad("webhook_url", "url", "must be an https:// URL", "须为 https:// 开头的网址")
    if parts.username or parts.password or parts.fragment:
        raise _bad(
            "webhook_url",
            "url",
            "must carry no user name, password or #fragment",
            "不能包含用户名、密码或 # 片段",
        )
    allowed = [h.strip().lower().strip("[]") for h in get_settings().robot_allowed_hosts if h.strip()]
    if host not in allowed:
        listed = ", ".join(allowed) or "—"
        raise _bad(
            "webhook_url",
            "allowed_host",
            f"host {host} is not an allowed robot host (VMPORTAL_ROBOT_ALLOWED_HOSTS: {listed})",
            f"主机 {host} 不在允许的机器人主机列表中（VMPORTAL_ROBOT_ALLOWED_HOSTS：{listed}）",
        )
    if parts.scheme != "https" and not _is_loopback(host):
        raise _bad(
            "webhook_url",
            "https",
            "must use https (http only for a loopback host)",
            "须使用 https（仅本机回环地址可用 http）",
        )
    path, token_name = SERVICE_PATHS[kind]
    token = urllib.parse.parse_qs(parts.query).get(token_name, [""])[0]
    if parts.path != path or not token:
        name = "DingTalk" if kind == RobotKind.DINGTALK.value else "WeCom"
        name_zh = "钉钉" if kind == RobotKind.DINGTALK.value else "企业微信"
        raise _bad(
            "webhook_url",
            "service_path",
            f"a {name} robot's webhook is …{path}?{token_name}=… (copy it from the group's robot settings)",
            f"{name_zh}机器人的 Webhook 地址形如 …{path}?{token_name}=…（请从群机器人设置中复制）",
        )
    return url


def _check_kind(kind: str) -> str:
    if kind not in SERVICE_PATHS:
        raise _bad("kind", "one_of", "must be one of: dingtalk, wecom", "只能取以下值之一：dingtalk, wecom")
    return kind


def _check_kinds(kinds: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    for index, value in enumerate(kinds):
        if value not in NOTICE_KINDS:
            raise _bad(
                f"kinds.{index}",
                "one_of",
                f"unknown kind of notice {value!r} (known: {', '.join(NOTICE_KINDS)})",
                f"未知的通知类型 {value!r}（已知：{', '.join(NOTICE_KINDS)}）",
            )
        if value not in chosen:
            chosen.append(value)
    return chosen


def _check_secret(kind: str, secret: str) -> str:
    secret = secret.strip()
    if not secret:
        return ""
    if kind != RobotKind.DINGTALK.value:
        raise _bad(
            "secret",
            "not_signed",
            "a WeCom group robot has no signing secret: its key is in the webhook URL",
            "企业微信群机器人没有加签密钥：其 key 已在 Webhook 地址中",
        )
    if len(secret) > MAX_SECRET or not _SECRET.match(secret):
        raise _bad(
            "secret",
            "format",
            f"at most {MAX_SECRET} characters, no spaces (DingTalk's 加签 secret starts with SEC)",
            f"不超过 {MAX_SECRET} 个字符且不含空格（钉钉加签密钥以 SEC 开头）",
        )
    return secret


def shown(robot: GroupRobot) -> dict[str, Any]:
    """A robot as the center reads it back: never the webhook's token or the secret in full."""
    return {
        "scope": robot.scope,
        "unit_id": robot.unit_id,
        "kind": robot.kind,
        "webhook_url": robot.webhook_shown,
        "secret_set": bool(robot.secret_encrypted),
        "secret_hint": robot.secret_shown,
        "enabled": robot.enabled,
        "kinds": list(robot.kinds),
        "updated_at": robot.updated_at,
    }


def configure(session: Session, who: Who, unit_id: int | None, change: RobotChange) -> GroupRobot:
    """Set up or change the robot of ``unit_id`` (None: the center's). Raises InvalidField naming the
    field; writes nothing then."""
    if unit_id is not None:
        units.get_unit(session, unit_id)  # 404 for a unit that does not exist
    scope = sender.scope_of(unit_id)
    robot = mail_repository.lock_robot_by_scope(session, scope)
    before = shown(robot) if robot is not None else None
    kind = _check_kind(change.kind if change.kind is not None else (robot.kind if robot else ""))
    if robot is None and change.webhook_url is None:
        raise _bad(
            "webhook_url", "required", "the robot's webhook URL is required", "须填写机器人的 Webhook 地址"
        )
    if change.webhook_url is not None:
        webhook = check_webhook(kind, change.webhook_url)
    else:
        assert robot is not None
        webhook = check_webhook(kind, crypto.decrypt(robot.webhook_encrypted))  # the kind may have changed
    if change.secret is not None:
        secret = _check_secret(kind, change.secret)
    elif robot is not None and robot.secret_encrypted:
        secret = _check_secret(kind, crypto.decrypt(robot.secret_encrypted))
    else:
        secret = ""
    kinds = _check_kinds(change.kinds) if change.kinds is not None else (list(robot.kinds) if robot else [])
    if robot is None:
        robot = GroupRobot(scope=scope, unit_id=unit_id, kind=kind, webhook_encrypted="")
    robot.kind = kind
    robot.webhook_encrypted = crypto.encrypt(webhook)
    robot.webhook_shown = sender.mask_webhook(webhook)
    robot.secret_encrypted = crypto.encrypt(secret) if secret else ""
    robot.secret_shown = sender.mask_secret(secret)
    if change.enabled is not None:
        robot.enabled = change.enabled
    robot.kinds = kinds
    robot.updated_by = who.actor_id
    robot.updated_at = utcnow()
    session.add(robot)
    after = shown(robot)
    audit_before = {k: v for k, v in (before or {}).items() if k != "updated_at"} or None
    audit_after = {k: v for k, v in after.items() if k != "updated_at"}
    # A new secret with the same mask is still a change the audit log should show.
    if change.secret is not None:
        audit_after["secret_changed"] = True
    record(
        session,
        who,
        "group_robot.configure",
        "group_robot",
        scope,
        before=audit_before,
        after=audit_after,
        unit_id=unit_id,
    )
    return robot


def robots(session: Session) -> list[GroupRobot]:
    """Every configured robot, the center's first."""
    return sender.robots(session)


def robot_of(session: Session, unit_id: int | None) -> GroupRobot:
    """The robot of a unit (None: the center's); 404 when none is configured."""
    if unit_id is not None:
        units.get_unit(session, unit_id)
    robot = sender.robot_of(session, unit_id)
    if robot is None:
        raise errors.NotFound("group_robot", sender.scope_of(unit_id))
    return robot
