"""The shipper's configuration: what it accepts, and what it refuses to start with (and says why)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vmportal.alerts import signing
from vmportal.shipper.config import SECRET_ENV, TOKEN_ENV, ConfigError, build, load
from vmportal.shipper.formats import LogFormat, Verdict, select

BASE = {"file": "/var/log/suricata/eve.json", "format": "suricata", "portal": "https://vmportal.example.edu.cn",
        "source": "campus-ids"}  # fmt: skip


def test_a_toml_file_with_a_secret_file_and_command_line_overrides(tmp_path: Path) -> None:
    secret = signing.new_secret()
    (tmp_path / "secret").write_text(secret + "\n")
    toml = tmp_path / "ship.toml"
    toml.write_text(
        'file = "/var/log/wazuh/alerts.json"\nformat = "wazuh"\nportal = "https://vmportal.example.edu.cn/"\n'
        f'source = "wazuh-mgr"\nsecret_file = "{tmp_path / "secret"}"\nmin_level = 7\nbatch_records = 100\n'
    )
    cfg = load(toml, {"batch_records": 50, "state_file": tmp_path / "w.state"})
    assert cfg.secret == secret and cfg.format is LogFormat.WAZUH and cfg.min_level == 7
    assert cfg.batch_records == 50  # the command line wins
    assert cfg.endpoint == "https://vmportal.example.edu.cn/api/v1/alerts/wazuh-mgr"
    assert cfg.dead_letter_path == tmp_path / "w.state.dead-letter.ndjson"
    assert build({**BASE, "secret": secret}).state_file == Path("/var/lib/vmportal-ship/campus-ids.state")


def test_credentials_come_from_the_environment_when_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "tok-123")
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert build(BASE).token == "tok-123"
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(ConfigError, match=r"缺少告警源的密钥或令牌.*secret or token is missing"):
        build(BASE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 10}, "unknown setting"),
        ({"format": "snort"}, "format 'snort' is not one of: suricata, zeek, wazuh"),
        ({"source": "Campus IDS"}, "not a portal source name"),
        ({"portal": "vmportal.example.edu.cn"}, "must be the portal's URL"),
        ({"batch_bytes": 8 * 1024 * 1024}, "batch_bytes must be from 1024 to 1048576"),
        ({"min_level": 7}, "min_level applies to the wazuh format only"),
        ({"secret": "whsec_not base64!"}, "must continue with base64"),
        ({"secret": None, "token": "t", "portal": "http://10.0.0.8:8000"}, "clear text over http"),
    ],
)
def test_refused_settings_say_what_to_change(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build({**BASE, "secret": "a passphrase", **change})
    assert " / " in str(caught.value)  # Chinese first, then English


def test_a_signed_source_may_post_over_plain_http_inside_the_campus() -> None:
    assert build({**BASE, "secret": "a passphrase", "portal": "http://10.0.0.8:8000"}).secret


@pytest.mark.parametrize(
    ("fmt", "line", "verdict"),
    [
        (LogFormat.SURICATA, b'{"event_type":"alert","alert":{}}', Verdict.KEEP),
        (LogFormat.SURICATA, b'{"event_type":"flow","app_proto":"alert"}', Verdict.SKIP),
        (LogFormat.SURICATA, b'{"event_type":"alert",', Verdict.INVALID),
        (LogFormat.ZEEK, b'{"ts":1773641400.0,"note":"Scan::Port_Scan"}', Verdict.KEEP),
        (LogFormat.ZEEK, b"#separator \\x09", Verdict.INVALID),
        (LogFormat.WAZUH, b'{"rule":{"level":"9"}}', Verdict.KEEP),
        (LogFormat.WAZUH, b'{"rule":{"level":3}}', Verdict.SKIP),
        (LogFormat.WAZUH, b"[1, 2]", Verdict.INVALID),
    ],
)
def test_which_lines_are_alerts(fmt: LogFormat, line: bytes, verdict: Verdict) -> None:
    assert select(fmt, line, min_level=5).verdict is verdict


def test_the_shipper_loads_no_database_or_web_framework() -> None:
    """It runs on a sensor: importing it must not pull in the portal's application stack."""
    code = (
        "import sys, vmportal.shipper.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sqlalchemy', 'sqlmodel', 'fastapi', 'starlette', 'pydantic', 'celery', 'alembic', 'hypervisors'}))"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
