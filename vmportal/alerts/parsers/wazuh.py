"""Wazuh (OSSEC) ``alerts.json`` records, bare or as Wazuh's bundled Shuffle integration wraps them.

Wazuh does not post by itself: its integrator runs a script with the alert file, a key and a URL.
The Shuffle script posts ``{severity, pretext, title, text, rule_id, timestamp, id, all_fields}``
where ``all_fields`` is the alert; a custom script may post the alert as it is. Both are read here.

Category (documentation.wazuh.com, ruleset groups), first match wins:

* group ``virustotal`` with ``data.virustotal.malicious`` = 1 (rule 87105) → virus;
* group ``webshell`` → webshell;
* rootcheck (group ``rootcheck`` or rule 510): "Trojaned version of file" → trojan with LOW confidence
  (it fires on ordinary binaries after an upgrade: an incident for a human, never a suspension alone);
  a rootkit named by its signature files ("Rootkit 'x' detected …") → backdoor; a *possible* rootkit
  from the anomaly checks (a process hidden from /proc, a hidden port) → backdoor with LOW confidence,
  because those checks race with short-lived processes; any other rootcheck finding → other, LOW;
* Suricata alerts Wazuh forwards (``data.alert.signature``) → the Suricata mapping;
* groups ``attack``, ``sql_injection``, ``web_scan`` → attack;
* group ``vulnerability-detector`` → vulnerability; anything else → other.

``external_id`` is the alert's ``id``; ``window_key`` is ``rule.id:agent.id:<file or srcip>``, under
which the caller folds repeats of one event within a time window (Wazuh numbers each repeat anew).

Severity from ``rule.level``: 14 and above critical, 12–13 high, 7–11 medium, below 7 low.

Who is accused: the host the agent runs on (``agent.ip``, ``agent.name``) for what happens on it; for
an attack, the remote side ``data.srcip`` (the agent is the one attacked). Agent ``000`` is the Wazuh
manager itself, never a VM target: its address is not tagged, and for logs it received by syslog the
sending host (``predecoder.hostname``) is the host named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vmportal.alerts.model import (
    AddressRole,
    Alert,
    AlertFormat,
    Category,
    Confidence,
    Severity,
    limit_evidence,
    normalise_host,
    record_digest,
)
from vmportal.alerts.parsers import suricata
from vmportal.alerts.parsers._common import Addresses, Context, Reader

FORMAT = AlertFormat.WAZUH
MANAGER_AGENT_ID = "000"
ROOTCHECK_RULE = "510"
_ATTACK_GROUPS = frozenset({"attack", "sql_injection", "web_scan"})
_ROOTKIT_SIGNATURE = re.compile(r"rootkit\s+'[^']+'\s+detected", re.IGNORECASE)


def is_shuffle_wrapper(record: Mapping[str, Any]) -> bool:
    return isinstance(record.get("all_fields"), Mapping) and ("rule_id" in record or "pretext" in record)


def looks_like_wazuh(record: Mapping[str, Any]) -> bool:
    rule = record.get("rule")
    return isinstance(rule, Mapping) and "level" in rule and ("agent" in record or "manager" in record)


def severity_of(level: int) -> Severity:
    if level >= 14:
        return Severity.CRITICAL
    if level >= 12:
        return Severity.HIGH
    if level >= 7:
        return Severity.MEDIUM
    return Severity.LOW


def _truthy_one(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


def _rootcheck(text: str) -> tuple[Category, Confidence]:
    lowered = text.lower()
    if "trojaned version of file" in lowered:
        return Category.TROJAN, Confidence.LOW
    if _ROOTKIT_SIGNATURE.search(text):
        return Category.BACKDOOR, Confidence.HIGH
    if "rootkit" in lowered:
        return Category.BACKDOOR, Confidence.LOW
    return Category.OTHER, Confidence.LOW


def parse(record: Mapping[str, Any], ctx: Context) -> list[Alert]:
    wrapper = None
    if "all_fields" in record and not isinstance(record["all_fields"], Mapping):
        raise Reader(FORMAT, record).fail("all_fields", "must be the Wazuh alert object (Shuffle wrapper)")
    if is_shuffle_wrapper(record):
        wrapper = "shuffle"
        record = record["all_fields"]
        reader = Reader(FORMAT, record, prefix="all_fields.")
    else:
        reader = Reader(FORMAT, record)

    reader.mapping("rule", required=True)
    rule_id = reader.req_text("rule.id", max_len=20)
    level = reader.req_integer("rule.level")
    if not 0 <= level <= 16:
        raise reader.fail("rule.level", f"must be 0 to 16, got {level}")
    description = reader.text("rule.description") or f"Wazuh rule {rule_id}"
    groups = [g.lower() for g in reader.strings("rule.groups")]
    agent_id = reader.text("agent.id", max_len=20)
    is_manager = agent_id == MANAGER_AGENT_ID

    addresses = Addresses()
    if not is_manager:
        addresses.add(reader.get("agent.ip"), AddressRole.AGENT, "agent.ip")
    suricata_alert = reader.mapping("data.alert") if reader.has("data.alert.signature") else None
    addresses.add(reader.get("data.srcip"), AddressRole.SRC, "data.srcip")
    addresses.add(reader.get("data.src_ip"), AddressRole.SRC, "data.src_ip")
    addresses.add(reader.get("data.dstip"), AddressRole.DST, "data.dstip")
    addresses.add(reader.get("data.dest_ip"), AddressRole.DST, "data.dest_ip")

    if is_manager:
        host = normalise_host(reader.text("predecoder.hostname"))
        host_role = AddressRole.HOST if host else None
    else:
        host = normalise_host(reader.text("agent.name"))
        host_role = AddressRole.AGENT if host else None

    severity = severity_of(level)
    confidence = Confidence.HIGH
    rootcheck_text = " ".join(
        str(part) for part in (reader.get("data.title"), reader.get("title"), reader.get("full_log")) if part
    )
    if "virustotal" in groups and _truthy_one(reader.get("data.virustotal.malicious")):
        category = Category.VIRUS
    elif "webshell" in groups or "web_shell" in groups:
        category = Category.WEBSHELL
    elif "rootcheck" in groups or rule_id == ROOTCHECK_RULE:
        category, confidence = _rootcheck(rootcheck_text)
    elif suricata_alert is not None:
        category = suricata.classify(
            str(suricata_alert.get("category") or ""), str(suricata_alert["signature"])
        )
        priority = Reader(FORMAT, suricata_alert).integer("severity")
        if priority is not None and priority >= 1:
            severity = max(severity, suricata.severity_of(priority, reader.mapping("data.alert.metadata")))
    elif _ATTACK_GROUPS.intersection(groups):
        category = Category.ATTACK
    elif "vulnerability-detector" in groups:
        category = Category.VULNERABILITY
    else:
        category = Category.OTHER

    if category is Category.ATTACK:
        subject = frozenset({AddressRole.SRC})
    elif suricata_alert is not None:
        # The agent only carried the sensor's log; the flow's ends are what the alert is about.
        subject = frozenset(
            {AddressRole.DST} if category is Category.WEAK_PASSWORD else {AddressRole.SRC, AddressRole.DST}
        )
    else:
        subject = frozenset({AddressRole.AGENT, AddressRole.HOST})

    alert_id = reader.text("id", required=False, max_len=200)
    mitre = reader.mapping("rule.mitre")
    evidence = {
        "event_time": reader.text("timestamp"),
        "wrapper": wrapper,
        "rule_id": rule_id,
        "rule_level": level,
        "rule_description": description,
        "rule_groups": groups,
        "rule_firedtimes": reader.integer("rule.firedtimes"),
        "mitre_ids": mitre.get("id"),
        "mitre_tactics": mitre.get("tactic"),
        "agent_id": agent_id,
        "agent_name": reader.text("agent.name"),
        "agent_ip": reader.text("agent.ip"),
        "manager_is_agent": is_manager or None,
        "manager": reader.text("manager.name"),
        "location": reader.text("location"),
        "full_log": reader.text("full_log", max_len=1024),
        "rootcheck_title": reader.text("data.title") or reader.text("title"),
        "file": reader.text("data.file")
        or reader.text("syscheck.path")
        or reader.text("data.virustotal.source.file"),
        "sha256": reader.text("syscheck.sha256_after") or reader.text("data.virustotal.source.sha256"),
        "syscheck_event": reader.text("syscheck.event"),
        "virustotal_positives": reader.text("data.virustotal.positives"),
        "virustotal_total": reader.text("data.virustotal.total"),
        "virustotal_permalink": reader.text("data.virustotal.permalink"),
        "cve": reader.text("data.vulnerability.cve"),
        "vulnerability_severity": reader.text("data.vulnerability.severity"),
        "package": reader.text("data.vulnerability.package.name"),
        "package_version": reader.text("data.vulnerability.package.version"),
        "url": reader.text("data.url"),
        "suricata_signature": str(suricata_alert["signature"]) if suricata_alert is not None else None,
        "not_ip_addresses": addresses.not_ip,
    }
    return [
        Alert(
            received_at=ctx.received_at,
            source=ctx.source,
            format=FORMAT,
            category=category,
            severity=severity,
            confidence=confidence,
            addresses=tuple(addresses.tagged),
            subject_roles=subject,
            target_host=host,
            target_host_role=host_role,
            external_id=alert_id or record_digest(record),
            resolved=False,
            title=description[:300],
            evidence=limit_evidence(evidence),
            window_key=":".join(
                (
                    rule_id,
                    agent_id or "-",
                    str(evidence["file"] or reader.text("data.srcip") or reader.text("data.src_ip") or "-"),
                )
            ),
        )
    ]
