"""The shipper against the real portal (the FastAPI app under uvicorn on loopback, a source registered
through the API): the alerts a center operator then sees, with no alert stored twice — also when the
shipper is killed between the portal storing a post and the shipper saving its position."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from tests.shipper.harness import (
    LivePortal,
    Receiver,
    Running,
    append,
    config,
    eve_alert,
    eve_dns,
    eve_flow,
    serve_receiver,
    ship_once,
    wait_for,
    wazuh_alert,
    zeek_notice,
)

ROOT = Path(__file__).resolve().parents[2]


def _flow_ids(alerts: list[dict[str, Any]]) -> list[int]:
    return [int(a["external_id"].split(":")[0]) for a in alerts]


def test_the_alerts_of_a_growing_eve_json_are_stored_once_and_nothing_else_is(
    portal: LivePortal, tmp_path: Path, logs: Path
) -> None:
    source = portal.source("suricata")
    log = logs / "eve.json"
    append(log, *(line for n in range(30) for line in (eve_flow(n), eve_alert(n), eve_dns(n))))
    cfg = config(tmp_path, log, portal.url, source["name"], secret=source["secret"], batch_records=7)
    with Running(cfg):
        wait_for("30 alerts in the portal", lambda: len(portal.alerts(source)) == 30)
        for round_ in range(4):
            append(
                log,
                *(
                    line
                    for n in range(30 + round_ * 5, 35 + round_ * 5)
                    for line in (eve_alert(n), eve_flow(n))
                ),
            )
            time.sleep(0.05)
        wait_for("50 alerts in the portal", lambda: len(portal.alerts(source)) == 50)
        wait_for(
            "the position saved",
            lambda: json.loads(cfg.state_file.read_text())["offset"] == log.stat().st_size,
        )
    alerts = portal.alerts(source)
    assert _flow_ids(alerts) == [1_500_000_000 + n for n in range(50)]  # in the log's order
    assert {a["category"] for a in alerts} == {"trojan"} and {a["severity"] for a in alerts} == {"high"}
    assert all(a["repeats"] == 0 for a in alerts)
    records = portal.records(source)
    assert len(records) == 50 and not portal.records(source, failed=True)  # no flow or dns was posted
    assert all(r["webhook_id"].startswith("vmship-") for r in records)


def test_zeek_notices_and_wazuh_alerts_over_the_minimum_level_arrive(
    portal: LivePortal, tmp_path: Path, logs: Path
) -> None:
    zeek, wazuh = portal.source("zeek"), portal.source("wazuh")
    notice_log, alerts_json = logs / "notice.log", logs / "alerts.json"
    append(notice_log, *(zeek_notice(n) for n in range(4)))
    append(alerts_json, *(wazuh_alert(n, level=level) for n, level in enumerate((3, 5, 10, 12, 6, 15))))
    ship_once(config(tmp_path, notice_log, portal.url, zeek["name"], secret=zeek["secret"], format="zeek"))
    ship_once(
        config(
            tmp_path,
            alerts_json,
            portal.url,
            wazuh["name"],
            secret=wazuh["secret"],
            format="wazuh",
            min_level=7,
        )
    )
    notices = portal.alerts(zeek)
    assert len(notices) == 4 and {(a["category"], a["severity"]) for a in notices} == {("attack", "medium")}
    assert {a["addresses"][0]["ip"] for a in notices} == {"10.20.0.31"}
    stored = portal.alerts(wazuh)
    assert [(a["external_id"], a["severity"]) for a in stored] == [
        ("1773642011.1002", "medium"),
        ("1773642011.1003", "high"),
        ("1773642011.1005", "critical"),
    ]
    assert {a["category"] for a in stored} == {"attack"}


def test_a_source_with_a_bearer_token_is_posted_to_with_it(
    portal: LivePortal, tmp_path: Path, logs: Path
) -> None:
    source = portal.source("suricata", auth="bearer")
    assert source["secret"] is None
    log = logs / "eve.json"
    append(log, eve_alert(1), eve_alert(2))
    stats = ship_once(config(tmp_path, log, portal.url, source["name"], token=source["token"]))
    assert stats.batches == 1
    assert _flow_ids(portal.alerts(source)) == [1_500_000_001, 1_500_000_002]
    assert {r["webhook_id"] for r in portal.records(source)} == {""}  # a token post carries no id


def test_records_the_portal_cannot_read_are_dead_lettered_and_the_stream_goes_on(
    portal: LivePortal, tmp_path: Path, logs: Path
) -> None:
    source = portal.source("suricata")
    log = logs / "eve.json"
    unreadable = json.loads(eve_alert(2))
    del unreadable["alert"]["signature_id"]  # an alert line, but not one the portal can read
    line = json.dumps(unreadable, separators=(",", ":")).encode()
    append(log, eve_alert(1), line + b"\n", eve_alert(3))
    cfg = config(tmp_path, log, portal.url, source["name"], secret=source["secret"])
    ship_once(cfg)  # one post: 202 with record 1 rejected
    append(log, line + b"\n")
    ship_once(cfg)  # a post of that record alone: 422
    append(log, eve_alert(4))
    ship_once(cfg)  # and the stream is not held up by it

    assert _flow_ids(portal.alerts(source)) == [1_500_000_001, 1_500_000_003, 1_500_000_004]
    failed = portal.records(source, failed=True)
    assert len(failed) == 2 and {r["error_field"] for r in failed} == {"alert.signature_id"}  # kept there too
    dead = [json.loads(entry) for entry in cfg.dead_letter_path.read_text().splitlines()]
    assert [d["status"] for d in dead] == [202, 422]
    assert all(d["line"] == line.decode() and "signature_id" in d["reason"] for d in dead)


def _write_config(path: Path, **values: Any) -> Path:
    lines = [
        f"{key} = {json.dumps(str(value) if isinstance(value, Path) else value)}"
        for key, value in values.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _ship_process(config_file: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "vmportal.shipper", "--config", str(config_file), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_killed_between_the_post_and_the_state_write_nothing_is_stored_twice(
    portal: LivePortal, tmp_path: Path, logs: Path
) -> None:
    source = portal.source("suricata")
    log = logs / "eve.json"
    append(log, *(eve_alert(n) for n in range(12)), eve_flow(1))
    secret_file = tmp_path / "secret"
    secret_file.write_text(source["secret"] + "\n")
    endpoint = f"{portal.url}/api/v1/alerts/{source['name']}"
    # Between the shipper and the portal: forward the first post, and once the portal has stored it,
    # hold the answer back while the shipper is killed.
    proxy = Receiver(upstream=endpoint, script=deque(["store_then_hold"]))
    with serve_receiver(proxy):
        state = tmp_path / "state" / "ids.state"
        cfg = _write_config(
            tmp_path / "ship.toml",
            file=log,
            format="suricata",
            portal=f"{proxy.url}/api/v1/alerts/{source['name']}",
            source=source["name"],
            secret_file=secret_file,
            state_file=state,
            poll_interval=0.05,
            backoff_initial=0.05,
            backoff_max=0.5,
        )
        process = _ship_process(cfg)
        try:
            assert proxy.held.wait(30), "the shipper never posted"
            assert len(portal.alerts(source)) == 12  # the portal has stored the batch
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        proxy.release.set()
        assert json.loads(state.read_text())["offset"] == 0  # the position was never saved
        assert state.with_name("ids.state.pending").exists()

        restarted = _ship_process(cfg, "--once")
        output, _ = restarted.communicate(timeout=60)
        assert restarted.returncode == 0, output
        assert "已收到过" in output and "already stored" in output

    alerts = portal.alerts(source)
    assert _flow_ids(alerts) == [1_500_000_000 + n for n in range(12)]
    assert all(a["repeats"] == 0 for a in alerts)  # the repeat was caught by its webhook-id
    assert len(portal.records(source)) == 12
    assert [p.answered for p in proxy.posts] == [None, 200]  # the second post: "duplicate"
    assert proxy.posts[0].webhook_id == proxy.posts[1].webhook_id
    assert json.loads(state.read_text())["offset"] == log.stat().st_size
    assert not state.with_name("ids.state.pending").exists()


def test_the_command_explains_a_bad_configuration_in_both_languages(tmp_path: Path) -> None:
    cfg = _write_config(tmp_path / "ship.toml", file=tmp_path / "eve.json", format="suricata", batchsize=10)
    process = _ship_process(cfg)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "未知的配置项" in output and "unknown setting(s): batchsize" in output
