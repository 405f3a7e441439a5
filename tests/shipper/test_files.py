"""The log file's life on the sensor: it grows, rotates, gets truncated, ends in half a line, holds
lines that are not alerts; the shipper stops and starts. Each alert line arrives once, whole, in order.

The receiver here is the loopback stand-in for the portal (signature checked, webhook-ids remembered);
tests/shipper/test_portal.py runs the same paths against the real portal.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from tests.shipper.harness import (
    Receiver,
    Running,
    append,
    config,
    eve_alert,
    eve_dns,
    eve_flow,
    flow_ids,
    serve_receiver,
    ship_once,
    wait_for,
)
from vmportal.alerts import signing

SECRET = signing.new_secret()


def _state(cfg_state: Path) -> dict[str, object]:
    return dict(json.loads(cfg_state.read_text()))


def test_restart_resumes_from_the_state_file(tmp_path: Path, logs: Path) -> None:
    log = logs / "eve.json"
    append(log, *(eve_alert(n) for n in range(10)))
    with serve_receiver(Receiver(secret=SECRET)) as rx:
        cfg = config(tmp_path, log, rx.url, "ids", secret=SECRET, batch_records=4)
        first = ship_once(cfg)
        assert first.records == 10 and first.batches == 3
        assert _state(cfg.state_file)["offset"] == log.stat().st_size

        append(log, *(eve_alert(n) for n in range(10, 15)))
        second = ship_once(cfg)
        assert second.records == 5  # only what was written after the first run
        assert flow_ids(rx.records) == [1_500_000_000 + n for n in range(15)]
        assert not cfg.state_file.with_name(cfg.state_file.name + ".pending").exists()


def test_a_log_growing_while_shipping_arrives_whole_and_in_order(tmp_path: Path, logs: Path) -> None:
    log = logs / "eve.json"
    log.touch()
    with serve_receiver(Receiver(secret=SECRET)) as rx:
        with Running(config(tmp_path, log, rx.url, "ids", secret=SECRET, batch_records=25)) as run:
            for round_ in range(8):
                append(
                    log,
                    *(
                        line
                        for n in range(round_ * 20, round_ * 20 + 20)
                        for line in (eve_alert(n), eve_flow(n))
                    ),
                )
                time.sleep(0.01)
            wait_for("160 alerts", lambda: len(rx.records) == 160)
        assert flow_ids(rx.records) == [1_500_000_000 + n for n in range(160)]
        assert run.stats is not None and run.stats.skipped == 160 and run.stats.records == 160
        assert all(len(p.body.split(b"\n")) <= 25 for p in rx.posts)


def test_non_alert_lines_are_skipped_and_broken_ones_dead_lettered(tmp_path: Path, logs: Path) -> None:
    log = logs / "eve.json"
    stats_line = b'{"timestamp":"2026-03-16T14:10:00.0+0800","event_type":"stats","stats":{"uptime":86400}}\n'
    # An "alert" word inside another event type is not enough to be posted.
    http_line = b'{"event_type":"http","src_ip":"10.20.0.16","dest_ip":"198.51.100.7","http":{"url":"/\\"alert\\""}}\n'
    broken = b'{"timestamp":"2026-03-16T14:10:00.0+0800","event_type":"alert","src_ip":"10.20.0.15","dest_'
    crlf = eve_alert(2).rstrip(b"\n") + b"\r\n"
    append(log, eve_flow(1), eve_alert(1), eve_dns(1), stats_line, http_line, broken + b"\n", crlf, b"\n")
    with serve_receiver(Receiver(secret=SECRET)) as rx:
        cfg = config(tmp_path, log, rx.url, "ids", secret=SECRET)
        stats = ship_once(cfg)
        assert rx.records == [eve_alert(1).rstrip(b"\n"), eve_alert(2).rstrip(b"\n")]  # \r gone
        assert stats.skipped == 5 and stats.dead_lettered == 1
        dead = [json.loads(line) for line in cfg.dead_letter_path.read_text().splitlines()]
        assert (
            len(dead) == 1 and dead[0]["line"] == broken.decode() and dead[0]["reason"].startswith("not JSON")
        )
        assert dead[0]["start"] == log.read_bytes().index(broken) and dead[0]["status"] is None


def test_a_line_longer_than_a_batch_is_dead_lettered_not_held_in_memory(tmp_path: Path, logs: Path) -> None:
    log = logs / "eve.json"
    huge = eve_alert(2, pad=3 * 1024 * 1024)  # bigger than batch_bytes and than one read
    append(log, eve_alert(1), huge, eve_alert(3))
    with serve_receiver(Receiver(secret=SECRET)) as rx:
        cfg = config(tmp_path, log, rx.url, "ids", secret=SECRET, batch_bytes=64 * 1024)
        ship_once(cfg)
        assert flow_ids(rx.records) == [1_500_000_001, 1_500_000_003]
        (dead,) = [json.loads(line) for line in cfg.dead_letter_path.read_text().splitlines()]
        assert "longer than 65536 bytes" in dead["reason"]
        assert (dead["start"], dead["end"]) == (len(eve_alert(1)), len(eve_alert(1)) + len(huge))


def test_a_partial_last_line_waits_for_its_newline(tmp_path: Path, logs: Path) -> None:
    log = logs / "eve.json"
    second = eve_alert(2)
    append(log, eve_alert(1), second[:100])
    with serve_receiver(Receiver(secret=SECRET)) as rx:
        cfg = config(tmp_path, log, rx.url, "ids", secret=SECRET)
        with Running(cfg) as run:
            wait_for("the first alert", lambda: len(rx.records) == 1)
            time.sleep(0.3)  # many polls: the half line must not be posted, nor dead-lettered
            assert len(rx.records) == 1 and not cfg.dead_letter_path.exists()
            assert _state(cfg.state_file)["offset"] == len(eve_alert(1))
            append(log, second[100:-1])
            time.sleep(0.2)
            assert len(rx.records) == 1  # still no newline
            append(log, b"\n")
            wait_for("the second alert", lambda: len(rx.records) == 2)
        assert rx.records[1] == second.rstrip(b"\n")
        assert run.stats is not None and run.stats.dead_lettered == 0


def test_rotation_by_rename_finishes_the_old_file_then_reads_the_new_one(tmp_path: Path, logs: Path) -> None:
    log = logs / "eve.json"
    append(log, *(eve_alert(n) for n in range(5)))
    with serve_receiver(Receiver(secret=SECRET)) as rx:
        cfg = config(tmp_path, log, rx.url, "ids", secret=SECRET, rotate_wait=1.0)
        with Running(cfg):
            wait_for("the first five", lambda: len(rx.records) == 5)
            # logrotate with "create": rename, new empty file at once, then the writer is told to
            # reopen; until it does it keeps writing to the old file, and then writes the new one.
            os.rename(log, logs / "eve.json.1")
            log.touch()
            time.sleep(0.4)  # the writer is slow to reopen: the shipper has seen the new file by now
            append(logs / "eve.json.1", eve_alert(5), eve_alert(6))
            append(log, eve_alert(7), eve_alert(8))
            wait_for("nine alerts", lambda: len(rx.records) == 9)
        assert flow_ids(rx.records) == [1_500_000_000 + n for n in range(9)]
        assert _state(cfg.state_file)["ino"] == log.stat().st_ino

        # Rotated again while the shipper was stopped: the restart finds its file under the new name
        # by its inode, finishes it, then reads the current file.
        append(log, eve_alert(9))
        os.rename(logs / "eve.json.1", logs / "eve.json.2")
        os.rename(log, logs / "eve.json.1")
        append(log, eve_alert(10))
        ship_once(cfg)
        assert flow_ids(rx.records) == [1_500_000_000 + n for n in range(11)]


def test_copytruncate_starts_again_at_zero(tmp_path: Path, logs: Path) -> None:
    log = logs / "eve.json"
    append(log, *(eve_alert(n) for n in range(6)))
    with serve_receiver(Receiver(secret=SECRET)) as rx:
        cfg = config(tmp_path, log, rx.url, "ids", secret=SECRET)
        with Running(cfg):
            wait_for("six alerts", lambda: len(rx.records) == 6)
            shutil.copyfile(log, logs / "eve.json.1")  # logrotate copytruncate
            os.truncate(log, 0)
            append(log, eve_alert(6), eve_alert(7))  # shorter than the position: seen as a truncation
            wait_for("eight alerts", lambda: len(rx.records) == 8)
            # Truncated and at once written past the old position (a busy writer): the head changed.
            os.truncate(log, 0)
            append(log, *(eve_alert(n, pad=200) for n in range(8, 14)))
            wait_for("fourteen alerts", lambda: len(rx.records) == 14)
        assert flow_ids(rx.records) == [1_500_000_000 + n for n in range(14)]
        assert not cfg.dead_letter_path.exists()  # nothing was read from the middle of a line


def test_a_file_truncated_and_regrown_while_stopped_is_read_from_its_start(
    tmp_path: Path, logs: Path
) -> None:
    log = logs / "eve.json"
    append(log, eve_alert(1), eve_alert(2))
    with serve_receiver(Receiver(secret=SECRET)) as rx:
        cfg = config(tmp_path, log, rx.url, "ids", secret=SECRET)
        ship_once(cfg)
        with open(log, "r+b") as f:  # same inode, new content longer than the saved position
            f.truncate(0)
            f.write(b"".join(eve_alert(n, pad=100) for n in range(3, 6)))
        ship_once(cfg)
        assert flow_ids(rx.records) == [
            1_500_000_001,
            1_500_000_002,
            1_500_000_003,
            1_500_000_004,
            1_500_000_005,
        ]
        assert not cfg.dead_letter_path.exists()


def test_first_start_from_the_end_skips_the_backlog(tmp_path: Path, logs: Path) -> None:
    log = logs / "eve.json"
    half = eve_alert(3)
    append(log, eve_alert(1), eve_alert(2), half[:50])  # a line being written as the shipper starts
    with serve_receiver(Receiver(secret=SECRET)) as rx:
        cfg = config(tmp_path, log, rx.url, "ids", secret=SECRET, start_at_end=True)
        ship_once(cfg)
        assert rx.records == []
        assert (
            _state(cfg.state_file)["offset"] == len(eve_alert(1)) * 2
        )  # saved at once, before the half line
        append(log, half[50:], eve_alert(4))
        ship_once(cfg)  # the saved position wins over start_at_end from now on
        assert flow_ids(rx.records) == [1_500_000_003, 1_500_000_004]


def test_a_log_that_does_not_exist_yet_is_waited_for(tmp_path: Path, logs: Path) -> None:
    log = logs / "eve.json"
    with (
        serve_receiver(Receiver(secret=SECRET)) as rx,
        Running(config(tmp_path, log, rx.url, "ids", secret=SECRET)),
    ):
        time.sleep(0.1)
        append(log, eve_alert(1))
        wait_for("the alert", lambda: len(rx.records) == 1)
