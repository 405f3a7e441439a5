"""Wazuh alerts.json records and the Shuffle integration's wrapper, written from Wazuh's documentation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.alerts.helpers import OUTSIDER, RECEIVED, VM_A, VM_B, one
from vmportal.alerts import AddressRole, AlertFormat, ParseError, match_vm, parse, parse_batch
from vmportal.alerts.model import Category, Confidence, Severity

AGENT = {"id": "003", "name": "jwc-web01", "ip": VM_A}

# VirusTotal integration: a file FIM saw was found malicious (rule 87105).
VIRUSTOTAL: dict[str, Any] = {
    "timestamp": "2026-03-16T13:55:02.811+0800",
    "rule": {
        "level": 12,
        "description": "VirusTotal: Alert - /var/www/html/upload/x.php - 34 engines detected this file",
        "id": "87105",
        "mitre": {
            "id": ["T1203"],
            "tactic": ["Execution"],
            "technique": ["Exploitation for Client Execution"],
        },
        "firedtimes": 1,
        "mail": True,
        "groups": ["virustotal"],
    },
    "agent": AGENT,
    "manager": {"name": "wazuh-manager"},
    "id": "1773640502.1234567",
    "decoder": {"name": "json"},
    "data": {
        "virustotal": {
            "found": "1",
            "malicious": "1",
            "source": {
                "alert_id": "1773640490.1230001",
                "file": "/var/www/html/upload/x.php",
                "md5": "0f343b0931126a20f133d67c2b018a3b",
                "sha1": "9a7d6f3e5c1b2a4d6e8f0a1b2c3d4e5f6a7b8c9d",
            },
            "sha1": "9a7d6f3e5c1b2a4d6e8f0a1b2c3d4e5f6a7b8c9d",
            "scan_date": "2026-03-16 05:40:11",
            "positives": "34",
            "total": "62",
            "permalink": "https://www.virustotal.com/gui/file/0f343b0931126a20f133d67c2b018a3b",
        },
        "integration": "virustotal",
    },
    "location": "virustotal",
}

TROJANED_FILE: dict[str, Any] = {
    "timestamp": "2026-03-16T12:00:01.100+0800",
    "rule": {
        "level": 7,
        "description": "Host-based anomaly detection event (rootcheck).",
        "id": "510",
        "firedtimes": 3,
        "groups": ["ossec", "rootcheck"],
        "pci_dss": ["10.6.1"],
    },
    "agent": AGENT,
    "manager": {"name": "wazuh-manager"},
    "id": "1773633601.88231",
    "full_log": (
        "Trojaned version of file '/usr/bin/chsh' detected. Signature used: "
        "'bash|file\\.h|proc\\.h|/dev/ttyo|/dev/[A-Z]|/dev/[a-s,uvxz]' (Generic)."
    ),
    "decoder": {"name": "rootcheck"},
    "data": {"title": "Trojaned version of file detected.", "file": "/usr/bin/chsh"},
    "location": "rootcheck",
}


def wazuh(rule: dict[str, Any], **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "timestamp": "2026-03-16T13:00:00.000+0800",
        "rule": {"firedtimes": 1, **rule},
        "agent": AGENT,
        "manager": {"name": "wazuh-manager"},
        "id": "1773637200.4242",
        "location": "/var/log/nginx/access.log",
    }
    record.update(fields)
    return record


def test_virustotal_malicious_file_is_a_virus_on_the_agent() -> None:
    alert = one("wazuh", VIRUSTOTAL)

    assert alert.format is AlertFormat.WAZUH
    assert alert.category is Category.VIRUS
    assert alert.severity is Severity.HIGH  # level 12
    assert alert.confidence is Confidence.HIGH
    assert alert.external_id == "1773640502.1234567"
    assert [(a.ip, a.role) for a in alert.addresses] == [(VM_A, AddressRole.AGENT)]
    assert alert.target_host == "jwc-web01" and alert.target_host_role is AddressRole.AGENT
    assert alert.subject_roles == {AddressRole.AGENT, AddressRole.HOST}
    assert alert.evidence["file"] == "/var/www/html/upload/x.php"
    assert alert.evidence["virustotal_positives"] == "34"
    assert alert.evidence["mitre_ids"] == ["T1203"]
    assert alert.evidence["event_time"] == "2026-03-16T13:55:02.811+0800"

    found = match_vm(alert, {VM_A: 1})
    assert found is not None and found.vm == 1 and found.role is AddressRole.AGENT and found.accused


def test_virustotal_clean_file_is_not_a_virus() -> None:
    record = copy.deepcopy(VIRUSTOTAL)
    record["data"]["virustotal"]["malicious"] = "0"
    record["rule"].update(id="87104", level=3, description="VirusTotal: Alert - No positives found")
    alert = one("wazuh", record)
    assert alert.category is Category.OTHER and alert.severity is Severity.LOW


def test_rule_510_trojaned_file_is_a_low_confidence_trojan() -> None:
    alert = one("wazuh", TROJANED_FILE)
    assert alert.category is Category.TROJAN
    assert alert.confidence is Confidence.LOW  # it fires on ordinary binaries: a human decides
    assert alert.severity is Severity.MEDIUM
    assert alert.evidence["rootcheck_title"] == "Trojaned version of file detected."


@pytest.mark.parametrize(
    ("full_log", "title", "category", "confidence"),
    [
        (
            "Rootkit 'Suckit' detected by the presence of file '/sbin/initsk12'.",
            "Rootkit 'Suckit' detected by the presence of file '/sbin/initsk12'.",
            Category.BACKDOOR,
            Confidence.HIGH,
        ),
        (
            "Process '562' hidden from /proc. Possible kernel level rootkit.",
            "Process '562' hidden from /proc.",
            Category.BACKDOOR,
            Confidence.LOW,
        ),
        (
            "File '/dev/.hid' present on /dev. Possible hidden file.",
            "File present on /dev.",
            Category.OTHER,
            Confidence.LOW,
        ),
    ],
)
def test_rootcheck_findings(full_log: str, title: str, category: Category, confidence: Confidence) -> None:
    record = copy.deepcopy(TROJANED_FILE)
    record["full_log"] = full_log
    record["data"] = {"title": title}
    alert = one("wazuh", record)
    assert (alert.category, alert.confidence) == (category, confidence)


def test_webshell_group() -> None:
    record = wazuh(
        {
            "id": "100201",
            "level": 13,
            "description": "Web shell dropped in the web root",
            "groups": ["webshell", "syscheck"],
        },
        syscheck={"path": "/var/www/html/images/1.php", "sha256_after": "ab" * 32, "event": "added"},
        location="syscheck",
    )
    alert = one("wazuh", record)
    assert alert.category is Category.WEBSHELL
    assert alert.severity is Severity.HIGH
    assert alert.evidence["file"] == "/var/www/html/images/1.php"
    assert alert.evidence["syscheck_event"] == "added"


def test_web_attack_on_the_agent_accuses_the_remote_side_not_the_agent() -> None:
    record = wazuh(
        {
            "id": "31106",
            "level": 6,
            "description": "A web attack returned code 200 (success).",
            "groups": ["web", "accesslog", "attack"],
        },
        data={"protocol": "GET", "srcip": OUTSIDER, "id": "200", "url": "/index.php?id=1%27%20or%201=1"},
        full_log=f'{OUTSIDER} - - [16/Mar/2026:13:00:00 +0800] "GET /index.php?id=1 HTTP/1.1" 200 512',
    )
    alert = one("wazuh", record)
    assert alert.category is Category.ATTACK
    assert alert.severity is Severity.LOW
    assert alert.subject_roles == {AddressRole.SRC}
    assert {(a.ip, a.role) for a in alert.addresses} == {
        (VM_A, AddressRole.AGENT),
        (OUTSIDER, AddressRole.SRC),
    }

    found = match_vm(alert, {VM_A: "web"})
    assert found is not None and found.vm == "web" and not found.accused  # the agent is the victim


def test_sql_injection_from_one_vm_against_another_accuses_the_attacking_vm() -> None:
    record = wazuh(
        {
            "id": "31103",
            "level": 12,
            "description": "SQL injection attempt.",
            "groups": ["web", "accesslog", "attack", "sql_injection"],
        },
        data={"srcip": VM_B, "url": "/news.php?id=1+union+select+1,2"},
    )
    alert = one("wazuh", record)
    found = match_vm(alert, {VM_A: "victim", VM_B: "attacker"})
    assert found is not None and found.vm == "attacker" and found.role is AddressRole.SRC and found.accused


def test_vulnerability_detector() -> None:
    record = wazuh(
        {
            "id": "23505",
            "level": 10,
            "description": "CVE-2021-44228 affects log4j",
            "groups": ["vulnerability-detector"],
        },
        data={
            "vulnerability": {
                "cve": "CVE-2021-44228",
                "severity": "Critical",
                "package": {"name": "log4j", "version": "2.14.1"},
            }
        },
        location="vulnerability-detector",
    )
    alert = one("wazuh", record)
    assert alert.category is Category.VULNERABILITY
    assert alert.severity is Severity.MEDIUM  # from rule.level, as the mapping says
    assert alert.evidence["cve"] == "CVE-2021-44228"
    assert alert.evidence["vulnerability_severity"] == "Critical"


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (0, Severity.LOW),
        (6, Severity.LOW),
        (7, Severity.MEDIUM),
        (11, Severity.MEDIUM),
        (12, Severity.HIGH),
        (13, Severity.HIGH),
        (14, Severity.CRITICAL),
        (15, Severity.CRITICAL),
    ],
)
def test_level_to_severity(level: int, severity: Severity) -> None:
    record = wazuh({"id": "5710", "level": level, "description": "x", "groups": ["sshd"]})
    assert one("wazuh", record).severity is severity


def test_agent_000_is_the_manager_never_a_vm_target() -> None:
    record = {
        "timestamp": "2026-03-16T13:01:00.000+0800",
        "rule": {
            "level": 10,
            "description": "sshd: brute force trying to get access to the system.",
            "id": "5712",
            "groups": ["syslog", "sshd", "authentication_failures"],
            "firedtimes": 1,
        },
        "agent": {"id": "000", "name": "wazuh-manager", "ip": "10.20.0.2"},
        "manager": {"name": "wazuh-manager"},
        "id": "1773637260.5555",
        "predecoder": {"program_name": "sshd", "timestamp": "Mar 16 13:01:00", "hostname": "gate-fw01"},
        "full_log": f"Mar 16 13:01:00 gate-fw01 sshd[1234]: Failed password for root from {VM_B} port 51022",
        "data": {"srcip": VM_B, "srcport": "51022", "dstuser": "root"},
        "location": "/var/log/secure",
    }
    alert = one("wazuh", record)
    assert all(a.role is not AddressRole.AGENT for a in alert.addresses)
    assert "10.20.0.2" not in {a.ip for a in alert.addresses}
    assert alert.target_host == "gate-fw01" and alert.target_host_role is AddressRole.HOST
    assert alert.evidence["manager_is_agent"] is True
    # even if the manager's address were (wrongly) in the pool, it is not matched
    assert match_vm(alert, {"10.20.0.2": "manager"}) is None


def test_shuffle_wrapper_is_unwrapped() -> None:
    wrapped = {
        "severity": 3,
        "pretext": "WAZUH Alert",
        "title": VIRUSTOTAL["rule"]["description"],
        "text": "",
        "rule_id": "87105",
        "timestamp": VIRUSTOTAL["timestamp"],
        "id": VIRUSTOTAL["id"],
        "all_fields": VIRUSTOTAL,
    }
    alert = one("wazuh", wrapped)
    assert alert.category is Category.VIRUS
    assert alert.external_id == VIRUSTOTAL["id"]
    assert alert.evidence["wrapper"] == "shuffle"
    assert one("generic", wrapped).format is AlertFormat.WAZUH


def test_shuffle_wrapper_errors_name_the_wrapped_field() -> None:
    broken = copy.deepcopy(VIRUSTOTAL)
    del broken["rule"]["level"]
    with pytest.raises(ParseError, match=r"field 'all_fields\.rule\.level' is missing"):
        parse(
            "wazuh",
            {"rule_id": "87105", "pretext": "WAZUH Alert", "all_fields": broken},
            source="w",
            received_at=RECEIVED,
        )
    with pytest.raises(ParseError, match="all_fields' must be the Wazuh alert object"):
        parse("wazuh", {"rule_id": "1", "all_fields": "oops"}, source="w", received_at=RECEIVED)


def test_suricata_alerts_forwarded_by_wazuh_use_the_suricata_mapping() -> None:
    record = wazuh(
        {
            "id": "86601",
            "level": 3,
            "description": "Suricata: Alert - ET MALWARE Win32/Emotet CnC Activity",
            "groups": ["ids", "suricata"],
        },
        data={
            "timestamp": "2026-03-16T13:58:41.262839+0800",
            "flow_id": "1718234987123456",
            "event_type": "alert",
            "src_ip": VM_B,
            "src_port": "50432",
            "dest_ip": "203.0.113.80",
            "dest_port": "8080",
            "alert": {
                "signature_id": "2030868",
                "signature": "ET MALWARE Win32/Emotet CnC Activity (POST) M10",
                "category": "A Network Trojan was detected",
                "severity": "1",
            },
        },
        agent={"id": "001", "name": "ids-sensor", "ip": "10.20.0.9"},
    )
    alert = one("wazuh", record)
    assert alert.category is Category.TROJAN
    assert alert.severity is Severity.HIGH  # Suricata's priority 1 beats rule 86601's level 3
    found = match_vm(alert, {VM_B: "infected", "10.20.0.9": "sensor"})
    assert found is not None and found.vm == "infected" and found.accused


def test_agent_ip_that_is_not_an_address_is_kept_aside() -> None:
    record = wazuh(
        {"id": "5402", "level": 3, "description": "Successful sudo to ROOT executed.", "groups": ["sudo"]},
        agent={"id": "004", "name": "lib-db01", "ip": "any"},
    )
    alert = one("wazuh", record)
    assert alert.addresses == ()
    assert alert.evidence["not_ip_addresses"] == {"agent.ip": "any"}
    assert alert.target_host == "lib-db01"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("rule"), "wazuh: field 'rule' is missing"),
        (lambda r: r["rule"].pop("id"), "field 'rule.id' is missing"),
        (lambda r: r["rule"].update(level="high"), "field 'rule.level' must be an integer"),
        (lambda r: r["rule"].update(level=42), "field 'rule.level' must be 0 to 16"),
        (lambda r: r["rule"].update(groups={"a": 1}), "field 'rule.groups' must be a string or a list"),
    ],
)
def test_broken_records(change: Any, message: str) -> None:
    record = copy.deepcopy(VIRUSTOTAL)
    change(record)
    batch = parse_batch("wazuh", [record], source="w", received_at=RECEIVED)
    assert batch.alerts == ()
    assert message in batch.errors[0].reason
    assert batch.errors[0].index == 0


def test_missing_id_falls_back_to_a_digest() -> None:
    record = copy.deepcopy(TROJANED_FILE)
    del record["id"]
    assert one("wazuh", record).external_id.startswith("sha256:")


def test_window_key_folds_repeats_of_one_event() -> None:
    first = one("wazuh", TROJANED_FILE)
    again = one("wazuh", dict(TROJANED_FILE, id="1773676801.99999", timestamp="2026-03-17T00:00:01.000+0800"))
    assert first.external_id != again.external_id
    assert first.window_key == again.window_key == "510:003:/usr/bin/chsh"
    attack = wazuh(
        {"id": "31106", "level": 6, "description": "web attack", "groups": ["attack"]},
        data={"srcip": OUTSIDER},
    )
    assert one("wazuh", attack).window_key == f"31106:003:{OUTSIDER}"
