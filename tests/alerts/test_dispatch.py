"""The dispatcher: one record, arrays, JSON lines, format detection, and bodies that are not records."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.alerts.helpers import RECEIVED
from tests.alerts.test_alertmanager import GROUP
from tests.alerts.test_elastic import ENDPOINT_MALWARE
from tests.alerts.test_suricata import C2_BEACON, WEB_ATTACK
from tests.alerts.test_wazuh import TROJANED_FILE, VIRUSTOTAL
from tests.alerts.test_zeek import MALWARE_HASH
from vmportal.alerts import AlertFormat, BatchParseError, ParseError, detect_format, parse, parse_batch
from vmportal.alerts.parsers import parse_record


def ndjson(*records: Any) -> bytes:
    return b"\n".join(json.dumps(r).encode() for r in records) + b"\n"


@pytest.mark.parametrize(
    ("record", "fmt"),
    [
        (C2_BEACON, AlertFormat.SURICATA),
        (VIRUSTOTAL, AlertFormat.WAZUH),
        ({"rule_id": "87105", "pretext": "WAZUH Alert", "all_fields": VIRUSTOTAL}, AlertFormat.WAZUH),
        (MALWARE_HASH, AlertFormat.ZEEK),
        (ENDPOINT_MALWARE, AlertFormat.ELASTIC),
        (GROUP, AlertFormat.ALERTMANAGER),
    ],
)
def test_detect_format_and_generic_sources(record: dict[str, Any], fmt: AlertFormat) -> None:
    assert detect_format(record) is fmt
    alerts = parse("generic", json.dumps(record).encode(), source="anything", received_at=RECEIVED)
    assert alerts and all(a.format is fmt for a in alerts)


def test_a_record_no_parser_understands() -> None:
    record = {"hostname": "x", "message": "something happened", "level": "error"}
    with pytest.raises(ParseError) as caught:
        detect_format(record)
    assert "no parser recognises this record" in caught.value.reason
    assert "its fields: hostname, level, message" in caught.value.reason
    batch = parse_batch("generic", record, source="g", received_at=RECEIVED)
    assert batch.alerts == () and batch.errors[0].index == 0 and batch.errors[0].code == "not_understood"


def test_a_source_of_the_wrong_kind_is_told_so() -> None:
    with pytest.raises(ParseError) as caught:
        parse("suricata", VIRUSTOTAL, source="ids", received_at=RECEIVED)
    assert "looks like wazuh, but this source is registered as suricata" in caught.value.reason


def test_one_record_an_array_and_json_lines_give_the_same_alerts() -> None:
    one = parse("suricata", json.dumps(C2_BEACON).encode(), source="s", received_at=RECEIVED)
    array = parse("suricata", json.dumps([C2_BEACON, WEB_ATTACK]).encode(), source="s", received_at=RECEIVED)
    lines = parse("suricata", ndjson(C2_BEACON, WEB_ATTACK), source="s", received_at=RECEIVED)
    crlf = parse(
        "suricata", ndjson(C2_BEACON, WEB_ATTACK).replace(b"\n", b"\r\n"), source="s", received_at=RECEIVED
    )
    objects = parse("suricata", [C2_BEACON, WEB_ATTACK], source="s", received_at=RECEIVED)
    assert [a.external_id for a in one] == ["1718234987123456:2027512:0"]
    assert [a.external_id for a in array] == [a.external_id for a in lines] == [a.external_id for a in crlf]
    assert [a.external_id for a in objects] == [a.external_id for a in array]
    assert len(array) == 2


def test_json_lines_with_one_bad_line_keep_the_good_ones() -> None:
    body = (
        json.dumps(VIRUSTOTAL).encode()
        + b'\n{"rule": {"level": 12, "id": "87105"\n'  # cut short: not JSON
        + json.dumps({"event": "login", "user": "root"}).encode()  # JSON, but no Wazuh alert
        + b"\n\n"
        + json.dumps(TROJANED_FILE).encode()
        + b"\n"
    )
    batch = parse_batch("wazuh", body, source="wazuh", received_at=RECEIVED)
    assert batch.records == 4
    assert [a.external_id for a in batch.alerts] == [VIRUSTOTAL["id"], TROJANED_FILE["id"]]
    bad_json, not_wazuh = batch.errors
    assert (bad_json.index, bad_json.code) == (1, "malformed_json")
    assert "not JSON" in bad_json.reason and str(bad_json).startswith("record 1: ")
    assert bad_json.raw == b'{"rule": {"level": 12, "id": "87105"'
    assert (not_wazuh.index, not_wazuh.code) == (2, "not_understood")
    assert "wazuh: field 'rule' is missing" in not_wazuh.reason
    assert not_wazuh.raw == b'{"event": "login", "user": "root"}'
    assert not batch.ok

    with pytest.raises(BatchParseError) as caught:
        parse("wazuh", body, source="wazuh", received_at=RECEIVED)
    assert len(caught.value.alerts) == 2 and len(caught.value.errors) == 2
    assert caught.value.code == "not_understood"
    assert "2 of 4 records not understood: record 1: not JSON" in str(caught.value)


def test_array_elements_fail_one_by_one() -> None:
    batch = parse_batch("generic", [C2_BEACON, 42, ["nested"], {"x": 1}], source="g", received_at=RECEIVED)
    assert len(batch.alerts) == 1
    assert [(e.index, e.reason[:40]) for e in batch.errors] == [
        (1, "a record must be a JSON object, got a nu"),
        (2, "a record must be a JSON object, got an a"),
        (3, "no parser recognises this record: it is "),
    ]
    assert batch.errors[1].raw == b'["nested"]'


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        (b"", "malformed_json", "the body is empty"),
        (b"  \n\t", "malformed_json", "the body is empty"),
        (b"\xff\xfe{}", "malformed_json", "not UTF-8"),
        (b'{"event_type": "alert",', "malformed_json", "not JSON: Expecting property name"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed_json", "nested too deeply"),
        (b"1" * 5000, "malformed_json", "not JSON that can be read"),
    ],
)
def test_bodies_that_are_not_records(body: bytes, code: str, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_batch("generic", body, source="g", received_at=RECEIVED)
    assert caught.value.code == code and reason in caught.value.reason and caught.value.index is None


def test_a_scalar_body_is_one_record_that_is_not_an_object() -> None:
    batch = parse_batch("generic", b'"hello"', source="g", received_at=RECEIVED)
    assert batch.errors[0].reason == "a record must be a JSON object, got a string"


def test_utf8_bom_and_chinese_text_are_fine() -> None:
    record = dict(TROJANED_FILE, full_log="Trojaned version of file '/usr/bin/登录' detected.")
    body = b"\xef\xbb\xbf" + json.dumps(record, ensure_ascii=False).encode()
    (alert,) = parse("wazuh", body, source="w", received_at=RECEIVED)
    assert "登录" in alert.evidence["full_log"]


def test_too_many_records() -> None:
    with pytest.raises(ParseError) as caught:
        parse_batch("generic", [{}] * 11, source="g", received_at=RECEIVED, max_records=10)
    assert caught.value.code == "too_many_records"


def test_an_unknown_source_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        parse_record("snort", C2_BEACON, source="x", received_at=RECEIVED)


def test_alerts_serialise_to_json() -> None:
    for record in (C2_BEACON, VIRUSTOTAL, MALWARE_HASH, ENDPOINT_MALWARE, GROUP):
        for alert in parse("generic", record, source="g", received_at=RECEIVED):
            data = json.loads(json.dumps(alert.as_dict()))
            assert data["received_at"] == "2026-03-16T06:00:00+00:00"
            assert data["format"] == alert.format.value


# --- never a crash: anything parses or is a ParseError ---------------------------------------------

KINDS = st.sampled_from(["generic", "suricata", "wazuh", "zeek", "elastic", "alertmanager"])
FIELD_NAMES = st.sampled_from(
    [
        "event_type",
        "alert",
        "signature_id",
        "signature",
        "severity",
        "category",
        "metadata",
        "src_ip",
        "dest_ip",
        "flow_id",
        "tx_id",
        "http",
        "hostname",
        "tls",
        "sni",
        "rule",
        "level",
        "id",
        "groups",
        "agent",
        "ip",
        "name",
        "data",
        "srcip",
        "virustotal",
        "malicious",
        "all_fields",
        "rule_id",
        "pretext",
        "note",
        "ts",
        "uid",
        "src",
        "dst",
        "id.orig_h",
        "msg",
        "sub",
        "sources",
        "event",
        "kind",
        "kibana.alert.uuid",
        "kibana",
        "risk_score",
        "host",
        "source",
        "alerts",
        "labels",
        "status",
        "startsAt",
        "fingerprint",
        "version",
        "groupKey",
        "receiver",
        "instance",
        "vm_ip",
        "@timestamp",
        "full_log",
        "title",
        "direction",
        "target",
        "signature_severity",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "alert",
            "10.20.1.15",
            "::1",
            "[::1]:9100",
            "firing",
            "resolved",
            "4",
            "1",
            "Scan::Port_Scan",
            "critical",
            "000",
            "Trojaned version of file",
            "malware",
            "attack",
        ]
    )
)
JSONISH = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(FIELD_NAMES | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=30,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=KINDS, record=st.dictionaries(FIELD_NAMES, JSONISH, max_size=10))
def test_any_record_parses_or_is_a_parse_error(kind: str, record: dict[str, Any]) -> None:
    batch = parse_batch(kind, record, source="fuzz", received_at=RECEIVED)
    assert len(batch.alerts) + len(batch.errors) >= 1 or kind in ("generic", "alertmanager")
    for alert in batch.alerts:
        json.dumps(alert.as_dict(), allow_nan=False)  # evidence stays storable JSON


@settings(max_examples=300, deadline=None)
@given(kind=KINDS, body=st.binary(max_size=300))
def test_any_bytes_parse_or_raise_parse_error(kind: str, body: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_batch(kind, body, source="fuzz", received_at=RECEIVED)


@settings(max_examples=100, deadline=None)
@given(kind=KINDS, lines=st.lists(JSONISH.map(json.dumps) | st.text(max_size=40), min_size=2, max_size=5))
def test_any_json_lines_parse_or_raise_parse_error(kind: str, lines: list[str]) -> None:
    try:
        batch = parse_batch(kind, "\n".join(lines).encode(), source="fuzz", received_at=RECEIVED)
    except ParseError:
        return
    for error in batch.errors:
        assert error.index is not None


VALID = [
    C2_BEACON,
    WEB_ATTACK,
    VIRUSTOTAL,
    TROJANED_FILE,
    MALWARE_HASH,
    ENDPOINT_MALWARE,
    GROUP,
    {"rule_id": "87105", "pretext": "WAZUH Alert", "all_fields": VIRUSTOTAL},
]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        out.append((*prefix, key))
        out.extend(_paths(child, (*prefix, key)))
    return out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(min_value=0, max_value=len(VALID) - 1),
    picks=st.lists(
        st.tuples(st.integers(min_value=0, max_value=10_000), JSONISH, st.booleans()), min_size=1, max_size=3
    ),
)
def test_valid_records_with_fields_broken_parse_or_are_parse_errors(
    which: int, picks: list[tuple[int, Any, bool]]
) -> None:
    record = json.loads(json.dumps(VALID[which]))
    for index, value, delete in picks:
        paths = _paths(record)
        if not paths:
            break
        *parents, last = paths[index % len(paths)]
        node = record
        for key in parents:
            node = node[key]
        if delete and isinstance(node, dict):
            del node[last]
        else:
            node[last] = value
    batch = parse_batch("generic", record, source="fuzz", received_at=RECEIVED)
    for alert in batch.alerts:
        json.dumps(alert.as_dict(), allow_nan=False)
    for error in batch.errors:
        assert error.reason and error.index == 0


def test_a_broken_pretty_printed_document_is_one_error_not_one_per_line() -> None:
    body = json.dumps(C2_BEACON, indent=2).replace('"alert",', '"alert"').encode()
    with pytest.raises(ParseError) as caught:
        parse_batch("suricata", body, source="s", received_at=RECEIVED)
    assert caught.value.code == "malformed_json" and caught.value.reason.startswith(
        "not JSON: Expecting ',' delimiter"
    )
