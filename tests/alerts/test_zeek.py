"""Zeek notice.log records (JSON writer), written from Notice::Info and the scan/intel/ssh scripts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.alerts.helpers import C2_SERVER, OUTSIDER, RECEIVED, VM_A, VM_V6, one
from vmportal.alerts import AddressRole, AlertFormat, ParseError, match_vm, parse
from vmportal.alerts.model import Category, Confidence, Severity

# Zeek's JSON writer flattens the conn id into dotted keys.
PORT_SCAN_BY_VM: dict[str, Any] = {
    "ts": 1773640800.123456,
    "note": "Scan::Port_Scan",
    "msg": f"{VM_A} scanned at least 15 unique ports of host {OUTSIDER} in 0m2s",
    "sub": "local",
    "src": VM_A,
    "dst": OUTSIDER,
    "p": 8080,
    "peer_descr": "worker-1",
    "actions": ["Notice::ACTION_LOG"],
    "suppress_for": 3600.0,
}

MALWARE_HASH: dict[str, Any] = {
    "ts": 1773640900.5,
    "uid": "CHhAvVGS1DHFjwGM9",
    "id.orig_h": VM_A,
    "id.orig_p": 49822,
    "id.resp_h": C2_SERVER,
    "id.resp_p": 80,
    "fuid": "FHVNOd3tBvnSYwoMa6",
    "file_mime_type": "application/x-dosexec",
    "file_desc": "http://203.0.113.80/update.exe",
    "proto": "tcp",
    "note": "TeamCymruMalwareHashRegistry::Match",
    "msg": "Malware Hash Registry Detection rate: 64%  Last seen: 2026-03-01 10:11:12",
    "sub": "https://www.virustotal.com/gui/search/?query=5f1b4a8a1c0a",
    "src": VM_A,
    "dst": C2_SERVER,
    "p": 80,
    "actions": ["Notice::ACTION_LOG"],
    "suppress_for": 3600.0,
}


def test_port_scan_by_a_vm_accuses_it() -> None:
    alert = one("zeek", PORT_SCAN_BY_VM)
    assert alert.format is AlertFormat.ZEEK
    assert alert.category is Category.ATTACK
    assert alert.severity is Severity.MEDIUM
    assert alert.subject_roles == {AddressRole.SRC}
    assert alert.evidence["event_time"] == "2026-03-16T06:00:00.123456+00:00"
    assert alert.evidence["p"] == 8080
    assert alert.external_id.startswith("sha256:")  # a scan notice has no connection uid
    found = match_vm(alert, {VM_A: "scanner"})
    assert found is not None and found.accused and found.field == "src"


def test_port_scan_of_a_vm_names_it_as_victim_only() -> None:
    record = dict(
        PORT_SCAN_BY_VM,
        src=OUTSIDER,
        dst=VM_A,
        msg=f"{OUTSIDER} scanned at least 15 unique ports of host {VM_A}",
    )
    alert = one("zeek", record)
    found = match_vm(alert, {VM_A: "victim"})
    assert found is not None and found.role is AddressRole.DST and not found.accused


def test_address_scan_and_password_guessing_are_high() -> None:
    sweep = {
        "ts": 1773640000.0,
        "note": "Scan::Address_Scan",
        "msg": f"{VM_A} scanned at least 25 unique hosts on port 445/tcp in 0m9s",
        "sub": "remote",
        "src": VM_A,
        "p": 445,
    }
    guessing = {
        "ts": 1773640000.0,
        "note": "SSH::Password_Guessing",
        "msg": f"{VM_A} appears to be guessing SSH passwords (seen in 30 connections).",
        "sub": "Sampled servers:  198.51.100.5, 198.51.100.6",
        "src": VM_A,
    }
    for record in (sweep, guessing):
        alert = one("zeek", record)
        assert (alert.category, alert.severity) == (Category.ATTACK, Severity.HIGH)
        assert alert.subject_roles == {AddressRole.SRC}


def test_malware_hash_match_with_its_connection() -> None:
    alert = one("zeek", MALWARE_HASH)
    assert alert.category is Category.VIRUS and alert.severity is Severity.HIGH
    assert alert.external_id == "CHhAvVGS1DHFjwGM9:TeamCymruMalwareHashRegistry::Match"
    assert {(a.ip, a.role) for a in alert.addresses} == {
        (VM_A, AddressRole.SRC),
        (C2_SERVER, AddressRole.DST),
    }
    assert alert.evidence["file_desc"] == "http://203.0.113.80/update.exe"
    assert alert.evidence["orig_p"] == 49822
    assert alert.title.startswith("TeamCymruMalwareHashRegistry::Match: Malware Hash Registry")


def test_nested_conn_id_is_read_like_the_flat_one_and_ipv6_normalised() -> None:
    record = {k: v for k, v in MALWARE_HASH.items() if not k.startswith("id.") and k not in ("src", "dst")}
    record["id"] = {"orig_h": "2001:db8:20:0:0:0:0:15", "orig_p": 49822, "resp_h": C2_SERVER, "resp_p": 80}
    alert = one("zeek", record)
    assert alert.addresses[0].ip == VM_V6 and alert.addresses[0].field == "id.orig_h"
    found = match_vm(alert, {VM_V6: "v6-vm"})
    assert found is not None and found.accused


@pytest.mark.parametrize(
    ("msg", "sub", "category", "confidence"),
    [
        (
            f"Intel hit on {C2_SERVER} at Conn::IN_RESP",
            "Feodo Tracker botnet C2 IP blocklist",
            Category.TROJAN,
            Confidence.HIGH,
        ),
        (
            "Intel hit on evil.example at DNS::IN_REQUEST",
            "abuse.ch C&C domains",
            Category.TROJAN,
            Confidence.HIGH,
        ),
        (f"Intel hit on {C2_SERVER} at Conn::IN_RESP", "spamhaus drop list", Category.OTHER, Confidence.LOW),
        # stock Zeek: sub is the indicator, whose own name says nothing about the feed
        (
            "Intel hit on cnc-panel.example at HTTP::IN_HOST_HEADER",
            "cnc-panel.example",
            Category.OTHER,
            Confidence.LOW,
        ),
    ],
)
def test_intel_notices_are_trojan_only_on_a_c2_indicator(
    msg: str, sub: str, category: Category, confidence: Confidence
) -> None:
    record = {
        "ts": 1773641000.0,
        "uid": "C4J4Th3PJpwUYZZ6gc",
        "id.orig_h": VM_A,
        "id.orig_p": 51000,
        "id.resp_h": C2_SERVER,
        "id.resp_p": 443,
        "note": "Intel::Notice",
        "msg": msg,
        "sub": sub,
        "src": VM_A,
        "dst": C2_SERVER,
    }
    alert = one("zeek", record)
    assert (alert.category, alert.confidence) == (category, confidence)


def test_intel_sources_field_names_the_feed() -> None:
    record = {
        "ts": 1773641000.0,
        "note": "Intel::Notice",
        "msg": f"Intel hit on {C2_SERVER} at Conn::IN_RESP",
        "sub": C2_SERVER,
        "src": VM_A,
        "dst": C2_SERVER,
        "sources": ["Feodo Tracker C2 servers"],
    }
    assert one("zeek", record).category is Category.TROJAN


def test_other_notes() -> None:
    vulnerable = {
        "ts": 1773641000.0,
        "note": "Software::Vulnerable_Version",
        "src": VM_A,
        "msg": f"{VM_A} is running OpenSSH 7.2p2 which is vulnerable.",
        "sub": "OpenSSH 7.2p2",
    }
    sqli = {
        "ts": 1773641000.0,
        "note": "HTTP::SQL_Injection_Attacker",
        "src": OUTSIDER,
        "msg": "An SQL injection attacker was discovered!",
    }
    cert = {
        "ts": "2026-03-16T06:10:00.000000Z",
        "uid": "Cx",
        "id.orig_h": VM_A,
        "id.resp_h": C2_SERVER,
        "note": "SSL::Invalid_Server_Cert",
        "msg": "SSL certificate validation failed with (unable to get local issuer certificate)",
    }
    assert (one("zeek", vulnerable).category, one("zeek", vulnerable).severity) == (
        Category.VULNERABILITY,
        Severity.MEDIUM,
    )
    assert one("zeek", sqli).category is Category.ATTACK
    alert = one("zeek", cert)
    assert (alert.category, alert.severity) == (Category.OTHER, Severity.LOW)
    assert alert.evidence["event_time"] == "2026-03-16T06:10:00.000000Z"  # ISO timestamps kept as written


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"ts": 1.0}, "zeek: field 'note' is missing"),
        ({"note": "Scan::Port_Scan"}, "field 'ts' is missing"),
        ({"note": "Scan::Port_Scan", "ts": True}, "field 'ts' must be a Unix time"),
        ({"note": "just text", "ts": 1.0}, "is not a Zeek notice type"),
    ],
)
def test_broken_notices(record: dict[str, Any], message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse("zeek", record, source="zeek", received_at=RECEIVED)
