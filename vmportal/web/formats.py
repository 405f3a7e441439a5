"""How the pages show times, durations, counts and sizes, in the active language.

Times are stored in UTC (timezone-aware, see vmportal.kit.db.UTCDateTime) and always shown in
Beijing time (Asia/Shanghai), the zone of everyone the portal serves, as ``2026-12-01 14:05``:
unambiguous in both languages. A naive datetime is a bug upstream and is refused, never guessed.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.numbers import format_decimal
from markupsafe import Markup

from vmportal.web.i18n import current_locale, gettext


def _shanghai() -> tzinfo:
    try:
        return ZoneInfo("Asia/Shanghai")
    except ZoneInfoNotFoundError:
        # A slim image without tzdata: China has kept UTC+8 without daylight saving since 1991,
        # so the fixed offset gives the same wall time for every date the portal shows.
        return timezone(timedelta(hours=8), "CST")


SHANGHAI: Final = _shanghai()
_BINARY_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"naive datetime {value.isoformat()} given to a page: times must carry their zone")
    return value


def local_time(value: datetime, *, seconds: bool = False) -> str:
    """Beijing wall time: ``2026-12-01 14:05`` (``14:05:09`` with seconds)."""
    local = _aware(value).astimezone(SHANGHAI)
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def local_date(value: datetime) -> str:
    return _aware(value).astimezone(SHANGHAI).strftime("%Y-%m-%d")


def time_tag(value: datetime, *, seconds: bool = False) -> Markup:
    """A ``<time>`` element: Beijing time to read, the exact UTC instant for machines and as a
    tooltip naming the zone (a reader abroad is not left guessing)."""
    aware = _aware(value)
    instant = aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    shown = local_time(aware, seconds=seconds)
    title = gettext("Beijing time (UTC+8)")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(instant, title, shown)


def span(seconds: float) -> str:
    """A length of time in its two largest units, rounded down: ``3 天 4 小时`` / ``3 d 4 h``.
    Rounding down keeps 'time left' from promising more than there is."""
    total_minutes = max(0, math.floor(seconds / 60))
    days, rest = divmod(total_minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    d = gettext("%(num)d d") % {"num": days}
    h = gettext("%(num)d h") % {"num": hours}
    m = gettext("%(num)d min") % {"num": minutes}
    if days:
        return f"{d} {h}" if hours else d
    if hours:
        return f"{h} {m}" if minutes else h
    return m


def time_left(deadline: datetime, now: datetime | None = None) -> str:
    """How long until a deadline: ``还剩 3 天 4 小时`` / ``3 d 4 h left``, or how long it is past:
    ``已超期 2 小时`` / ``2 h overdue``."""
    now = _aware(now) if now is not None else datetime.now(UTC)
    remaining = (_aware(deadline) - now).total_seconds()
    if remaining >= 60:
        return gettext("%(span)s left") % {"span": span(remaining)}
    if remaining >= 0:
        return gettext("less than a minute left")
    if remaining > -60:
        return gettext("just overdue")
    return gettext("%(span)s overdue") % {"span": span(-remaining)}


def time_ago(moment: datetime, now: datetime | None = None) -> str:
    """How long ago: ``3 天 4 小时前`` / ``3 d 4 h ago``; under a minute (or a clock a little ahead)
    is 'just now'."""
    now = _aware(now) if now is not None else datetime.now(UTC)
    elapsed = (now - _aware(moment)).total_seconds()
    if elapsed < 60:
        return gettext("just now")
    return gettext("%(span)s ago") % {"span": span(elapsed)}


def number(value: float, *, decimals: int = 0) -> str:
    """A count or amount with the locale's grouping: ``12,345`` (both languages group by three)."""
    return _number(value, decimals, current_locale())


@functools.lru_cache(maxsize=4096)  # a list repeats the same few sizes and counts in every row
def _number(value: float, decimals: int, locale: str) -> str:
    pattern = "#,##0" + ("." + "#" * decimals if decimals else "")
    return format_decimal(value, format=pattern, locale=locale)


def data_size(size: float) -> str:
    """A size in bytes with binary units: ``512 B``, ``1.5 GiB``, ``12 GiB`` (one decimal below 10,
    where it matters; hypervisors size disks and memory in GiB, so the portal does too)."""
    if size < 0:
        raise ValueError(f"negative size {size}")
    value, unit = float(size), 0
    while value >= 1024 and unit < len(_BINARY_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{number(value)} B"
    return f"{number(value, decimals=1 if value < 10 else 0)} {_BINARY_UNITS[unit]}"


def gib(value: float) -> str:
    """A size already in GiB (a VM's memory or disk as requested): ``40 GiB``, ``0.5 GiB``."""
    return f"{number(value, decimals=1)} GiB"
