"""The center hears of alerts that match no VM (issue 12.4: "unmatched alerts reach the center").

An alert no VM of the inventory matched waits in the alert list for a human to assign it; without a
mail nobody looks. The center setting ``unmatched_alert_mail`` says how the center is told:

* ``digest`` (the initial value): one mail per hour listing the alerts found unmatched in that
  hour. A scanner's burst of a thousand lines is one mail, not a thousand.
* ``each``: one mail per alert, queued in the processing task's transaction.
* ``off``: nothing (a center that reads the list every day).

The digest covers whole hours (UTC, shown in Beijing time) and each hour's mail has a
de-duplication key, so a run that comes twice, late, or after the scheduler was down sends each
hour once; hours up to a day back are caught up. Runs from beat (``vmportal.alerts.unmatched_digest``)
and from the embedded portal's periodic thread.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from vmportal.alerts import repository
from vmportal.center import service as center
from vmportal.incidents.models import SecurityAlert
from vmportal.kit import db
from vmportal.mail import repository as mail_repository
from vmportal.mail import service as mail

#: The beat task (vmportal.alerts.tasks).
DIGEST_TASK = "vmportal.alerts.unmatched_digest"
#: How far back a digest run catches up hours it has not reported (the scheduler was down).
CATCH_UP = timedelta(hours=24)
#: Alerts listed in one digest; the rest are counted.
DIGEST_LINES = 50


def _addresses(alert: SecurityAlert) -> str:
    parts = [f"{a.get('ip')} ({a.get('role')})" for a in alert.addresses or [] if a.get("ip")]
    if alert.target_host:
        parts.append(alert.target_host)
    return ", ".join(parts) or "—"


def _line(alert: SecurityAlert, source: str) -> str:
    title = (alert.title or alert.category)[:160]
    return f"#{alert.id} {mail.beijing(alert.received_at)} [{source}] {title} — {_addresses(alert)}"


def notify_each(session: Session, alert: SecurityAlert, source: str) -> None:
    """The ``each`` mode: one mail to the center about ``alert``, in the caller's transaction."""
    assert alert.id is not None
    where = _addresses(alert)
    mail.notify(
        session,
        mail.MailEvent.ALERT_UNMATCHED,
        None,
        subject_zh=f"告警 #{alert.id} 未匹配到任何虚拟机（{source}）",
        subject_en=f"Alert #{alert.id} matched no VM ({source})",
        body_zh=(
            f"来自告警源“{source}”的告警未匹配到平台登记的任何虚拟机，需要人工研判并指派：\n\n"
            f"{_line(alert, source)}\n\n地址：{where}"
        ),
        body_en=(
            f"An alert from source '{source}' matched no VM the portal knows; a human should review "
            f"it and assign it to a VM:\n\n{_line(alert, source)}\n\nAddresses: {where}"
        ),
        related_type="security_alert",
        related_id=alert.id,
        dedup_key=f"alert-unmatched-{alert.id}",
        center_only=True,
    )


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _digest_key(start: datetime) -> str:
    return f"alerts-unmatched-digest-{start:%Y%m%d%H}"


def _digest(session: Session, start: datetime, end: datetime) -> bool:
    """The mail for the hour ``[start, end)``; False when that hour had no unmatched alert or its
    mail was queued already."""
    key = _digest_key(start)
    if mail_repository.has_dedup_key(session, key):
        return False
    rows, total = repository.unmatched_between(session, start, end, limit=DIGEST_LINES)
    if not total:
        return False
    lines = "\n".join(_line(alert, source) for alert, source in rows)
    more_zh = f"\n……另有 {total - len(rows)} 条未列出。" if total > len(rows) else ""
    more_en = f"\n... and {total - len(rows)} more not listed." if total > len(rows) else ""
    span = f"{mail.beijing(start)} – {mail.beijing(end)}"
    notification = mail.notify(
        session,
        mail.MailEvent.ALERT_UNMATCHED,
        None,
        subject_zh=f"未匹配告警汇总：{span}（北京时间）共 {total} 条",
        subject_en=f"Unmatched alerts digest: {total} between {span} (Beijing time)",
        body_zh=(
            f"以下告警未匹配到平台登记的任何虚拟机（{span}，北京时间），需要人工研判并指派：\n\n"
            f"{lines}{more_zh}"
        ),
        body_en=(
            f"These alerts matched no VM the portal knows ({span}, Beijing time); a human should "
            f"review them and assign each to a VM:\n\n{lines}{more_en}"
        ),
        related_type="alert_digest",
        related_id=f"{start:%Y%m%d%H}",
        dedup_key=key,
        center_only=True,
    )
    return notification is not None


def send_digest(now: datetime | None = None) -> int:
    """Queue the digest of every whole hour of the last day not reported yet; how many were queued.
    Does nothing unless the center setting is ``digest``."""
    end = _hour(now or db.utcnow())
    with db.transaction() as session:
        if center.unmatched_alert_mail(session) != "digest":
            return 0
        queued = 0
        start = end - CATCH_UP
        while start < end:
            queued += _digest(session, start, start + timedelta(hours=1))
            start += timedelta(hours=1)
        return queued
