"""Rule ``provisioning_deadline``: the center opens a VM within a week (agreement §3).

"甲方在乙方提交虚拟机服务申请表和协议书后一周内为乙方开通虚拟机": the week starts when *both* papers
are in, so the clock starts at the later of the request's submission and the agreement's filing, and
runs 7 calendar days (weekends and holidays included: the agreement says 一周, not 七个工作日).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

PROVISIONING_DAYS = 7

#: A request still open with this little time left is shown and reported as at risk.
AT_RISK = timedelta(hours=48)


class DeadlineStatus(StrEnum):
    ON_TIME = "on_time"  # open, more than AT_RISK left
    AT_RISK = "at_risk"  # open, due within AT_RISK (or due this very moment)
    OVERDUE = "overdue"  # open, past due
    MET = "met"  # delivered by the due time
    MISSED = "missed"  # delivered, but late


def _aware(name: str, moment: datetime) -> None:
    # A naive datetime compared with an aware one raises deep inside the app, and two naive ones
    # may silently mix UTC with Beijing time (eight hours); refuse them at the boundary.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment.isoformat()}")


def due_at(submitted_at: datetime, agreement_filed_at: datetime) -> datetime:
    """The later of submission and the agreement's filing, plus 7 calendar days, in that moment's zone."""
    _aware("submitted_at", submitted_at)
    _aware("agreement_filed_at", agreement_filed_at)
    return max(submitted_at, agreement_filed_at) + timedelta(days=PROVISIONING_DAYS)


def deadline_status(
    due_at: datetime,
    now: datetime,
    delivered_at: datetime | None = None,
    *,
    at_risk: timedelta = AT_RISK,
) -> DeadlineStatus:
    """Where a request stands against its due time; ``now`` is ignored once it is delivered."""
    _aware("due_at", due_at)
    if delivered_at is not None:
        _aware("delivered_at", delivered_at)
        return DeadlineStatus.MET if delivered_at <= due_at else DeadlineStatus.MISSED
    _aware("now", now)
    if now > due_at:
        return DeadlineStatus.OVERDUE
    if due_at - now <= at_risk:
        return DeadlineStatus.AT_RISK
    return DeadlineStatus.ON_TIME
