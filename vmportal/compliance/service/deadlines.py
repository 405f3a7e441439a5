"""Deadlines: by a finding's severity, and as an authority's notice words them.

A finding's deadline counts from when it is opened or reopened (:data:`DEADLINE_BY_SEVERITY`), unless
the finding carries its own. A notice states its deadline in words, read by :func:`parse_deadline`:
an ISO date-time (Beijing time when it has no zone), a date (the end of that day), "3月20日前" /
"2026年3月20日18时前" (the end of the day unless an hour is given; a month-day already past this year
is next year's), or a duration counted from the moment the notice is entered: "24小时内", "3天内",
"5个工作日内" (working days of the statutory calendar, holidays and make-up days included:
:mod:`vmportal.kit.workdays`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta

from policies.compromise import Severity
from vmportal.kit import errors, workdays
from vmportal.kit.clock import BEIJING

#: How long a unit has to fix a finding, by severity (counted from its opening or reopening).
DEADLINE_BY_SEVERITY: Mapping[Severity, timedelta] = {
    Severity.CRITICAL: timedelta(hours=24),
    Severity.HIGH: timedelta(hours=72),
    Severity.MEDIUM: timedelta(days=7),
    Severity.LOW: timedelta(days=30),
}


def deadline_for(severity: Severity | str, start: datetime) -> datetime:
    """The deadline of a finding of ``severity`` opened (or reopened) at ``start``."""
    return start + DEADLINE_BY_SEVERITY[Severity(severity)]


_RELATIVE = re.compile(r"^(\d{1,4})\s*个?\s*(小时|天|日|自然日|工作日|h|d)\s*(?:以?内)?$", re.IGNORECASE)
_MONTH_DAY = re.compile(
    r"^(?:(\d{4})\s*年\s*)?(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]"
    r"\s*(?:(\d{1,2})\s*[时点:：]\s*(?:(\d{1,2})\s*分?)?)?\s*(?:之?前|以前|为止)?$"
)


def _bad_deadline(text: str, why: str) -> errors.InvalidField:
    return errors.InvalidField(
        "deadline",
        "format",
        f"{why}: give an ISO date-time, a date, '3月20日前' or a duration such as '24小时内' "
        f"(got {text[:40]!r})",
        message_zh=f"{why}：请填写日期时间（如 2026-03-20T18:00）、“3月20日前”或“24小时内”",
    )


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=BEIJING)


def parse_deadline(text: str | None, now: datetime) -> datetime | None:
    """The deadline a notice states, as an aware datetime; None when it states none (422 when unreadable)."""
    if text is None or not text.strip():
        return None
    raw = text.strip()
    if m := _RELATIVE.match(raw):
        amount, unit = int(m.group(1)), m.group(2).lower()
        if amount <= 0:
            raise _bad_deadline(raw, "the duration must be positive")
        if unit in ("小时", "h"):
            return now + timedelta(hours=amount)
        if unit == "工作日":
            return workdays.add_working_days(now, amount)
        return now + timedelta(days=amount)
    if m := _MONTH_DAY.match(raw):
        year = int(m.group(1)) if m.group(1) else now.astimezone(BEIJING).year
        try:
            day = date(year, int(m.group(2)), int(m.group(3)))
        except ValueError:
            raise _bad_deadline(raw, "no such date") from None
        if not m.group(1) and day < now.astimezone(BEIJING).date():
            try:
                day = date(year + 1, day.month, day.day)  # "1月5日前" entered in late December
            except ValueError:
                raise _bad_deadline(raw, "no such date") from None
        if m.group(4) is None:
            return _end_of_day(day)
        hour, minute = int(m.group(4)), int(m.group(5) or 0)
        if hour > 24 or minute > 59 or (hour == 24 and minute):
            raise _bad_deadline(raw, "no such time")
        if hour == 24:
            return _end_of_day(day)
        return datetime.combine(day, time(hour, minute), tzinfo=BEIJING)
    try:
        if len(raw) == 10:
            return _end_of_day(date.fromisoformat(raw))
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad_deadline(raw, "not a date or a duration") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=BEIJING)
