"""The shipper's configuration: one log file, one alert source, one portal.

Read from a TOML file (``vmportal ship --config /etc/vmportal/ship-suricata.toml``), with command-line
options taking precedence; an unknown key is an error (a misspelt ``batch_size`` silently ignored
would be worse). Credentials are best kept out of the file that is shown around: ``secret_file`` /
``token_file``, or the environment variables ``VMPORTAL_SHIP_SECRET`` / ``VMPORTAL_SHIP_TOKEN``.

A source with both a secret and a token is posted to with the secret: only signed posts carry a
webhook-id the portal remembers, which is what makes a post repeated after a crash harmless.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vmportal.alerts import signing
from vmportal.shipper.formats import LogFormat

SECRET_ENV = "VMPORTAL_SHIP_SECRET"  # noqa: S105 (the variable's name)
TOKEN_ENV = "VMPORTAL_SHIP_TOKEN"  # noqa: S105
DEFAULT_STATE_DIR = Path("/var/lib/vmportal-ship")
# The portal's own limits (VMPORTAL_ALERT_MAX_BYTES defaults to 1 MiB, 10 000 records a post):
# batches stay well under them.
MAX_BATCH_BYTES = 1024 * 1024
MAX_BATCH_RECORDS = 10_000
_SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")  # as the portal names sources


class ConfigError(Exception):
    """A configuration the shipper refuses to start with; the message says what to change."""


@dataclass(frozen=True)
class ShipperConfig:
    file: Path
    format: LogFormat
    portal: str  # the portal's base URL (https://vmportal.example.edu.cn) or the source's endpoint
    source: str
    state_file: Path
    secret: str | None = None
    token: str | None = None
    dead_letter: Path | None = None  # default: beside the state file, <state>.dead-letter.ndjson
    batch_records: int = 500
    batch_bytes: int = 256 * 1024
    min_level: int = 0  # Wazuh: alerts below this rule.level are not posted
    start_at_end: bool = False  # first start, no state: skip what the file already holds
    poll_interval: float = 0.25
    rotate_wait: float = 3.0
    timeout: float = 30.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    retry_after_max: float = 600.0
    jitter: bool = True
    ca_file: Path | None = None
    proxy: str | None = None
    once: bool = False  # exit once the file is shipped to its end (cron, tests)
    dead_letter_max_bytes: int = 64 * 1024 * 1024

    @property
    def endpoint(self) -> str:
        base = self.portal.rstrip("/")
        suffix = f"/api/v1/alerts/{self.source}"
        return base if base.endswith(suffix) else base + suffix

    @property
    def dead_letter_path(self) -> Path:
        return self.dead_letter or self.state_file.with_name(self.state_file.name + ".dead-letter.ndjson")

    @property
    def scan_limit(self) -> int:
        """Bytes of skipped lines one batch may read past: a backlog of EVE flows must not hold back
        the few alerts found in it until the whole backlog is read."""
        return 32 * self.batch_bytes


def _fail(zh: str, en: str) -> ConfigError:
    return ConfigError(f"{zh} / {en}")


def _read_secret_file(path: str, what: str) -> str:
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise _fail(
            f"无法读取{what}文件 {path}", f"cannot read the {what} file {path}: {exc.strerror}"
        ) from None
    if not text:
        raise _fail(f"{what}文件 {path} 为空", f"the {what} file {path} is empty")
    return text


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build(values: Mapping[str, Any]) -> ShipperConfig:
    """A checked configuration from plain values (the TOML file's keys; ``secret_file`` and
    ``token_file`` are read here, the environment variables fill in what is still missing)."""
    values = {k.replace("-", "_"): v for k, v in values.items() if v is not None}
    known = {f.name for f in fields(ShipperConfig)} | {"secret_file", "token_file"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise _fail(f"未知的配置项：{', '.join(unknown)}", f"unknown setting(s): {', '.join(unknown)}")
    missing = [k for k in ("file", "format", "portal", "source") if not values.get(k)]
    if missing:
        raise _fail(f"缺少配置项：{', '.join(missing)}", f"missing setting(s): {', '.join(missing)}")

    secret_file = values.pop("secret_file", None)
    token_file = values.pop("token_file", None)
    if secret_file and not values.get("secret"):
        values["secret"] = _read_secret_file(str(secret_file), "密钥 secret")
    if token_file and not values.get("token"):
        values["token"] = _read_secret_file(str(token_file), "令牌 token")
    if not values.get("secret") and not values.get("token"):
        values["secret"] = os.environ.get(SECRET_ENV) or None
        values["token"] = os.environ.get(TOKEN_ENV) or None
    if not values.get("secret") and not values.get("token"):
        raise _fail(
            f"缺少告警源的密钥或令牌（secret_file、token_file，或环境变量 {SECRET_ENV} / {TOKEN_ENV}）",
            f"the source's secret or token is missing (secret_file, token_file, or {SECRET_ENV} / "
            f"{TOKEN_ENV} in the environment)",
        )
    if values.get("secret"):
        try:
            signing.decode_secret(str(values["secret"]))
        except ValueError as exc:
            raise _fail("密钥格式错误", f"the secret is not usable: {exc}") from None

    try:
        fmt = LogFormat(str(values["format"]).lower())
    except ValueError:
        allowed = ", ".join(f.value for f in LogFormat)
        raise _fail(
            f"不支持的日志格式 {values['format']!r}（可选：{allowed}）",
            f"format {values['format']!r} is not one of: {allowed}",
        ) from None
    values["format"] = fmt
    source = str(values["source"])
    if not _SOURCE_NAME.match(source):
        raise _fail(
            f"告警源名称 {source!r} 不合法（小写字母、数字、“.”、“_”、“-”）",
            f"source {source!r} is not a portal source name (lower-case letters, digits, '.', '_', '-')",
        )
    url = urlsplit(str(values["portal"]))
    if url.scheme not in ("http", "https") or not url.hostname:
        raise _fail(
            "portal 须为平台地址，例如 https://vmportal.example.edu.cn",
            f"portal must be the portal's URL (https://vmportal.example.edu.cn), got {values['portal']!r}",
        )
    if (
        url.scheme == "http"
        and values.get("token")
        and not values.get("secret")
        and not _is_loopback(url.hostname)
    ):
        raise _fail(
            "令牌不能经明文 HTTP 发送到其他主机，请使用 https",
            "a bearer token would cross the network in clear text over http: use https (a signed "
            "source's secret never leaves the sensor, so http is allowed for it)",
        )
    for key in ("file", "state_file", "dead_letter", "ca_file"):
        if values.get(key) is not None:
            values[key] = Path(str(values[key])).expanduser()
    values.setdefault("state_file", DEFAULT_STATE_DIR / f"{source}.state")

    try:
        config = ShipperConfig(**values)
    except TypeError as exc:
        raise _fail("配置项有误", str(exc)) from None
    _check_numbers(config)
    if config.min_level and config.format is not LogFormat.WAZUH:
        raise _fail("min_level 仅适用于 wazuh 格式", "min_level applies to the wazuh format only")
    return config


def _number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _fail(
            f"{name} 须在 {low} 到 {high} 之间", f"{name} must be from {low} to {high}, got {value!r}"
        )


def _check_numbers(c: ShipperConfig) -> None:
    _number("batch_records", c.batch_records, 1, MAX_BATCH_RECORDS)
    _number("batch_bytes", c.batch_bytes, 1024, MAX_BATCH_BYTES)
    _number("min_level", c.min_level, 0, 16)
    _number("poll_interval", c.poll_interval, 0.01, 60)
    _number("rotate_wait", c.rotate_wait, 0, 3600)
    _number("timeout", c.timeout, 0.1, 600)
    _number("backoff_initial", c.backoff_initial, 0.01, 3600)
    _number("backoff_max", c.backoff_max, c.backoff_initial, 3600)
    _number("retry_after_max", c.retry_after_max, 0, 86400)
    _number("dead_letter_max_bytes", c.dead_letter_max_bytes, 0, 2**40)


def load(path: Path | None, overrides: Mapping[str, Any] | None = None) -> ShipperConfig:
    """The configuration from a TOML file (optional) with ``overrides`` (non-None values) on top."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except OSError as exc:
            raise _fail(f"无法读取配置文件 {path}", f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise _fail(f"配置文件 {path} 不是有效的 TOML", f"{path} is not valid TOML: {exc}") from None
    given = {k.replace("-", "_"): v for k, v in (overrides or {}).items() if v is not None}
    for kind in ("secret", "token"):
        if f"{kind}_file" in given:  # a credential file named on the command line wins over the file's
            values.pop(kind, None)
    values.update(given)
    return build(values)
