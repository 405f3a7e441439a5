"""The production layout described by docker-compose.yml is valid and complete."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_validates_with_docker_compose() -> None:
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
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"api", "worker", "beat", "postgres", "redis", "vcsim"} <= set(services)
    for name in ("api", "worker", "postgres", "redis"):
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
