"""The internal alert itself: clock, evidence limits, serialisation."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.alerts.helpers import RECEIVED, VM_A
from vmportal.alerts import AddressRole, Alert, AlertFormat, ParseError, TaggedAddress
from vmportal.alerts.model import Category, Confidence, Severity, limit_evidence, record_digest


def alert(**changes: object) -> Alert:
    fields: dict[str, object] = {
        "received_at": RECEIVED,
        "source": "s",
        "format": AlertFormat.SURICATA,
        "category": Category.TROJAN,
        "severity": Severity.HIGH,
        "confidence": Confidence.HIGH,
        "addresses": (TaggedAddress(VM_A, AddressRole.SRC, "src_ip"),),
        "subject_roles": frozenset({AddressRole.SRC}),
        "target_host": None,
        "target_host_role": None,
        "external_id": "1:2:3",
        "resolved": False,
        "title": "t",
        **changes,
    }
    return Alert(**fields)  # type: ignore[arg-type]


def test_received_at_must_be_the_portals_aware_clock() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        alert(received_at=datetime(2026, 3, 16, 6, 0))


def test_alert_is_frozen_and_hashable_without_its_evidence() -> None:
    a = alert(evidence={"x": [1]})
    with pytest.raises(AttributeError):
        a.title = "other"  # type: ignore[misc]
    assert hash(a) == hash(alert(evidence={"y": 2}))
    assert a.subject_addresses == a.addresses


def test_as_dict_is_plain_json() -> None:
    data = alert(evidence={"signature": "ET MALWARE x"}).as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["addresses"] == [{"ip": VM_A, "role": "src", "field": "src_ip"}]
    assert (
        data["subject_roles"] == ["src"] and data["severity"] == "high" and data["target_host_role"] is None
    )


def test_limit_evidence() -> None:
    evidence = {
        "keep": "short",
        "empty": "",
        "none": None,
        "long": "x" * 5000,
        "nan": float("nan"),
        "deep": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}},
        "many": list(range(100)),
        "object": object(),
    }
    out = limit_evidence(evidence)
    assert "empty" not in out and "none" not in out
    assert out["long"].startswith("x" * 1024) and out["long"].endswith("[3976 more characters]")
    assert out["nan"] == "nan"
    assert "nested too deep" in json.dumps(out["deep"])
    assert len(out["many"]) == 51 and out["many"][-1] == "…[50 more items]"
    assert isinstance(out["object"], str)
    json.dumps(out, allow_nan=False)


def test_limit_evidence_drops_the_largest_entries_past_the_byte_limit() -> None:
    out = limit_evidence({"a": "1" * 900, "b": "2" * 900, "c": "small"}, max_bytes=1200)
    assert out["_dropped"] == ["a"] and out["c"] == "small"
    assert len(json.dumps(out)) <= 1200


def test_record_digest_ignores_key_order() -> None:
    assert record_digest({"a": 1, "b": [1, 2]}) == record_digest({"b": [1, 2], "a": 1})
    assert record_digest({"a": 1}) != record_digest({"a": 2})


def test_parse_error_placed_in_a_batch() -> None:
    error = ParseError("zeek: field 'note' is missing", field="note")
    placed = error.at(3, b"{}")
    assert str(placed) == "record 3: zeek: field 'note' is missing"
    assert placed.as_dict() == {"index": 3, "code": "not_understood", "field": "note", "reason": error.reason}
    assert error.index is None  # the original is untouched
