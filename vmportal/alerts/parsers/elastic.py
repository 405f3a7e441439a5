"""Elastic Security alerts in the Elastic Common Schema, as a Kibana webhook connector posts them.

Kibana does not have a fixed webhook body: the center writes one, as a Mustache template in the rule's
webhook action. This is the body vmportal expects — one JSON object per alert; several alerts may be
posted as a JSON array or as JSON lines (one object per line), which is what a template that loops
over ``context.alerts`` produces most simply::

    {{#context.alerts}}
    {"@timestamp": "{{@timestamp}}",
     "event": {"kind": "alert", "category": "{{event.category}}", "id": "{{event.id}}"},
     "kibana.alert.uuid": "{{kibana.alert.uuid}}",
     "kibana.alert.rule.name": "{{kibana.alert.rule.name}}",
     "kibana.alert.severity": "{{kibana.alert.severity}}",
     "kibana.alert.risk_score": "{{kibana.alert.risk_score}}",
     "kibana.alert.reason": "{{kibana.alert.reason}}",
     "host": {"name": "{{host.name}}", "ip": "{{host.ip}}"},
     "source": {"ip": "{{source.ip}}"}, "destination": {"ip": "{{destination.ip}}"},
     "file": {"path": "{{file.path}}", "hash": {"sha256": "{{file.hash.sha256}}"}},
     "process": {"command_line": "{{process.command_line}}"},
     "url": {"full": "{{url.full}}"}}
    {{/context.alerts}}

(The webhook connector escapes each ``{{value}}`` for a JSON string; keep each object on one line.)

Fields, nested or flat with dots (``{"kibana.alert.uuid": …}`` and ``{"kibana": {"alert": …}}`` are
the same), empty values ignored:

* ``event.kind`` — ``alert`` (or ``signal``, the pre-8.0 name); another kind is refused;
* ``kibana.alert.uuid`` — the deduplication key; ``event.id`` when absent; else the record's digest;
* ``kibana.alert.severity`` (low, medium, high, critical) — or, when absent, a risk score
  (``kibana.alert.risk_score`` or ``event.risk_score``, 0–100, in Kibana's bands: 0–21 low,
  22–47 medium, 48–73 high, 74–100 critical). One of them is required;
* ``event.category`` — a list, or one string, or a comma-joined string (how Mustache renders a list):
  ``malware`` → virus, or trojan / webshell / backdoor when the rule name, reason or message says so;
  ``intrusion_detection`` → attack; anything else → other;
* ``host.ip`` (list or comma-joined), ``host.name`` — the host the alert is about;
  ``source.ip`` / ``destination.ip`` — the flow's ends for network alerts;
* ``kibana.alert.rule.name`` (or ``rule.name``, or ``message``) — the title;
* ``kibana.alert.status`` ``recovered`` marks the alert resolved (which never releases a VM).

Who is accused: for ``intrusion_detection``, ``source.ip`` (the intruder) when given, otherwise the
host the alert is about (an intrusion seen on the host itself); for malware and the rest, the host,
or either end of the flow when the document names no host.
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
from vmportal.alerts.parsers._common import Addresses, Context, Reader, lookup

FORMAT = AlertFormat.ELASTIC
ALERT_KINDS = frozenset({"alert", "signal"})

_WEBSHELL = re.compile(r"web[ _-]?shell", re.IGNORECASE)
_BACKDOOR = re.compile(r"backdoor|rootkit", re.IGNORECASE)
_TROJAN = re.compile(
    r"trojan|(?<![a-z])(?:rat|c2|cnc|c&c)(?![a-z0-9])|command[ _-]and[ _-]control|beacon", re.IGNORECASE
)


def looks_like_elastic(record: Mapping[str, Any]) -> bool:
    if (
        lookup(record, "kibana.alert.uuid") is not None
        or lookup(record, "kibana.alert.rule.name") is not None
    ):
        return True
    kind = lookup(record, "event.kind")
    return isinstance(kind, str) and kind.lower() in ALERT_KINDS and "@timestamp" in record


def severity_from_score(score: float) -> Severity:
    if score >= 74:
        return Severity.CRITICAL
    if score >= 48:
        return Severity.HIGH
    if score >= 22:
        return Severity.MEDIUM
    return Severity.LOW


def _severity(reader: Reader) -> Severity:
    for path in ("kibana.alert.severity", "signal.rule.severity"):
        text = reader.text(path)
        if text:
            try:
                return Severity(text.lower())
            except ValueError:
                raise reader.fail(
                    path, f"must be one of low, medium, high, critical, got {text!r:.40}"
                ) from None
    for path in ("kibana.alert.risk_score", "event.risk_score", "signal.rule.risk_score"):
        value = reader.get(path)
        if value is None or value == "":
            continue
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise reader.fail(path, f"must be a number from 0 to 100, got {value!r:.40}") from None
        if not 0 <= score <= 100:
            raise reader.fail(path, f"must be a number from 0 to 100, got {value!r:.40}")
        return severity_from_score(score)
    raise reader.fail(
        "kibana.alert.severity",
        "is missing, and so is a risk score (kibana.alert.risk_score or event.risk_score)",
    )


def _category(categories: list[str], text: str) -> Category:
    lowered = [c.lower() for c in categories]
    if "malware" in lowered:
        if _WEBSHELL.search(text):
            return Category.WEBSHELL
        if _BACKDOOR.search(text):
            return Category.BACKDOOR
        if _TROJAN.search(text):
            return Category.TROJAN
        return Category.VIRUS
    if "intrusion_detection" in lowered:
        return Category.ATTACK
    return Category.OTHER


def parse(record: Mapping[str, Any], ctx: Context) -> list[Alert]:
    reader = Reader(FORMAT, record)
    kind = reader.text("event.kind")
    if kind is not None and kind.lower() not in ALERT_KINDS:
        raise reader.fail(
            "event.kind", f"is {kind!r:.40}: only alert documents (event.kind 'alert') are alerts"
        )
    severity = _severity(reader)
    title = (
        reader.text("kibana.alert.rule.name")
        or reader.text("signal.rule.name")
        or reader.text("rule.name")
        or reader.text("message")
        or "Elastic Security alert"
    )
    reason = reader.text("kibana.alert.reason") or reader.text("signal.reason")
    categories = reader.strings("event.category")
    category = _category(categories, " ".join(filter(None, (title, reason, reader.text("message")))))

    addresses = Addresses()
    for ip in reader.strings("host.ip"):
        addresses.add(ip, AddressRole.HOST, "host.ip")
    for ip in reader.strings("source.ip"):
        addresses.add(ip, AddressRole.SRC, "source.ip")
    for ip in reader.strings("destination.ip"):
        addresses.add(ip, AddressRole.DST, "destination.ip")
    host = normalise_host(reader.text("host.name")) or normalise_host(reader.text("host.hostname"))
    roles = {a.role for a in addresses.tagged}

    if category is Category.ATTACK and AddressRole.SRC in roles:
        subject = frozenset({AddressRole.SRC})
    elif AddressRole.HOST in roles or host:
        subject = frozenset({AddressRole.HOST})
    else:
        subject = frozenset({AddressRole.SRC, AddressRole.DST})

    uuid = reader.text("kibana.alert.uuid", max_len=200) or reader.text("event.id", max_len=200)
    status = (reader.text("kibana.alert.status") or "").lower()
    evidence = {
        "event_time": reader.text("@timestamp"),
        "rule_name": title,
        "rule_id": reader.text("kibana.alert.rule.rule_id") or reader.text("kibana.alert.rule.uuid"),
        "reason": reason,
        "event_category": categories,
        "event_module": reader.text("event.module"),
        "event_dataset": reader.text("event.dataset"),
        "risk_score": reader.get("kibana.alert.risk_score") or reader.get("event.risk_score"),
        "alert_status": status or None,
        "file_path": reader.text("file.path"),
        "file_sha256": reader.text("file.hash.sha256"),
        "process_command_line": reader.text("process.command_line", max_len=1024),
        "url": reader.text("url.full"),
        "host_name": reader.text("host.name"),
        "not_ip_addresses": addresses.not_ip,
    }
    return [
        Alert(
            received_at=ctx.received_at,
            source=ctx.source,
            format=FORMAT,
            category=category,
            severity=severity,
            confidence=Confidence.HIGH,
            addresses=tuple(addresses.tagged),
            subject_roles=subject,
            target_host=host,
            target_host_role=AddressRole.HOST if host else None,
            external_id=uuid or record_digest(record),
            resolved=status == "recovered",
            title=title[:300],
            evidence=limit_evidence(evidence),
        )
    ]
