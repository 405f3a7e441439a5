from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from policies.maintenance import MIN_LEAD, check_maintenance_notice
from tests.policies._verdicts import assert_allowed, assert_denied

BEIJING = timezone(timedelta(hours=8))
STARTS = datetime(2024, 10, 12, 22, 0, tzinfo=BEIJING)


@pytest.mark.parametrize("lead", [MIN_LEAD, timedelta(days=7)])
def test_an_outage_announced_three_days_ahead_is_allowed(lead: timedelta) -> None:
    assert_allowed(check_maintenance_notice(STARTS - lead, STARTS), "maintenance_notice", zh=["72 小时"])


def test_a_late_notice_is_refused_with_the_earliest_acceptable_start() -> None:
    announced = STARTS - timedelta(hours=71, minutes=30)
    assert_denied(
        check_maintenance_notice(announced, STARTS),
        "maintenance_notice",
        field="starts_at",
        zh=["72 小时", "仅 71 小时 30 分钟", "第9条", "2024-10-12 22:30 +0800"],
        en=["72 h", "only 71 h 30 min", "§9", "2024-10-12 22:30 +0800"],
    )


def test_a_notice_after_the_start_is_refused() -> None:
    assert_denied(
        check_maintenance_notice(STARTS + timedelta(hours=1), STARTS),
        "maintenance_notice",
        field="starts_at",
        zh=["不早于开始时间"],
        en=["no earlier than it starts"],
    )


def test_the_suggested_start_is_never_too_early() -> None:
    # Announced at 21:00:30, the earliest start is 21:00:30 three days later: suggest 21:01, not 21:00.
    announced = STARTS - timedelta(hours=1) + timedelta(seconds=30)
    verdict = assert_denied(
        check_maintenance_notice(announced, STARTS), "maintenance_notice", field="starts_at"
    )
    assert "2024-10-15 21:01 +0800" in verdict.message_en


def test_the_suggestion_is_in_the_outages_own_zone() -> None:
    announced = datetime(2024, 10, 12, 0, 0, tzinfo=UTC)  # 08:00 in Beijing
    assert_denied(
        check_maintenance_notice(announced, STARTS),
        "maintenance_notice",
        field="starts_at",
        zh=["2024-10-15 08:00 +0800"],
    )


def test_the_lead_time_is_the_centers_setting() -> None:
    assert check_maintenance_notice(
        STARTS - timedelta(hours=30), STARTS, min_lead=timedelta(hours=24)
    ).allowed
    assert not check_maintenance_notice(
        STARTS - timedelta(hours=30), STARTS, min_lead=timedelta(hours=48)
    ).allowed


def test_bad_inputs_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="announced_at"):
        check_maintenance_notice(datetime(2024, 10, 1), STARTS)
    with pytest.raises(ValueError, match="min_lead"):
        check_maintenance_notice(STARTS - timedelta(days=5), STARTS, min_lead=timedelta(0))
