"""Turn a posted body into internal alerts: one record, a JSON array of records, or JSON lines.

:func:`parse_batch` never raises for a record: the records it understood become alerts, each one it
did not becomes a :class:`ParseError` carrying the record's index, the reason and the raw record, so the
caller can store good and bad alike and answer 422 naming the bad ones. Only a body that is not
records at all (not UTF-8, not JSON, empty, too many records) raises. :func:`parse` is the strict form:
it returns the alerts, or raises :class:`BatchParseError` holding both the alerts and the errors.

A body is one JSON document (an object is one record, an array is its elements) or, when it is not,
JSON lines: each non-empty line a record, so one bad line costs only itself. A body whose lines hold
no JSON object at all is one broken document, reported once with its line and column.

A source registered as ``generic`` gets each record's format detected (:func:`detect_format`); a
source registered as one format gets only that format's parser, and an error tells the operator when
the record looks like another format (a source registered with the wrong kind).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vmportal.alerts.model import Alert, AlertFormat, ParseError, SourceKind
from vmportal.alerts.parsers import alertmanager, elastic, suricata, wazuh, zeek
from vmportal.alerts.parsers._common import Context

__all__ = [
    "MAX_RAW_RECORD_BYTES",
    "MAX_RECORDS",
    "BatchParseError",
    "ParsedBatch",
    "detect_format",
    "parse",
    "parse_batch",
    "parse_record",
]

MAX_RECORDS = 10_000  # per body; the API's byte limit usually bites first
MAX_RAW_RECORD_BYTES = 64 * 1024  # how much of a bad record an error carries for the caller to keep

Parser = Callable[[Mapping[str, Any], Context], list[Alert | ParseError]]


def _plain(parse_one: Callable[[Mapping[str, Any], Context], list[Alert]]) -> Parser:
    def run(record: Mapping[str, Any], ctx: Context) -> list[Alert | ParseError]:
        return list(parse_one(record, ctx))

    return run


PARSERS: dict[AlertFormat, Parser] = {
    AlertFormat.SURICATA: _plain(suricata.parse),
    AlertFormat.WAZUH: _plain(wazuh.parse),
    AlertFormat.ZEEK: _plain(zeek.parse),
    AlertFormat.ELASTIC: _plain(elastic.parse),
    AlertFormat.ALERTMANAGER: alertmanager.parse_each,
}


def _describe(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__


def _guess(record: Mapping[str, Any]) -> AlertFormat | None:
    if alertmanager.looks_like_alertmanager(record):
        return AlertFormat.ALERTMANAGER
    if "event_type" in record and ("alert" in record or "src_ip" in record or "flow_id" in record):
        return AlertFormat.SURICATA
    if wazuh.is_shuffle_wrapper(record) or wazuh.looks_like_wazuh(record):
        return AlertFormat.WAZUH
    if zeek.looks_like_zeek(record):
        return AlertFormat.ZEEK
    if elastic.looks_like_elastic(record):
        return AlertFormat.ELASTIC
    return None


def detect_format(record: object) -> AlertFormat:
    """The format of one decoded record, from the fields only that format has; ParseError if none fits."""
    if not isinstance(record, Mapping):
        raise ParseError(f"a record must be a JSON object, got {_describe(record)}")
    found = _guess(record)
    if found is None:
        keys = ", ".join(sorted(str(k) for k in record)[:12]) or "none"
        raise ParseError(
            "no parser recognises this record: it is not a Suricata EVE alert (event_type, alert), "
            "a Wazuh alert (rule.level with agent or manager, or the Shuffle wrapper's all_fields), "
            "a Zeek notice (note, ts), an Elastic alert (kibana.alert.uuid or event.kind 'alert' with "
            f"@timestamp) or an Alertmanager payload (alerts with groupKey or receiver); its fields: {keys}"
        )
    return found


def parse_record(
    kind: SourceKind | str, record: object, *, source: str, received_at: datetime
) -> list[Alert | ParseError]:
    """The alerts of one decoded record (several for an Alertmanager payload, each alone).

    Raises ParseError when the record as a whole is not understood; an Alertmanager alert that is
    broken on its own comes back as a ParseError in the list, beside its group's good alerts.
    """
    kind = SourceKind(kind)
    if not isinstance(record, Mapping):
        raise ParseError(f"a record must be a JSON object, got {_describe(record)}")
    ctx = Context(source=source, received_at=received_at)
    fmt = detect_format(record) if kind is SourceKind.GENERIC else AlertFormat(kind.value)
    try:
        return PARSERS[fmt](record, ctx)
    except ParseError as error:
        guessed = _guess(record)
        if kind is not SourceKind.GENERIC and guessed is not None and guessed is not fmt:
            raise ParseError(
                f"{error.reason} (the record looks like {guessed.value}, but this source is registered "
                f"as {kind.value})",
                code=error.code,
                field=error.field,
            ) from None
        raise
    except RecursionError:
        raise ParseError("the record is nested too deeply to read") from None


@dataclass(frozen=True)
class ParsedBatch:
    alerts: tuple[Alert, ...]
    errors: tuple[ParseError, ...]  # each with .index (the record's position) and .raw (its bytes)
    records: int  # how many records the body held

    @property
    def ok(self) -> bool:
        return not self.errors


class BatchParseError(ParseError):
    """Some records of a body were not understood; ``alerts`` are the ones that were."""

    def __init__(self, batch: ParsedBatch) -> None:
        self.batch = batch
        self.alerts = batch.alerts
        self.errors = batch.errors
        reasons = "; ".join(str(e) for e in batch.errors[:5])
        more = f"; and {len(batch.errors) - 5} more" if len(batch.errors) > 5 else ""
        code = "malformed_json" if all(e.code == "malformed_json" for e in batch.errors) else "not_understood"
        super().__init__(
            f"{len(batch.errors)} of {batch.records} records not understood: {reasons}{more}", code=code
        )


def _raw(value: object) -> bytes:
    data = value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False, default=str).encode()
    return data[:MAX_RAW_RECORD_BYTES]


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise ParseError("the JSON is nested too deeply to read", code="malformed_json") from None
    except json.JSONDecodeError as error:
        raise ParseError(
            f"not JSON: {error.msg} at line {error.lineno} column {error.colno}", code="malformed_json"
        ) from None
    except ValueError as error:  # e.g. an integer longer than Python converts
        raise ParseError(f"not JSON that can be read: {error}", code="malformed_json") from None


def split_records(body: bytes | str | Mapping[str, Any] | Sequence[Any]) -> list[tuple[Any, bytes]]:
    """The body's records with the raw bytes of each; a record that is not JSON is its ParseError.

    Raises ParseError when the body is not records at all.
    """
    if isinstance(body, Mapping):
        return [(body, _raw(body))]
    if isinstance(body, list | tuple):
        return [(item, _raw(item)) for item in body]
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
    else:
        raise TypeError(f"cannot read a body of type {type(body).__name__}")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ParseError(f"the body is not UTF-8 text (byte {error.start})", code="malformed_json") from None
    if not text.strip():
        raise ParseError("the body is empty", code="malformed_json")
    try:
        whole = _decode(text)
    except ParseError as whole_error:
        lines = [line for line in data.splitlines() if line.strip()]
        if len(lines) <= 1:
            raise whole_error from None
        out: list[tuple[Any, bytes]] = []
        for line in lines:
            try:
                out.append((_decode(line.decode("utf-8")), line[:MAX_RAW_RECORD_BYTES]))
            except ParseError as line_error:
                out.append((line_error, line[:MAX_RAW_RECORD_BYTES]))
        if not any(isinstance(record, Mapping | list) for record, _ in out):
            # Not JSON lines but one broken document (pretty-printed, say): say where it broke.
            raise whole_error from None
        return out
    if isinstance(whole, list):
        return [(item, _raw(item)) for item in whole]
    return [(whole, data[:MAX_RAW_RECORD_BYTES])]


def parse_batch(
    kind: SourceKind | str,
    body: bytes | str | Mapping[str, Any] | Sequence[Any],
    *,
    source: str,
    received_at: datetime,
    max_records: int = MAX_RECORDS,
) -> ParsedBatch:
    """Every record of a body: the alerts of those understood, a ParseError (with index) for each other.

    Raises ParseError only when the body as a whole is not records (code ``malformed_json``) or holds
    more than ``max_records`` (code ``too_many_records``).
    """
    kind = SourceKind(kind)
    records = split_records(body)
    if len(records) > max_records:
        raise ParseError(
            f"the body holds {len(records)} records; at most {max_records} are read at once",
            code="too_many_records",
        )
    alerts: list[Alert] = []
    errors: list[ParseError] = []
    for index, (record, raw) in enumerate(records):
        if isinstance(record, ParseError):
            errors.append(record.at(index, raw))
            continue
        try:
            results = parse_record(kind, record, source=source, received_at=received_at)
        except ParseError as error:
            errors.append(error.at(index, raw))
            continue
        for result in results:
            if isinstance(result, ParseError):
                errors.append(result.at(index, raw))
            else:
                alerts.append(result)
    return ParsedBatch(tuple(alerts), tuple(errors), len(records))


def parse(
    kind: SourceKind | str,
    body: bytes | str | Mapping[str, Any] | Sequence[Any],
    *,
    source: str,
    received_at: datetime,
) -> list[Alert]:
    """All alerts of a body, or :class:`BatchParseError` (with the good alerts) if any record failed."""
    batch = parse_batch(kind, body, source=source, received_at=received_at)
    if batch.errors:
        raise BatchParseError(batch)
    return list(batch.alerts)
