"""Times in Beijing time, durations, counts and sizes, as a reader of each language sees them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from vmportal.web import formats
from vmportal.web.i18n import use_locale

NOW = datetime(2026, 12, 1, 6, 5, tzinfo=UTC)


def test_times_are_shown_in_beijing_time() -> None:
    assert formats.local_time(NOW) == "2026-12-01 14:05"
    assert formats.local_time(NOW, seconds=True) == "2026-12-01 14:05:00"
    # Past midnight in Beijing while still the old day (and year) in UTC.
    new_year = datetime(2026, 12, 31, 16, 30, tzinfo=UTC)
    assert formats.local_time(new_year) == "2027-01-01 00:30"
    assert formats.local_date(new_year) == "2027-01-01"
    # An instant given in another zone is the same instant.
    new_york = datetime(2026, 12, 1, 1, 5, tzinfo=timezone(timedelta(hours=-5)))
    assert formats.local_time(new_york) == "2026-12-01 14:05"


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        formats.local_time(datetime(2026, 12, 1, 14, 5))


def test_time_tag_carries_the_instant_and_the_zone() -> None:
    with use_locale("zh_CN"):
        tag = formats.time_tag(NOW)
    assert tag == '<time datetime="2026-12-01T06:05:00Z" title="北京时间（UTC+8）">2026-12-01 14:05</time>'


@pytest.mark.parametrize(
    ("delta", "zh", "en"),
    [
        (timedelta(days=3, hours=4, minutes=59), "还剩 3 天 4 小时", "3 d 4 h left"),
        (timedelta(days=3), "还剩 3 天", "3 d left"),
        (timedelta(hours=5, minutes=7), "还剩 5 小时 7 分钟", "5 h 7 min left"),
        (timedelta(minutes=30), "还剩 30 分钟", "30 min left"),
        (timedelta(seconds=20), "剩余不到 1 分钟", "less than a minute left"),
        (timedelta(seconds=-20), "刚刚超期", "just overdue"),
        (-timedelta(hours=2, minutes=1), "已超期 2 小时 1 分钟", "2 h 1 min overdue"),
        (-timedelta(days=12, hours=3), "已超期 12 天 3 小时", "12 d 3 h overdue"),
    ],
)
def test_time_left(delta: timedelta, zh: str, en: str) -> None:
    with use_locale("zh_CN"):
        assert formats.time_left(NOW + delta, NOW) == zh
    with use_locale("en"):
        assert formats.time_left(NOW + delta, NOW) == en


def test_time_ago() -> None:
    with use_locale("zh_CN"):
        assert formats.time_ago(NOW - timedelta(days=3, hours=4), NOW) == "3 天 4 小时前"
        assert formats.time_ago(NOW - timedelta(seconds=5), NOW) == "刚刚"
        assert formats.time_ago(NOW + timedelta(seconds=5), NOW) == "刚刚"  # a clock slightly ahead
    with use_locale("en"):
        assert formats.time_ago(NOW - timedelta(minutes=42), NOW) == "42 min ago"


def test_time_left_defaults_to_now() -> None:
    with use_locale("en"):
        assert formats.time_left(datetime.now(UTC) + timedelta(hours=2, seconds=30)) == "2 h left"


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1536, "1.5 KiB"),
        (1024**3 * 1.5, "1.5 GiB"),
        (1024**3 * 12.4, "12 GiB"),
        (1024**4 * 3, "3 TiB"),
        (1024**3 * 2048, "2 TiB"),
        (1024**5 * 5000, "5,000 PiB"),
    ],
)
def test_data_size(size: float, shown: str) -> None:
    for locale in ("zh_CN", "en"):
        with use_locale(locale):
            assert formats.data_size(size) == shown


def test_sizes_in_gib_and_numbers() -> None:
    assert formats.gib(40) == "40 GiB"
    assert formats.gib(0.5) == "0.5 GiB"
    assert formats.number(20000) == "20,000"
    assert formats.number(1234.567, decimals=2) == "1,234.57"
    with pytest.raises(ValueError, match="negative"):
        formats.data_size(-1)
