from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.deadline import AT_RISK, PROVISIONING_DAYS, DeadlineStatus, deadline_status, due_at

BEIJING = timezone(timedelta(hours=8))
SUBMITTED = datetime(2024, 9, 13, 10, 0, tzinfo=BEIJING)  # a Friday


def test_the_week_runs_from_submission_when_the_agreement_was_filed_first() -> None:
    filed = datetime(2024, 9, 1, 9, 0, tzinfo=BEIJING)
    assert due_at(SUBMITTED, filed) == datetime(2024, 9, 20, 10, 0, tzinfo=BEIJING)


def test_the_week_runs_from_the_agreement_when_it_was_filed_later() -> None:
    filed = datetime(2024, 9, 18, 15, 30, tzinfo=BEIJING)
    assert due_at(SUBMITTED, filed) == datetime(2024, 9, 25, 15, 30, tzinfo=BEIJING)


def test_weekends_count_calendar_days_not_working_days() -> None:
    assert (due_at(SUBMITTED, SUBMITTED) - SUBMITTED).days == PROVISIONING_DAYS == 7


def test_moments_in_different_zones_compare_as_instants() -> None:
    # 03:00 UTC is 11:00 in Beijing: later than the 10:00 submission.
    filed = datetime(2024, 9, 13, 3, 0, tzinfo=UTC)
    due = due_at(SUBMITTED, filed)
    assert due == filed + timedelta(days=7)
    assert due.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="agreement_filed_at"):
        due_at(SUBMITTED, datetime(2024, 9, 1))
    with pytest.raises(ValueError, match="now"):
        deadline_status(SUBMITTED, datetime(2024, 9, 1))


_zones = st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-12), max_value=timedelta(hours=14)))
_moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=_zones)


@given(_moments, _moments)
def test_due_is_always_seven_days_after_the_later_moment(submitted: datetime, filed: datetime) -> None:
    due = due_at(submitted, filed)
    assert due - max(submitted, filed) == timedelta(days=7)
    assert due > submitted and due > filed
    assert due.tzinfo is not None


DUE = datetime(2024, 9, 20, 10, 0, tzinfo=BEIJING)


@pytest.mark.parametrize(
    ("now", "status"),
    [
        (DUE - timedelta(days=3), DeadlineStatus.ON_TIME),
        (DUE - AT_RISK - timedelta(seconds=1), DeadlineStatus.ON_TIME),
        (DUE - AT_RISK, DeadlineStatus.AT_RISK),
        (DUE - timedelta(hours=1), DeadlineStatus.AT_RISK),
        (DUE, DeadlineStatus.AT_RISK),  # due this very moment: still open, not yet late
        (DUE + timedelta(seconds=1), DeadlineStatus.OVERDUE),
        (DUE + timedelta(days=10), DeadlineStatus.OVERDUE),
    ],
)
def test_open_requests_are_on_time_at_risk_or_overdue(now: datetime, status: DeadlineStatus) -> None:
    assert deadline_status(DUE, now) is status


@pytest.mark.parametrize(
    ("delivered", "status"),
    [
        (DUE - timedelta(days=6), DeadlineStatus.MET),
        (DUE, DeadlineStatus.MET),
        (DUE + timedelta(minutes=1), DeadlineStatus.MISSED),
    ],
)
def test_delivered_requests_met_or_missed_whenever_asked(delivered: datetime, status: DeadlineStatus) -> None:
    for now in (delivered, DUE + timedelta(days=30)):
        assert deadline_status(DUE, now, delivered) is status


def test_the_at_risk_window_is_configurable() -> None:
    assert (
        deadline_status(DUE, DUE - timedelta(hours=60), at_risk=timedelta(hours=72)) is DeadlineStatus.AT_RISK
    )
