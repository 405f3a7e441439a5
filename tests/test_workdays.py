"""Working days by the statutory calendar (issue 14 point 7): holidays skipped, make-up Saturdays
counted, in the latest year chinesecalendar ships; Monday to Friday, with one warning, for a year it
does not know; and a notice's "N个工作日内" deadline counted the same way."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

import chinese_calendar
import pytest

from vmportal.compliance.service.deadlines import parse_deadline
from vmportal.kit import workdays
from vmportal.kit.clock import BEIJING

# The latest year chinesecalendar 1.11 ships: 2026's National Day runs Thursday 1 – Wednesday 7
# October, made up on Sunday 20 September and Saturday 10 October.
NATIONAL_DAY_EVE = datetime(2026, 9, 30, 10, 30, tzinfo=BEIJING)  # a Wednesday


def _unknown_year() -> int:
    year = 2026
    while workdays.known(year):
        year += 1
    return year


def test_the_latest_covered_year_is_known_and_the_next_one_is_not() -> None:
    assert workdays.known(2026)
    unknown = _unknown_year()
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(unknown, 3, 2))  # what the fallback is for


def test_the_national_day_week_is_skipped_and_the_make_up_saturday_counts() -> None:
    assert workdays.is_working_day(date(2026, 9, 30))
    assert not any(workdays.is_working_day(date(2026, 10, d)) for d in range(1, 8))  # Thu–Wed off
    assert workdays.is_working_day(date(2026, 9, 20))  # a Sunday, made up
    assert workdays.is_working_day(date(2026, 10, 10))  # a Saturday, made up
    assert not workdays.is_working_day(date(2026, 10, 11))  # an ordinary Sunday

    # Thursday 8, Friday 9, Saturday 10 (made up): three working days after the eve.
    assert workdays.add_working_days(NATIONAL_DAY_EVE, 3) == datetime(2026, 10, 10, 10, 30, tzinfo=BEIJING)
    # Monday to Friday would have said Monday 5 October, in the middle of the holiday.
    assert workdays.add_working_days(NATIONAL_DAY_EVE, 4) == datetime(2026, 10, 12, 10, 30, tzinfo=BEIJING)
    # A UTC start is counted in Beijing time: 18:00 UTC on the 30th is already 1 October in Beijing.
    late = datetime(2026, 9, 30, 18, 0, tzinfo=UTC)
    assert workdays.add_working_days(late, 1).date() == date(2026, 10, 8)


def test_a_notice_deadline_in_working_days_follows_the_statutory_calendar() -> None:
    due = parse_deadline("5个工作日内", NATIONAL_DAY_EVE)
    # 8, 9, 10 (made up), 12, 13 October.
    assert due == datetime(2026, 10, 13, 10, 30, tzinfo=BEIJING)
    assert parse_deadline("3 工作日", NATIONAL_DAY_EVE) == datetime(2026, 10, 10, 10, 30, tzinfo=BEIJING)
    # Calendar days are still calendar days.
    assert parse_deadline("5天内", NATIONAL_DAY_EVE) == datetime(2026, 10, 5, 10, 30, tzinfo=BEIJING)


def test_an_unknown_year_counts_monday_to_friday_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    year = _unknown_year()
    workdays._warned.discard(year)
    caplog.set_level(logging.WARNING, logger="vmportal.kit.workdays")
    friday = next(date(year, 1, d) for d in range(1, 8) if date(year, 1, d).weekday() == 4)
    start = datetime.combine(friday, datetime.min.time(), tzinfo=BEIJING).replace(hour=9)

    assert workdays.is_working_day(friday)  # even 1 January: the year's holidays are not known
    assert not workdays.is_working_day(date.fromordinal(friday.toordinal() + 1))  # Saturday
    # Friday + 1 working day: Monday, at the same hour; + 5: the next Friday.
    assert workdays.add_working_days(start, 1) == start.replace(day=friday.day + 3)
    assert workdays.add_working_days(start, 5) == start.replace(day=friday.day + 7)
    assert parse_deadline("2个工作日内", start) == start.replace(day=friday.day + 4)

    warnings = [r for r in caplog.records if r.name == "vmportal.kit.workdays"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert str(year) in warnings[0].getMessage() and "Monday to Friday" in warnings[0].getMessage()


def test_a_count_across_the_end_of_the_known_calendar() -> None:
    """From the last days of the latest covered year into the first unknown one: the known days by
    the statutory calendar, the unknown ones Monday to Friday, never an error."""
    last = _unknown_year() - 1
    eve = datetime(last, 12, 30, 15, 0, tzinfo=BEIJING)
    due = workdays.add_working_days(eve, 3)
    assert due.year == last + 1 and due.hour == 15
    counted = [d for d in range(1, due.day + 1) if workdays.is_working_day(date(last + 1, 1, d))]
    assert len(counted) == 3 - (workdays.is_working_day(date(last, 12, 31)))
