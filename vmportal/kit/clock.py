"""The center's clock: Beijing time (UTC+8, no daylight saving).

Stated once here because the paper a unit signs, the mail it receives and every deadline
it is held to must agree on what "today" is; between 16:00 and 24:00 UTC the UTC date is
already yesterday in Beijing. A fixed offset rather than ``ZoneInfo`` so that a machine
without tzdata still gets it right (China has not observed DST since 1991).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")


def beijing_now() -> datetime:
    return datetime.now(BEIJING)


def beijing_today() -> date:
    """Today's date as the center's staff and the units read it."""
    return datetime.now(BEIJING).date()
