"""E-mail notifications (issue 4 point 10): the unit's security administrator and lead (their contact
registry e-mails) and the center's mailbox hear about containment, rectification decisions, dismissals,
notices, findings and their deadlines, and forbidden services.

The ``notification`` table is the outbox of mails. :func:`notify` writes a row in the caller's
transaction, so a mail exists exactly when the event it reports was committed; nothing is sent before
the commit. After the commit the rows are sent by :func:`send_due` (the task
``vmportal.security.send_notifications``): inline in tests, on a mail thread of its own in the embedded
portal, by a Celery worker in production. Beat runs the same task every minute for the rows whose
``next_attempt_at`` has come: the retries, and anything a lost dispatch left behind.

Why containment is never delayed by mail: the containment task's transaction only *adds* a row; the
SMTP conversation happens after that transaction committed, in another task, outside any database
transaction. A dead or hanging SMTP server costs at most ``smtp_timeout`` of the mail task, never a
moment of the containment, and the incident mails (``incidents.mails.on_event``) swallow their errors
so a mail problem cannot roll back the event it reports.

Delivery: one SMTP connection per mail (``smtplib``, optional STARTTLS and login, ``smtp_timeout`` on
every step). A claimed row is ``sending`` with ``next_attempt_at`` as its lease (a worker that dies
mid-send leaves it due again once the lease ends), so two senders never send one row at once; a crash
between the server's acceptance and the row's update can send a mail twice (at least once, with a
stable Message-ID so mail clients fold the copies). A transient failure (connection refused, timeout,
4xx) schedules a retry with exponential backoff (1 min, 2, 4 … at most 6 h apart); a permanent one (5xx
other than authentication) or ``smtp_max_attempts`` failures make it ``failed``; the center sees both in
``GET /notifications`` and can send a failed one again. When the server cannot be reached at all the
rest of the batch is left for the next run without counting an attempt against it.
"""

from __future__ import annotations

import enum
import logging
import smtplib
import ssl
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlmodel import Session

from vmportal.kit import db, errors
from vmportal.kit.clock import BEIJING
from vmportal.kit.settings import Settings, get_settings
from vmportal.mail import repository, robots
from vmportal.mail.models import Notification, NotificationState
from vmportal.mail.retry import BACKOFF_FIRST as BACKOFF_FIRST  # re-exported: the mails' backoff
from vmportal.mail.retry import BACKOFF_MAX as BACKOFF_MAX
from vmportal.mail.retry import KICK as _KICK
from vmportal.mail.retry import backoff as backoff

log = logging.getLogger(__name__)

SEND_TASK = "vmportal.security.send_notifications"
SUBJECT_PREFIX = "【网络与信息中心】"
BATCH = 100


class MailEvent(enum.StrEnum):
    CONTAINED = "containment"
    CONTAINMENT_FAILED = "containment_failed"
    RECTIFICATION_ACCEPTED = "rectification_accepted"
    RECTIFICATION_REJECTED = "rectification_rejected"
    DISMISSED = "dismissed"
    NOTICE = "notice"
    FINDING_OPENED = "finding_opened"
    FINDING_REOPENED = "finding_reopened"
    FINDING_DUE_SOON = "finding_due_soon"
    FINDING_OVERDUE = "finding_overdue"
    VIOLATION = "violation"
    VIOLATION_SHUTDOWN = "violation_shutdown"
    # Provisioning deadline reminders (vmportal.request.reminders), sent through this same outbox.
    REQUEST_DUE_SOON = "request_due_soon"
    REQUEST_OVERDUE = "request_overdue"
    # The request lifecycle (vmportal.request.mails) and a failed power operation (vmportal.vm.mails).
    REQUEST_SUBMITTED = "request_submitted"
    REQUEST_ENDORSED = "request_endorsed"
    REQUEST_APPROVED = "request_approved"
    REQUEST_REJECTED = "request_rejected"
    REQUEST_DELIVERED = "request_delivered"
    REQUEST_FAILED = "request_failed"
    POWER_FAILED = "power_failed"
    # Alerts that matched no VM (vmportal.alerts.unmatched): one each, or the hourly digest.
    ALERT_UNMATCHED = "alert_unmatched"
    # The annual clean-up (vmportal.cleanup): opened, reminders, deadline (unit, center), power-off/retire.
    CLEANUP_OPENED = "cleanup_opened"
    CLEANUP_REMINDER = "cleanup_reminder"
    CLEANUP_DEADLINE = "cleanup_deadline"
    CLEANUP_UNCONFIRMED = "cleanup_unconfirmed"
    CLEANUP_ACTION = "cleanup_action"
    # Planned outages (vmportal.maintenance, agreement §9): announced, changed, cancelled, reminded.
    MAINTENANCE_ANNOUNCED = "maintenance_announced"
    MAINTENANCE_CHANGED = "maintenance_changed"
    MAINTENANCE_CANCELLED = "maintenance_cancelled"
    MAINTENANCE_REMINDER = "maintenance_reminder"


def beijing(moment: datetime | None) -> str:
    """A moment as people in the center read it: Beijing time, to the minute."""
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M") if moment is not None else "—"


# ---- writing ----------------------------------------------------------------------------------------


#: (session, unit_id, center_only, unit_addresses) -> (to, cc). Who a unit's mail goes to is the unit
#: domain's knowledge (its contact registry): it registers its look-up here at import
#: (:mod:`vmportal.unit.recipients`), so mail stays below every domain.
Recipients = Callable[[Session, int | None, bool, Sequence[str] | None], tuple[list[str], list[str]]]
_recipients: list[Recipients] = []
#: Called with each mail the server accepted, in the transaction that marks it sent (a domain that
#: waits for its mail to be delivered registers here at import, e.g. compliance's findings).
Delivered = Callable[[Session, Notification], None]
_delivered: list[Delivered] = []


def use_recipients(look_up: Recipients) -> None:
    """Register the unit domain's recipient look-up (the last registered wins)."""
    _recipients[:] = [look_up]


def on_delivered(hook: Delivered) -> Delivered:
    """Register ``hook`` to run when a mail was delivered (once per hook; usable as a decorator)."""
    if hook not in _delivered:
        _delivered.append(hook)
    return hook


def recipients(
    session: Session,
    unit_id: int | None,
    *,
    center_only: bool = False,
    unit_addresses: Sequence[str] | None = None,
) -> tuple[list[str], list[str]]:
    """(to, cc) of a mail about ``unit_id``, by the look-up the unit domain registered."""
    if not _recipients:
        raise RuntimeError("no recipient look-up registered: import vmportal.unit.recipients")
    return _recipients[0](session, unit_id, center_only, unit_addresses)


def _pending_duplicate(session: Session, dedup_key: str) -> bool:
    if any(isinstance(o, Notification) and o.dedup_key == dedup_key for o in session.new):
        return True
    with session.no_autoflush:
        return repository.has_dedup_key(session, dedup_key)


def compose_body(body_zh: str, body_en: str, link: str = "") -> str:
    url = f"{get_settings().base_url.rstrip('/')}{link}" if link else get_settings().base_url
    return (
        f"{body_zh.strip()}\n\n"
        f"（此邮件由网络与信息中心虚拟机服务平台自动发送，请勿直接回复。详情：{url}）\n\n"
        f"{'-' * 60}\n\n"
        f"{body_en.strip()}\n\n"
        f"(Sent automatically by the VM portal of the Network & Information Center; please do not reply. "
        f"Details: {url})\n"
    )


def notify(
    session: Session,
    event: MailEvent | str,
    unit_id: int | None,
    *,
    subject_zh: str,
    subject_en: str,
    body_zh: str,
    body_en: str,
    related_type: str = "",
    related_id: object = "",
    link: str = "",
    dedup_key: str | None = None,
    center_only: bool = False,
    unit_addresses: Sequence[str] | None = None,
) -> Notification | None:
    """Queue one e-mail in the caller's transaction (sent after the commit, never before).

    Subject and body are bilingual, Chinese first. ``dedup_key`` makes the mail once-only (a
    deadline reminder, an event reported from two places): None is returned when it was queued
    already. A mail with no recipient at all (no unit address, no center mailbox) is kept as
    ``failed`` so the center can see what nobody was told. ``unit_addresses``: see :func:`recipients`.
    """
    event = MailEvent(event)
    if dedup_key is not None and _pending_duplicate(session, dedup_key):
        return None
    to, cc = recipients(session, unit_id, center_only=center_only, unit_addresses=unit_addresses)
    now = db.utcnow()
    row = Notification(
        to=to,
        cc=cc,
        subject=f"{SUBJECT_PREFIX}{subject_zh} / {subject_en}"[:500],
        body=compose_body(body_zh, body_en, link),
        kind=event.value,
        related_type=related_type[:40],
        related_id=str(related_id)[:64],
        unit_id=unit_id,
        dedup_key=dedup_key[:200] if dedup_key else None,
        state=NotificationState.PENDING.value,
        next_attempt_at=now,
        created_at=now,
    )
    if not to:
        row.state = NotificationState.FAILED.value
        row.next_attempt_at = None
        row.last_error = "no recipient: the unit has no contact e-mail and VMPORTAL_CENTER_MAILBOX is not set"
        log.warning("notification %s for unit %s has no recipient", event.value, unit_id)
    session.add(row)
    # The same notice in the chat group of the unit (or the center), where the center set a robot up.
    robots.queue(
        session,
        row,
        unit_id=None if center_only else unit_id,
        subject_zh=subject_zh,
        subject_en=subject_en,
        body_zh=body_zh,
        body_en=body_en,
        link=link,
    )
    session.info[_KICK] = True
    return row


# ---- dispatch after commit ---------------------------------------------------------------------------


@sa_event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint: the rows are not committed until the enclosing transaction is
    if session.info.pop(_KICK, False):
        kick()


@sa_event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    if session.in_transaction():
        return  # only a savepoint rolled back; the outer commit may still bring mail
    session.info.pop(_KICK, None)


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_futures: set[Future[Any]] = set()


def _mail_executor() -> ThreadPoolExecutor:
    # A thread of its own: a hanging SMTP server must not occupy the pool containment tasks run in.
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(1, thread_name_prefix="vmportal-mail")
        return _executor


def kick() -> None:
    """Have the due mails (and group-robot messages) sent now, the way tasks run in this process.
    Never raises: a mail that cannot be dispatched now is sent by beat's next run."""
    mode = get_settings().effective_task_mode
    try:
        if mode == "celery":
            from vmportal.jobs.broker import celery_app

            celery_app.send_task(SEND_TASK)
        elif mode == "inline":
            send_all()
        else:
            future = _mail_executor().submit(send_all)
            with _executor_lock:
                _futures.add(future)
            future.add_done_callback(_forget)
    except Exception:
        log.exception("sending notifications failed; beat sends them later")


def _forget(future: Future[Any]) -> None:
    with _executor_lock:
        _futures.discard(future)
    if future.exception() is not None:
        log.error("sending notifications failed: %s", future.exception())


def wait_idle(timeout: float = 30.0) -> None:
    """Block until the mail thread has sent what it was given (tests, shutdown)."""
    with _executor_lock:
        pending = list(_futures)
    for f in pending:
        f.exception(timeout=timeout)


# ---- sending ----------------------------------------------------------------------------------------


class _Unreachable(Exception):
    """The SMTP server could not be reached: leave the rest of the batch for later."""


def _due_ids(now: datetime, limit: int) -> list[int]:
    with db.transaction() as s:
        return repository.due_ids(s, now, limit)


def _claim(notification_id: int, now: datetime, lease: timedelta) -> Notification | None:
    """Take the row for one delivery attempt (compare-and-set), in a transaction of its own, so no
    database transaction stays open while the SMTP server is talked to."""
    with db.transaction() as s:
        return repository.claim(s, notification_id, now, now + lease)


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[1].strip(">").strip() if "@" in address else "vmportal.localdomain"


def build_message(n: Notification, settings: Settings) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = n.subject
    msg["From"] = settings.mail_from
    msg["To"] = ", ".join(n.to)
    if n.cc:
        msg["Cc"] = ", ".join(n.cc)
    msg["Date"] = format_datetime(n.created_at)
    # Stable across attempts, so a mail sent twice (a crash after the server accepted it) folds into one.
    msg["Message-ID"] = f"<notification-{n.id}.{int(n.created_at.timestamp())}@{_domain(settings.mail_from)}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Vmportal-Notification"] = f"{n.kind} {n.related_type}:{n.related_id}".strip()
    msg.set_content(n.body, charset="utf-8")
    return msg


def deliver(n: Notification, settings: Settings) -> dict[str, Any]:
    """Send one mail; the recipients the server refused (the others got it). Raises smtplib/OS errors."""
    msg = build_message(n, settings)
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout) as smtp:
        smtp.ehlo()
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if settings.smtp_username:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_username, password)
        refused = smtp.send_message(msg, from_addr=settings.mail_from, to_addrs=[*n.to, *n.cc])
    return dict(refused)


_AUTH_CODES = frozenset({530, 534, 535, 538})


def _classify(exc: Exception) -> tuple[bool, bool]:
    """(permanent, unreachable) for a delivery error."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(code >= 500 for code in codes), False
    if isinstance(exc, smtplib.SMTPConnectError):
        return False, True
    if isinstance(exc, smtplib.SMTPResponseException):
        # A configuration problem (authentication) may be fixed by the center: keep retrying it.
        return exc.smtp_code >= 500 and exc.smtp_code not in _AUTH_CODES, False
    if isinstance(exc, smtplib.SMTPServerDisconnected | smtplib.SMTPNotSupportedError):
        return False, isinstance(exc, smtplib.SMTPServerDisconnected)
    if isinstance(exc, smtplib.SMTPException):
        return False, False
    return False, isinstance(exc, OSError)  # refused, timed out, no route, name not resolved


def _describe(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = (
            exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        )
        return f"{type(exc).__name__}: {exc.smtp_code} {text}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _record(
    notification_id: int,
    now: datetime,
    *,
    error: Exception | None = None,
    refused: dict[str, Any] | None = None,
    settings: Settings,
) -> str:
    with db.transaction() as s:
        n = repository.lock(s, notification_id)
        if n is None or n.state != NotificationState.SENDING.value:
            return "lost"  # taken back (the center's retry) meanwhile
        n.attempts += 1
        if error is None:
            n.state = NotificationState.SENT.value
            n.sent_at = db.utcnow()
            n.next_attempt_at = None
            n.last_error = ("refused by the server for: " + ", ".join(sorted(refused)) if refused else "")[
                :2000
            ]
            s.add(n)
            for hook in _delivered:
                hook(s, n)
            return "sent"
        permanent, _ = _classify(error)
        n.last_error = f"attempt {n.attempts}: {_describe(error)}"[:2000]
        if permanent or n.attempts >= settings.smtp_max_attempts:
            n.state = NotificationState.FAILED.value
            n.next_attempt_at = None
            log.error("notification %s failed for good: %s", n.id, n.last_error)
            s.add(n)
            return "failed"
        n.state = NotificationState.PENDING.value
        n.next_attempt_at = now + backoff(n.attempts)
        s.add(n)
        log.warning("notification %s not delivered, retry at %s: %s", n.id, n.next_attempt_at, n.last_error)
        return "retry"


def send_due(now: datetime | None = None, *, limit: int = BATCH) -> dict[str, int]:
    """Send every mail whose ``next_attempt_at`` has come (new ones, retries, expired leases).

    Each attempt is its own short transaction before and after the SMTP conversation. Returns counts
    per outcome, for logs and tests.
    """
    settings = get_settings()
    counts = {"sent": 0, "retry": 0, "failed": 0, "deferred": 0, "lost": 0}
    if not settings.smtp_host:
        log.info("VMPORTAL_SMTP_HOST is not set: notifications wait unsent")
        return counts
    now = now or db.utcnow()
    lease = timedelta(seconds=settings.smtp_timeout * 4 + 60)
    ids = _due_ids(now, limit)
    for index, notification_id in enumerate(ids):
        n = _claim(notification_id, now, lease)
        if n is None:
            continue  # another sender has it
        try:
            refused = deliver(n, settings)
        except Exception as exc:
            outcome = _record(notification_id, now, error=exc, settings=settings)
            counts[outcome] += 1
            if _classify(exc)[1]:
                # The server is down: the others wait for the next run, without an attempt counted.
                counts["deferred"] += len(ids) - index - 1
                break
            continue
        counts[_record(notification_id, now, refused=refused, settings=settings)] += 1
    return counts


def send_all(now: datetime | None = None) -> dict[str, int]:
    """The due mails, then the due group-robot messages (``robot_``-prefixed counts): what the send
    task, the embedded tick and a commit's kick run. A failure of one never stops the other."""
    counts: dict[str, int] = {}
    try:
        counts.update(send_due(now))
    finally:
        counts.update({f"robot_{k}": v for k, v in robots.send_due(now).items()})
    return counts


# ---- the center's view -----------------------------------------------------------------------------


def list_notifications(
    session: Session,
    *,
    state: NotificationState | None = None,
    unit_id: int | None = None,
    kind: str | None = None,
    related_type: str | None = None,
    related_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Notification], int]:
    """The mails the center reads, newest first, and how many match."""
    return repository.notifications(
        session,
        state=state,
        unit_id=unit_id,
        kind=kind,
        related_type=related_type,
        related_id=related_id,
        limit=limit,
        offset=offset,
    )


def resend(session: Session, notification_id: int) -> Notification:
    """The center sends a failed (or waiting) mail again now, with a fresh count of attempts."""
    n = session.get(Notification, notification_id)
    if n is None:
        raise errors.NotFound("notification", notification_id)
    if n.state in (NotificationState.SENT.value, NotificationState.SENDING.value):
        raise errors.StateConflict(
            "notification",
            n.state,
            "resend",
            message=f"notification {notification_id} is {n.state}: "
            "only a failed or pending one is sent again",
        )
    if not n.to:  # nobody had an address then; perhaps the registry or the center mailbox has one now
        n.to, n.cc = recipients(session, n.unit_id)
        if not n.to:
            raise errors.Conflict(
                "there is still no recipient: fill in the unit's contact registry or VMPORTAL_CENTER_MAILBOX",
                message_zh="仍然没有收件人：请补充单位联络通讯录的邮箱，或设置信息中心邮箱",
            )
    n.state = NotificationState.PENDING.value
    n.attempts = 0
    n.next_attempt_at = db.utcnow()
    session.add(n)
    session.info[_KICK] = True
    return n
