"""The production layout described by docker-compose.yml is valid and complete."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose_config() -> dict[str, Any]:
    """The file as docker-compose reads it (anchors merged, variables substituted)."""
    exe = shutil.which("docker-compose")
    assert exe, "Debian's docker-compose package is missing (scripts/bootstrap.sh installs it)"
    result = subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env={"VMPORTAL_ENCRYPTION_KEY": "k", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def test_compose_file_validates_with_docker_compose() -> None:
    config = compose_config()
    services = config["services"]
    assert {"api", "worker", "beat", "postgres", "redis", "vcsim"} <= set(services)
    for name in ("api", "worker", "beat", "postgres", "redis"):
        assert "healthcheck" in services[name], f"{name} has no health check"
    assert services["worker"]["environment"]["VMPORTAL_BROKER_URL"].startswith("redis://")
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert {"pgdata", "redisdata", "uploads"} <= set(config["volumes"])


def test_compose_refuses_to_start_without_an_encryption_key() -> None:
    exe = shutil.which("docker-compose")
    assert exe
    result = subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode != 0
    assert "VMPORTAL_ENCRYPTION_KEY" in result.stderr


def test_worker_serves_its_metrics_and_its_health_check_reads_them() -> None:
    worker = compose_config()["services"]["worker"]
    env = worker["environment"]
    port = env["VMPORTAL_METRICS_PORT"]
    assert int(port) > 0
    # Inside the container: loopback would hide the port from Prometheus on the compose network.
    assert env["VMPORTAL_METRICS_HOST"] == "0.0.0.0"  # noqa: S104
    assert str(port) in [str(p) for p in worker["expose"]]
    # The shared settings survive the merge (a plain `environment:` would replace them all).
    assert env["VMPORTAL_BROKER_URL"].startswith("redis://")
    assert env["VMPORTAL_DATABASE_URL"].startswith("postgresql+psycopg://")
    # vmportal.app.worker makes a fresh multiprocess directory per start; a fixed one would keep stale counts.
    assert "PROMETHEUS_MULTIPROC_DIR" not in env
    check = " ".join(worker["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/metrics" in check
    # This worker, not any worker of the broker (`--scale worker=N`).
    assert "inspect ping --destination" in check and "HOSTNAME" in check


def test_api_processes_sum_their_metrics_in_a_fresh_directory() -> None:
    api = compose_config()["services"]["api"]
    assert "--workers" in api["command"]
    directory = api["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert directory in api["tmpfs"]  # empty at every start: no counts of an earlier run's processes
    assert api["environment"]["VMPORTAL_ENCRYPTION_KEY"] == "k"


def test_beat_health_is_its_schedule_file_being_kept(tmp_path: Path) -> None:
    beat = compose_config()["services"]["beat"]
    assert beat["command"] == ["vmportal", "beat"]
    test = beat["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    data_dir = beat["environment"]["VMPORTAL_DATA_DIR"]
    script = test[3]
    assert f"{data_dir}/celerybeat-schedule" in script
    # Run the check itself against a schedule file here: fresh passes, stale or missing fails.
    local = script.replace(data_dir, str(tmp_path))

    def healthy() -> bool:
        return subprocess.run([sys.executable, "-c", local], check=False).returncode == 0

    assert not healthy()
    schedule = tmp_path / "celerybeat-schedule.dat"
    schedule.write_bytes(b"")
    assert healthy()
    # Beat writes the file back every 3 minutes (celery's PersistentScheduler.sync_every): ten
    # minutes without a write is a beat that is stuck or gone.
    stale = time.time() - 601
    os.utime(schedule, (stale, stale))
    assert not healthy()
