"""Which lines of a log are alerts worth posting, per format.

The shipper decides this itself rather than posting everything: a Suricata ``eve.json`` carries
flows, DNS, HTTP, TLS and stats events by the thousand for every alert, and the portal would answer
each of them 422. A line is one of:

* ``KEEP`` — an alert: posted as it is (its exact bytes; the portal stores them as received);
* ``SKIP`` — a record of another kind (an EVE ``flow``, a Wazuh alert under the minimum level);
* ``INVALID`` — not a JSON object at all (a line mangled by a crash or a truncation race, a Zeek
  log written as TSV): written to the dead-letter file with the reason, so it is not lost silently.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class LogFormat(enum.StrEnum):
    SURICATA = "suricata"  # eve.json, event_type "alert"
    ZEEK = "zeek"  # notice.log written as JSON (LogAscii::use_json = T)
    WAZUH = "wazuh"  # /var/ossec/logs/alerts/alerts.json


class Verdict(enum.Enum):
    KEEP = "keep"
    SKIP = "skip"
    INVALID = "invalid"


@dataclass(frozen=True)
class Selection:
    verdict: Verdict
    reason: str = ""


KEEP = Selection(Verdict.KEEP)
_BOM = b"\xef\xbb\xbf"


def _decode(line: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        value = json.loads(line)
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 (byte {exc.start})"
    except RecursionError:
        return None, "JSON nested too deeply"
    except ValueError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__}, not an object"
    return value, ""


def _suricata(record: dict[str, Any], _: int) -> Selection:
    event_type = record.get("event_type")
    if event_type == "alert":
        return KEEP
    return Selection(Verdict.SKIP, f"event_type {event_type!r}")


def _zeek(record: dict[str, Any], _: int) -> Selection:
    if "note" in record and "ts" in record:
        return KEEP
    return Selection(Verdict.SKIP, "not a notice (no note and ts)")


def _wazuh(record: dict[str, Any], min_level: int) -> Selection:
    rule = record.get("rule")
    level = rule.get("level") if isinstance(rule, dict) else None
    if isinstance(level, bool) or not isinstance(level, int | str):
        return Selection(Verdict.SKIP, "no rule.level")
    try:
        number = int(level)
    except ValueError:
        return Selection(Verdict.SKIP, f"rule.level {level!r}")
    if number < min_level:
        return Selection(Verdict.SKIP, f"rule.level {number} below {min_level}")
    return KEEP


_RULES: dict[LogFormat, Callable[[dict[str, Any], int], Selection]] = {
    LogFormat.SURICATA: _suricata,
    LogFormat.ZEEK: _zeek,
    LogFormat.WAZUH: _wazuh,
}


def clean(line: bytes) -> bytes:
    """The record's bytes without the line ending (``\\r\\n`` too) and a leading byte-order mark."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if line.startswith(_BOM):
        line = line[len(_BOM) :]
    return line


def select(fmt: LogFormat, line: bytes, *, min_level: int = 0) -> Selection:
    """The verdict on one line (without its newline)."""
    if not line.strip():
        return Selection(Verdict.SKIP, "empty line")
    # EVE writes every event type to one file, alerts being a small share; a line that does not even
    # contain the word is not an alert, and is skipped without decoding it.
    if (
        fmt is LogFormat.SURICATA
        and b'"alert"' not in line
        and line.lstrip().startswith(b"{")
        and line.rstrip().endswith(b"}")
    ):
        return Selection(Verdict.SKIP, "not an alert event")
    if fmt is LogFormat.ZEEK and line.startswith(b"#"):
        return Selection(
            Verdict.INVALID,
            "a Zeek TSV header: notice.log must be written as JSON (redef LogAscii::use_json = T)",
        )
    record, problem = _decode(line)
    if record is None:
        return Selection(Verdict.INVALID, problem)
    return _RULES[fmt](record, min_level)
