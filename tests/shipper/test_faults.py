"""The portal misbehaving: down, overloaded (503, 429 with Retry-After), answering 413, refusing the
credentials, or dropping the connection before or after it stored the post. The shipper waits, reads
nothing more meanwhile, and in the end every alert is stored once."""

from __future__ import annotations

import json
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from tests.shipper.harness import (
    Receiver,
    Running,
    append,
    config,
    eve_alert,
    flow_ids,
    free_port,
    serve_receiver,
    ship_once,
    wait_for,
)
from vmportal.alerts import signing
from vmportal.shipper.delivery import backoff, parse_retry_after

SECRET = signing.new_secret()
EXPECTED_10 = [1_500_000_000 + n for n in range(10)]


def test_503_then_200_delivers_once_after_the_retry_after_delay(tmp_path: Path, logs: Path) -> None:
    log = logs / "eve.json"
    append(log, *(eve_alert(n) for n in range(10)))
    rx = Receiver(secret=SECRET, script=deque([("status", 503, {"Retry-After": "1"}), ("status", 502, {})]))
    with serve_receiver(rx):
        stats = ship_once(config(tmp_path, log, rx.url, "ids", secret=SECRET))
    assert flow_ids(rx.records) == EXPECTED_10
    assert [p.answered for p in rx.posts] == [503, 502, 202]
    assert len({p.webhook_id for p in rx.posts}) == 1  # the same batch each time
    assert rx.posts[1].at - rx.posts[0].at >= 0.95  # Retry-After: 1 was honoured
    assert rx.posts[2].at - rx.posts[1].at < 0.9  # then the back-off (0.05 s) again
    assert stats.failed_attempts == 2 and stats.batches == 1


def test_429_with_an_http_date_is_honoured(tmp_path: Path, logs: Path) -> None:
    log = logs / "eve.json"
    append(log, eve_alert(1))
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    rx = Receiver(secret=SECRET, script=deque([("status", 429, {"Retry-After": later})]))
    with serve_receiver(rx):
        ship_once(config(tmp_path, log, rx.url, "ids", secret=SECRET))
    assert [p.answered for p in rx.posts] == [429, 202]
    assert rx.posts[1].at - rx.posts[0].at >= 0.9  # an HTTP date rounds to the second


def test_a_connection_dropped_before_the_post_was_stored_is_posted_again(tmp_path: Path, logs: Path) -> None:
    log = logs / "eve.json"
    append(log, *(eve_alert(n) for n in range(10)))
    rx = Receiver(secret=SECRET, script=deque(["drop"]))
    with serve_receiver(rx):
        stats = ship_once(config(tmp_path, log, rx.url, "ids", secret=SECRET))
    assert flow_ids(rx.records) == EXPECTED_10
    assert [p.answered for p in rx.posts] == [None, 202] and stats.duplicates == 0


def test_a_connection_dropped_after_the_post_was_stored_is_recognised_as_a_repeat(
    tmp_path: Path, logs: Path
) -> None:
    log = logs / "eve.json"
    append(log, *(eve_alert(n) for n in range(10)))
    rx = Receiver(secret=SECRET, script=deque(["store_then_drop"]))
    with serve_receiver(rx):
        stats = ship_once(config(tmp_path, log, rx.url, "ids", secret=SECRET))
    assert flow_ids(rx.records) == EXPECTED_10  # stored once
    assert [p.answered for p in rx.posts] == [None, 200]  # the repeat was answered "duplicate"
    assert rx.posts[0].webhook_id == rx.posts[1].webhook_id
    assert stats.duplicates == 1 and stats.batches == 1


def test_while_the_portal_is_down_nothing_more_is_read_then_everything_arrives_once(
    tmp_path: Path, logs: Path
) -> None:
    log = logs / "eve.json"
    append(log, *(eve_alert(n) for n in range(30)))
    port = free_port()  # nothing listens there yet: connection refused
    rx = Receiver(secret=SECRET)
    cfg = config(tmp_path, log, f"http://127.0.0.1:{port}", "ids", secret=SECRET, batch_records=5)
    with Running(cfg) as run:
        shipper = run.shipper
        wait_for("three failed attempts", lambda: shipper.stats.failed_attempts >= 3)
        append(log, *(eve_alert(n) for n in range(30, 60)))
        time.sleep(0.3)
        # Back-pressure: one batch of five read, held and journalled; the position not moved.
        first_batch_end = 5 * len(eve_alert(0))
        assert shipper.follower.offset == first_batch_end
        assert json.loads(cfg.state_file.read_text())["offset"] == 0
        pending = cfg.state_file.with_name(cfg.state_file.name + ".pending")
        assert pending.read_bytes().count(b'"event_type":"alert"') == 5
        assert shipper.waiting_since is not None
        with serve_receiver(rx, port=port):
            wait_for("sixty alerts", lambda: len(rx.records) == 60)
            wait_for(
                "the position saved",
                lambda: json.loads(cfg.state_file.read_text())["offset"] == log.stat().st_size,
            )
    assert flow_ids(rx.records) == [1_500_000_000 + n for n in range(60)]
    assert len(rx.posts) == 12 and all(p.answered == 202 for p in rx.posts)
    assert shipper.waiting_since is None


def test_stopped_while_the_portal_is_down_the_next_start_posts_the_same_batch(
    tmp_path: Path, logs: Path
) -> None:
    log = logs / "eve.json"
    append(log, *(eve_alert(n) for n in range(10)))
    port = free_port()
    cfg = config(tmp_path, log, f"http://127.0.0.1:{port}", "ids", secret=SECRET, batch_records=4)
    with Running(cfg) as run:
        wait_for("a failed attempt", lambda: run.shipper.stats.failed_attempts >= 1)
    journalled = cfg.state_file.with_name(cfg.state_file.name + ".pending").read_bytes()
    webhook_id = json.loads(journalled.split(b"\n", 1)[0])["webhook_id"]
    rx = Receiver(secret=SECRET)
    with serve_receiver(rx, port=port):
        ship_once(cfg)
    assert rx.posts[0].webhook_id == webhook_id
    assert flow_ids(rx.records) == EXPECTED_10


def test_413_splits_the_batch_and_a_single_record_too_large_is_dead_lettered(
    tmp_path: Path, logs: Path
) -> None:
    log = logs / "eve.json"
    alerts = [eve_alert(n, pad=300) for n in range(8)]
    huge = eve_alert(99, pad=3000)
    append(log, *alerts[:4], huge, *alerts[4:])
    rx = Receiver(secret=SECRET, max_bytes=2500)  # a portal configured smaller than the shipper
    with serve_receiver(rx):
        cfg = config(tmp_path, log, rx.url, "ids", secret=SECRET)
        stats = ship_once(cfg)
    assert flow_ids(rx.records) == [1_500_000_000 + n for n in range(8)]
    assert all(len(p.body) <= 2500 for p in rx.posts if p.answered == 202)
    assert stats.splits >= 2
    (dead,) = [json.loads(line) for line in cfg.dead_letter_path.read_text().splitlines()]
    assert dead["status"] == 413 and json.loads(dead["line"])["flow_id"] == 1_500_000_099


def test_refused_credentials_hold_the_stream_and_drop_nothing(tmp_path: Path, logs: Path) -> None:
    log = logs / "eve.json"
    append(log, *(eve_alert(n) for n in range(10)))
    rx = Receiver(secret=SECRET)
    wrong = signing.new_secret()  # e.g. the secret was rotated in the portal
    with serve_receiver(rx):
        cfg = config(tmp_path, log, rx.url, "ids", secret=wrong)
        with Running(cfg) as run:
            wait_for("three refusals", lambda: run.shipper.stats.failed_attempts >= 3)
            assert json.loads(cfg.state_file.read_text())["offset"] == 0
        assert rx.records == [] and {p.answered for p in rx.posts} == {401}
        assert not cfg.dead_letter_path.exists()
        ship_once(config(tmp_path, log, rx.url, "ids", secret=SECRET))  # the operator fixed it
    assert flow_ids(rx.records) == EXPECTED_10


def test_retry_after_and_backoff_values() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0  # past: now
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    delays = [backoff(n, initial=1, maximum=60, jitter=0) for n in range(1, 10)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff(3, initial=1, maximum=60, jitter=1.0) == 2.0  # at most halved by the jitter
