"""Group robots (issue 14 point 6): the notices a unit's mailbox receives, repeated in its DingTalk or
WeCom chat group, where the center configured a robot for the unit (or for itself).

The ``robot_message`` table is the robots' outbox, beside the mails': :func:`queue` adds a row in the
transaction of the mail it repeats (``mail.service.notify`` calls it), so a group hears of exactly the
events that were committed; :func:`send_due` posts the due rows after the commit, in the same task,
thread and beat run as the mails (``vmportal.security.send_notifications``), each attempt a short
transaction before and after the HTTP call, with the mails' claim, lease and backoff.

The two services, as they define their custom robots:

- DingTalk (钉钉自定义机器人): ``https://oapi.dingtalk.com/robot/send?access_token=…``; with 加签 the
  query also carries ``timestamp`` (milliseconds) and ``sign`` = URL-encoded base64 of
  HMAC-SHA256(key=secret, message=f"{timestamp}\\n{secret}"); the service refuses a sign that does not
  match (errcode 310000) or a timestamp more than an hour off.
- WeCom (企业微信群机器人): ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…``; the key in the URL
  is the only credential, there is no signature.

Both answer HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}``; any other errcode is a failed attempt
with its errmsg kept. A rate-limit answer (DingTalk 130101, WeCom 45009, or HTTP 429) is retried
without counting an attempt, and the robot's other messages wait for the next run.

What a group reads: the notice's subject and its body without the salutation, each shortened to
fit WeCom's 4096 bytes, Chinese then English, and the portal link. No notice carries a password or
credential (the delivered-VM mail says only where to collect them, once, signed in).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlmodel import Session

from vmportal.kit import crypto, db, errors
from vmportal.kit.settings import Settings, get_settings
from vmportal.mail import repository
from vmportal.mail.models import GroupRobot, Notification, NotificationState, RobotKind, RobotMessage
from vmportal.mail.retry import KICK, backoff

log = logging.getLogger(__name__)

CENTER_SCOPE = "center"
BATCH = 100
#: errcodes meaning "too many messages, later": DingTalk's "send too fast", WeCom's "api freq out of limit".
RATE_LIMITED = frozenset({130101, 45009})
RATE_LIMIT_WAIT = timedelta(minutes=2)
#: WeCom's markdown content is at most 4096 bytes; DingTalk allows more. One limit for both.
MAX_CONTENT_BYTES = 4000
SUMMARY_CHARS = 600  # per language: both and the link stay under WeCom's 4096 bytes


def scope_of(unit_id: int | None) -> str:
    """The robot scope a notice about ``unit_id`` goes to (None: the center's)."""
    return CENTER_SCOPE if unit_id is None else f"unit:{unit_id}"


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's 加签: base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}")), before URL encoding."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_url(webhook: str, secret: str, timestamp_ms: int) -> str:
    """The webhook with ``timestamp`` and URL-encoded ``sign`` appended (unchanged without a secret)."""
    if not secret:
        return webhook
    sign = urllib.parse.quote_plus(dingtalk_sign(secret, timestamp_ms))
    joiner = "&" if urllib.parse.urlsplit(webhook).query else "?"
    return f"{webhook}{joiner}timestamp={timestamp_ms}&sign={sign}"


def mask_webhook(url: str) -> str:
    """The URL as the center sees it again: scheme, host and path, each query value masked."""
    parts = urllib.parse.urlsplit(url)
    query = "&".join(
        f"{name}={crypto.mask(value, 3, 3)}"
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    )
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))[:600]


def mask_secret(secret: str) -> str:
    return (crypto.mask(secret, 3, 2) or "")[:40] if secret else ""


# ---- queueing ---------------------------------------------------------------------------------------


def _summary(text: str) -> str:
    """A mail body as a chat message: without its salutation line ("计算机学院："), shortened, each line
    kept a line (markdown joins single line breaks unless a line ends in two spaces)."""
    paragraphs = [p.strip() for p in text.strip().split("\n\n") if p.strip()]
    if len(paragraphs) > 1 and "\n" not in paragraphs[0] and paragraphs[0].endswith(("：", ":")):
        paragraphs = paragraphs[1:]
    body = "\n\n".join(paragraphs)
    if len(body) > SUMMARY_CHARS:
        body = body[: SUMMARY_CHARS - 1].rstrip() + "…"
    return "\n\n".join(p.replace("\n", "  \n") for p in body.split("\n\n"))


def compose(subject_zh: str, subject_en: str, body_zh: str, body_en: str, link: str) -> tuple[str, str]:
    """(title, markdown content) of a robot message: Chinese first, then English, then the link."""
    url = f"{get_settings().base_url.rstrip('/')}{link}" if link else get_settings().base_url
    title = f"【网络与信息中心】{subject_zh}"[:500]
    tail = f"\n\n[查看详情 / Details]({url})"
    content = f"#### {title}\n\n{_summary(body_zh)}\n\n---\n\n**{subject_en.strip()}**\n\n{_summary(body_en)}"
    budget = MAX_CONTENT_BYTES - len(tail.encode())
    encoded = content.encode()
    if len(encoded) > budget:
        content = encoded[:budget].decode(errors="ignore") + "…"
    return title, content + tail


def queue(
    session: Session,
    mail: Notification,
    *,
    unit_id: int | None,
    subject_zh: str,
    subject_en: str,
    body_zh: str,
    body_en: str,
    link: str,
) -> RobotMessage | None:
    """Queue the robot copy of ``mail`` in the caller's transaction, if the robot of its scope is on
    and takes this kind of notice. ``unit_id`` None is the center's robot."""
    with session.no_autoflush:
        robot = repository.robot_by_scope(session, scope_of(unit_id))
    if robot is None or not robot.enabled or (robot.kinds and mail.kind not in robot.kinds):
        return None
    assert robot.id is not None
    session.flush()  # the mail's id, for the center's view of what repeated which mail
    title, content = compose(subject_zh, subject_en, body_zh, body_en, link)
    now = db.utcnow()
    row = RobotMessage(
        robot_id=robot.id,
        notification_id=mail.id,
        unit_id=mail.unit_id,
        kind=mail.kind,
        related_type=mail.related_type,
        related_id=mail.related_id,
        title=title,
        content=content,
        state=NotificationState.PENDING.value,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    return row


# ---- sending ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """What one attempt needs, read from the robot at the time of the attempt."""

    message_id: int
    robot_id: int
    kind: str
    webhook: str
    secret: str
    enabled: bool
    title: str
    content: str


class RobotRefused(Exception):
    """The robot answered, and not with errcode 0."""

    def __init__(self, errcode: int | None, errmsg: str, *, rate_limited: bool = False) -> None:
        super().__init__(f"errcode {errcode}: {errmsg}" if errcode is not None else errmsg)
        self.errcode = errcode
        self.errmsg = errmsg
        self.rate_limited = rate_limited


def payload(kind: str, title: str, content: str) -> dict[str, Any]:
    """The JSON body each service expects for a markdown message."""
    if kind == RobotKind.WECOM.value:
        return {"msgtype": "markdown", "markdown": {"content": content}}
    return {"msgtype": "markdown", "markdown": {"title": title, "text": content}}


def post(target: _Target, settings: Settings) -> None:
    """One HTTP attempt; returns when the robot answered errcode 0, else raises (httpx errors or
    :class:`RobotRefused`)."""
    url = signed_url(target.webhook, target.secret, int(time.time() * 1000))
    body = payload(target.kind, target.title, target.content)
    # Redirects are not followed: the allowed host list names where a message may go.
    with httpx.Client(timeout=settings.robot_timeout, follow_redirects=False, trust_env=False) as client:
        response = client.post(url, json=body)
    if response.status_code == 429:
        raise RobotRefused(None, "HTTP 429 Too Many Requests", rate_limited=True)
    try:
        answer = response.json()
    except ValueError:
        raise RobotRefused(None, f"HTTP {response.status_code}: not a JSON answer") from None
    errcode = answer.get("errcode") if isinstance(answer, dict) else None
    errmsg = str(answer.get("errmsg", "")) if isinstance(answer, dict) else ""
    if response.status_code == 200 and errcode == 0:
        return
    code = errcode if isinstance(errcode, int) else None
    raise RobotRefused(
        code,
        errmsg or f"HTTP {response.status_code}",
        rate_limited=code in RATE_LIMITED,
    )


def _claim(message_id: int, now: datetime, lease: timedelta) -> _Target | None:
    with db.transaction() as s:
        m = repository.claim_robot_message(s, message_id, now, now + lease)
        if m is None or m.id is None:
            return None
        robot = repository.robot(s, m.robot_id)
        if robot is None:
            return _Target(m.id, m.robot_id, "", "", "", False, m.title, m.content)
        return _Target(
            message_id=m.id,
            robot_id=m.robot_id,
            kind=robot.kind,
            webhook=crypto.decrypt(robot.webhook_encrypted),
            secret=crypto.decrypt(robot.secret_encrypted) if robot.secret_encrypted else "",
            enabled=robot.enabled,
            title=m.title,
            content=m.content,
        )


def _describe(exc: Exception) -> str:
    if isinstance(exc, RobotRefused):
        return f"refused by the robot: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _record(message_id: int, now: datetime, *, error: Exception | None, settings: Settings) -> str:
    with db.transaction() as s:
        m = repository.lock_robot_message(s, message_id)
        if m is None or m.state != NotificationState.SENDING.value:
            return "lost"  # taken back (the center's resend) meanwhile
        if isinstance(error, RobotRefused) and error.rate_limited:
            # Not the message's fault: wait, without spending one of its attempts.
            m.state = NotificationState.PENDING.value
            m.next_attempt_at = now + RATE_LIMIT_WAIT
            m.last_error = f"rate limited, retried later: {error}"[:2000]
            s.add(m)
            return "rate_limited"
        m.attempts += 1
        if error is None:
            m.state = NotificationState.SENT.value
            m.sent_at = db.utcnow()
            m.next_attempt_at = None
            m.last_error = ""
            s.add(m)
            return "sent"
        m.last_error = f"attempt {m.attempts}: {_describe(error)}"[:2000]
        if m.attempts >= settings.robot_max_attempts:
            m.state = NotificationState.FAILED.value
            m.next_attempt_at = None
            log.error("robot message %s failed for good: %s", m.id, m.last_error)
        else:
            m.state = NotificationState.PENDING.value
            m.next_attempt_at = now + backoff(m.attempts)
            log.warning(
                "robot message %s not delivered, retry at %s: %s", m.id, m.next_attempt_at, m.last_error
            )
        s.add(m)
        return "failed" if m.state == NotificationState.FAILED.value else "retry"


def _give_up(message_id: int, reason: str) -> str:
    with db.transaction() as s:
        m = repository.lock_robot_message(s, message_id)
        if m is None or m.state != NotificationState.SENDING.value:
            return "lost"
        m.state = NotificationState.FAILED.value
        m.next_attempt_at = None
        m.last_error = reason[:2000]
        s.add(m)
        return "failed"


def send_due(now: datetime | None = None, *, limit: int = BATCH) -> dict[str, int]:
    """Post every robot message whose ``next_attempt_at`` has come; counts per outcome."""
    settings = get_settings()
    counts = {"sent": 0, "retry": 0, "failed": 0, "rate_limited": 0, "deferred": 0, "lost": 0}
    now = now or db.utcnow()
    lease = timedelta(seconds=settings.robot_timeout * 2 + 60)
    with db.transaction() as s:
        ids = repository.due_robot_message_ids(s, now, limit)
    waiting: set[int] = set()  # robots that were unreachable or rate limited in this run
    for message_id in ids:
        target = _claim(message_id, now, lease)
        if target is None:
            continue  # another sender has it
        if target.robot_id in waiting:
            _release(message_id, now)
            counts["deferred"] += 1
            continue
        if not target.enabled or not target.webhook:
            counts[
                _give_up(message_id, "the robot was turned off or removed before the message was sent")
            ] += 1
            continue
        try:
            post(target, settings)
        except Exception as exc:
            outcome = _record(message_id, now, error=exc, settings=settings)
            counts[outcome] += 1
            if outcome == "rate_limited" or isinstance(exc, httpx.TransportError):
                waiting.add(target.robot_id)
            continue
        counts[_record(message_id, now, error=None, settings=settings)] += 1
    return counts


def _release(message_id: int, now: datetime) -> None:
    """Give a claimed message back untouched (its robot is waiting): due again at the next run."""
    with db.transaction() as s:
        m = repository.lock_robot_message(s, message_id)
        if m is not None and m.state == NotificationState.SENDING.value:
            m.state = NotificationState.PENDING.value
            m.next_attempt_at = now
            s.add(m)


# ---- the center's view -----------------------------------------------------------------------------


def list_messages(
    session: Session,
    *,
    state: NotificationState | None = None,
    unit_id: int | None = None,
    kind: str | None = None,
    notification_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[RobotMessage], int]:
    """The robot messages the center reads, newest first, and how many match."""
    return repository.robot_messages(
        session,
        state=state,
        unit_id=unit_id,
        kind=kind,
        notification_id=notification_id,
        limit=limit,
        offset=offset,
    )


def resend(session: Session, message_id: int) -> RobotMessage:
    """The center posts a failed (or waiting) robot message again now, with a fresh count of attempts."""
    m = repository.robot_message(session, message_id)
    if m is None:
        raise errors.NotFound("robot_message", message_id)
    if m.state in (NotificationState.SENT.value, NotificationState.SENDING.value):
        raise errors.StateConflict(
            "robot_message",
            m.state,
            "resend",
            message=f"robot message {message_id} is {m.state}: only a failed or pending one is sent again",
        )
    m.state = NotificationState.PENDING.value
    m.attempts = 0
    m.next_attempt_at = db.utcnow()
    session.add(m)
    session.info[KICK] = True
    return m


def robots(session: Session) -> list[GroupRobot]:
    """Every configured robot, the center's first."""
    return repository.robots(session)


def robot_of(session: Session, unit_id: int | None) -> GroupRobot | None:
    """The robot of a unit (None: the center's), if one is configured."""
    return repository.robot_by_scope(session, scope_of(unit_id))
