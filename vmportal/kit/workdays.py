"""Working days (工作日) by the statutory calendar: the State Council's public holidays and their
make-up working days (调休), from ``chinesecalendar`` (issue 14 point 7).

Every deadline stated in 工作日 (an authority's "5个工作日内") is counted here and nowhere else.

``chinesecalendar`` knows the years it ships (each release adds the next year once the State Council
publishes it, usually in November or December). For a year it does not know, a day counts as a
working day when it is Monday to Friday, and a warning is logged once per year per process, so that
the center updates the package; a deadline is never refused or crashed for lack of the calendar.
The fallback errs at most by the holidays of that year: a deadline may then come earlier than the
statutory one, which the center sees on the notice and may correct by entering the date.
"""

from __future__ import annotations

import logging
import threading
from datetime import date, datetime, timedelta

import chinese_calendar

from vmportal.kit.clock import BEIJING

log = logging.getLogger(__name__)

_warned: set[int] = set()
_lock = threading.Lock()


def known(year: int) -> bool:
    """Whether the statutory calendar of ``year`` is known (shipped by ``chinesecalendar``)."""
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def _fallback(day: date) -> bool:
    with _lock:
        first = day.year not in _warned
        _warned.add(day.year)
    if first:
        log.warning(
            "the statutory calendar of %s is not known to chinesecalendar %s: working days of that year "
            "are counted Monday to Friday (public holidays and make-up days ignored); update the package",
            day.year,
            getattr(chinese_calendar, "__version__", "?"),
        )
    return day.weekday() < 5


def is_working_day(day: date) -> bool:
    """Whether ``day`` is a working day: the statutory calendar where known (a make-up Saturday is one,
    a public holiday on a weekday is not), Monday to Friday otherwise."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return _fallback(day)


def add_working_days(start: datetime, days: int) -> datetime:
    """``days`` working days after ``start``, at the same time of day, in Beijing time.

    Counted from the day after ``start`` (a notice entered on a Friday afternoon with "1个工作日内"
    is due on Monday at the same hour, or on the make-up Saturday when there is one)."""
    local = start.astimezone(BEIJING)
    while days > 0:
        local += timedelta(days=1)
        if is_working_day(local.date()):
            days -= 1
    return local
