"""Elastic Security alert documents (ECS + Kibana alert fields) as the documented webhook body sends them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.alerts.helpers import OUTSIDER, RECEIVED, VM_A, VM_V6, one
from vmportal.alerts import AddressRole, AlertFormat, ParseError, match_vm, parse
from vmportal.alerts.model import Category, Severity

# An Elastic Defend malware alert, nested the way the ECS documentation shows fields.
ENDPOINT_MALWARE: dict[str, Any] = {
    "@timestamp": "2026-03-16T05:51:54.380Z",
    "event": {
        "kind": "alert",
        "category": ["malware", "intrusion_detection", "file"],
        "module": "endpoint",
        "dataset": "endpoint.alerts",
        "id": "NkVdaW3uXq0Bqz3Y+++++Aa1",
    },
    "kibana": {
        "alert": {
            "uuid": "5d0f1a8c2b6e4f3c9a7b1e2d3c4f5a6b",
            "severity": "critical",
            "risk_score": 99,
            "status": "active",
            "reason": "malware, intrusion_detection, file event with process w3wp.exe, on JWC-WEB01",
            "rule": {"name": "Malware Detection Alert", "rule_id": "9a1a2dae-0b5f-4c3d-8305-a268d404c306"},
        }
    },
    "host": {"name": "JWC-WEB01", "ip": [VM_A, "fe80::5054:ff:fe12:3456"], "os": {"family": "windows"}},
    "file": {"path": "C:\\inetpub\\wwwroot\\upload\\x.aspx", "hash": {"sha256": "ab" * 32}},
    "process": {"command_line": "c:\\windows\\system32\\inetsrv\\w3wp.exe -ap DefaultAppPool"},
}


def test_endpoint_malware_is_a_virus_on_the_host() -> None:
    alert = one("elastic", ENDPOINT_MALWARE)
    assert alert.format is AlertFormat.ELASTIC
    assert alert.category is Category.VIRUS
    assert alert.severity is Severity.CRITICAL
    assert alert.external_id == "5d0f1a8c2b6e4f3c9a7b1e2d3c4f5a6b"
    assert alert.title == "Malware Detection Alert"
    assert [(a.ip, a.role) for a in alert.addresses] == [
        (VM_A, AddressRole.HOST),
        ("fe80::5054:ff:fe12:3456", AddressRole.HOST),
    ]
    assert alert.target_host == "jwc-web01"
    assert alert.subject_roles == {AddressRole.HOST}
    assert alert.evidence["file_path"].endswith("x.aspx")
    assert not alert.resolved
    found = match_vm(alert, {}, {"jwc-web01": "vm-9"})  # by hostname alone
    assert found is not None and found.vm == "vm-9" and found.via == "hostname" and found.accused


def test_flat_dotted_keys_as_kibana_stores_them() -> None:
    record = {
        "@timestamp": "2026-03-16T05:52:00.000Z",
        "event.kind": "signal",
        "event.category": ["malware"],
        "kibana.alert.uuid": "c0ffee",
        "kibana.alert.rule.name": "Cobalt Strike Beacon Trojan detected",
        "kibana.alert.severity": "high",
        "host.name": "oa-app02",
        "host.ip": VM_A,
    }
    alert = one("elastic", record)
    assert alert.category is Category.TROJAN
    assert alert.severity is Severity.HIGH
    assert alert.external_id == "c0ffee"


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("China Chopper Webshell Activity", Category.WEBSHELL),
        ("Linux Rootkit Module Loaded", Category.BACKDOOR),
        ("Possible RAT Remote Access Tool", Category.TROJAN),
        ("Rate-limited ransomware behaviour", Category.VIRUS),  # "Rate" is not "RAT"
    ],
)
def test_malware_subcategories_from_the_rule_name(name: str, category: Category) -> None:
    record = copy.deepcopy(ENDPOINT_MALWARE)
    record["kibana"]["alert"]["rule"]["name"] = name
    record["kibana"]["alert"]["reason"] = "file event"
    assert one("elastic", record).category is category


def test_mustache_rendered_lists_and_risk_score_as_text() -> None:
    # {{event.category}} and {{host.ip}} render lists comma-joined; {{kibana.alert.risk_score}} as text.
    record = {
        "@timestamp": "2026-03-16T05:53:00.000Z",
        "event": {"kind": "alert", "category": "intrusion_detection,network", "id": ""},
        "kibana.alert.uuid": "abc-123",
        "kibana.alert.rule.name": "Potential SSH Brute Force Detected",
        "kibana.alert.severity": "",
        "kibana.alert.risk_score": "47",
        "host": {"name": "", "ip": f"{VM_A},{VM_V6}"},
        "source": {"ip": ""},
        "destination": {"ip": ""},
    }
    alert = one("elastic", record)
    assert alert.category is Category.ATTACK
    assert alert.severity is Severity.MEDIUM  # 47 is Kibana's top of "medium"
    assert [a.ip for a in alert.addresses] == [VM_A, VM_V6]
    assert alert.subject_roles == {AddressRole.HOST}  # no intruder address: the host itself


def test_network_intrusion_accuses_the_source_not_the_destination_vm() -> None:
    record = {
        "@timestamp": "2026-03-16T05:54:00.000Z",
        "event": {"kind": "alert", "category": ["intrusion_detection", "network"]},
        "kibana": {
            "alert": {"uuid": "u-1", "severity": "high", "rule": {"name": "Log4Shell exploitation attempt"}}
        },
        "source": {"ip": OUTSIDER},
        "destination": {"ip": VM_A},
    }
    alert = one("elastic", record)
    assert alert.subject_roles == {AddressRole.SRC}
    found = match_vm(alert, {VM_A: "web"})
    assert found is not None and found.role is AddressRole.DST and not found.accused


@pytest.mark.parametrize(
    ("score", "severity"),
    [
        (0, Severity.LOW),
        (21, Severity.LOW),
        (22, Severity.MEDIUM),
        (48, Severity.HIGH),
        (73, Severity.HIGH),
        (74, Severity.CRITICAL),
    ],
)
def test_risk_score_bands(score: int, severity: Severity) -> None:
    record = copy.deepcopy(ENDPOINT_MALWARE)
    del record["kibana"]["alert"]["severity"]
    record["kibana"]["alert"]["risk_score"] = score
    assert one("elastic", record).severity is severity


def test_recovered_alert_is_resolved_and_ids_fall_back() -> None:
    record = copy.deepcopy(ENDPOINT_MALWARE)
    record["kibana"]["alert"]["status"] = "recovered"
    del record["kibana"]["alert"]["uuid"]
    alert = one("elastic", record)
    assert alert.resolved
    assert alert.external_id == "NkVdaW3uXq0Bqz3Y+++++Aa1"  # event.id
    del record["event"]["id"]
    assert one("elastic", record).external_id.startswith("sha256:")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["event"].update(kind="event"), "field 'event.kind' is 'event': only alert documents"),
        (
            lambda r: r["kibana"]["alert"].update(severity="urgent"),
            "must be one of low, medium, high, critical",
        ),
        (
            lambda r: [r["kibana"]["alert"].pop(k) for k in ("severity", "risk_score")],
            "kibana.alert.severity' is missing",
        ),
        (
            lambda r: [r["kibana"]["alert"].pop("severity"), r["kibana"]["alert"].update(risk_score=150)],
            "from 0 to 100",
        ),
    ],
)
def test_broken_documents(change: Any, message: str) -> None:
    record = copy.deepcopy(ENDPOINT_MALWARE)
    change(record)
    with pytest.raises(ParseError, match=message):
        parse("elastic", record, source="kibana", received_at=RECEIVED)
