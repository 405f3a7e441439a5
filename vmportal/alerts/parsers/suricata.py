"""Suricata EVE JSON, ``event_type: "alert"`` (docs.suricata.io, "EVE JSON Format").

Category from the rule's classification (``alert.category``, the text of ``classification.config``)
and the signature's ruleset prefix, as ``alert-formats.md`` maps them. Severity from ``alert.severity``
(the classification priority): 1 high (critical when ``alert.metadata.signature_severity`` says
Critical), 2 medium, 3 and above low. ``external_id`` is ``flow_id:signature_id:tx_id`` ("-" for a
packet alert without a transaction); several alerts share one flow.

Who is accused: an attack (web application attack, privilege gain, shellcode, a scan) accuses the side
that sent it, ``src_ip``, unless the rule says otherwise with Suricata's ``target`` keyword
(``alert.source`` / ``alert.target``); a default-login attempt concerns the server logged into,
``dest_ip``; a trojan, backdoor, miner or forbidden service accuses whichever end is a VM (the C2
server, the pool, the mail peer are outside). ``http.hostname`` and ``tls.sni`` name the server side.
"""

from __future__ import annotations

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
    normalise_ip,
    record_digest,
)
from vmportal.alerts.parsers._common import Addresses, Context, Reader

FORMAT = AlertFormat.SURICATA

# classification.config descriptions (alert.category), lowercased
_TROJAN_CLASSES = frozenset(
    {
        "a network trojan was detected",  # trojan-activity
        "malware command and control activity detected",  # command-and-control
        "domain observed used for c2 detected",  # domain-c2
    }
)
_ATTACK_CLASSES = frozenset(
    {
        "web application attack",  # web-application-attack
        "attempted administrator privilege gain",  # attempted-admin
        "executable code was detected",  # shellcode-detect
        "detection of a network scan",  # network-scan: the sender scans others
    }
)
_WEAK_PASSWORD_CLASSES = frozenset({"attempt to login by a default username and password"})
_VIRUS_CLASSES = frozenset({"crypto currency mining activity detected"})  # coin-mining
_TROJAN_PREFIXES = ("ET MALWARE", "ET TROJAN", "ETPRO MALWARE", "ETPRO TROJAN", "ET CNC", "ETPRO CNC")
_POLICY_PREFIXES = ("ET POLICY", "ETPRO POLICY")
_FORBIDDEN_WORDS = ("proxy", "socks", "smtp")


def classify(classification: str, signature: str) -> Category:
    """The internal category of one Suricata alert, from its classification text and signature."""
    klass = classification.strip().lower()
    sig = signature.strip()
    sig_upper = sig.upper()
    sig_lower = sig.lower()
    if sig_upper.startswith(_POLICY_PREFIXES) and any(word in sig_lower for word in _FORBIDDEN_WORDS):
        return Category.FORBIDDEN_SERVICE
    if klass in _TROJAN_CLASSES or sig_upper.startswith(_TROJAN_PREFIXES):
        return Category.TROJAN
    if "ATTACK_RESPONSE" in sig_upper and klass in ("potentially bad traffic", ""):
        return Category.BACKDOOR  # e.g. "id check returned root": a shell answered on the server
    if klass in _ATTACK_CLASSES:
        return Category.ATTACK
    if klass in _WEAK_PASSWORD_CLASSES:
        return Category.WEAK_PASSWORD
    if klass in _VIRUS_CLASSES:
        return Category.VIRUS
    return Category.OTHER


def severity_of(priority: int, metadata: Mapping[str, Any]) -> Severity:
    if priority <= 1:
        severity_tags = metadata.get("signature_severity") if isinstance(metadata, Mapping) else None
        tags = severity_tags if isinstance(severity_tags, list) else [severity_tags]
        if any(isinstance(tag, str) and tag.strip().lower() == "critical" for tag in tags):
            return Severity.CRITICAL
        return Severity.HIGH
    if priority == 2:
        return Severity.MEDIUM
    return Severity.LOW


def _server_role(direction: str | None, src_port: int | None, dest_port: int | None) -> AddressRole:
    """Which end of the alert is the server (for the hostname): Suricata 7 says it with ``direction``;
    older ones leave the well-known port on the server's side."""
    if direction == "to_client":
        return AddressRole.SRC
    if direction == "to_server":
        return AddressRole.DST
    if src_port is not None and dest_port is not None and src_port < 1024 <= dest_port:
        return AddressRole.SRC
    return AddressRole.DST


def _subject_roles(category: Category, reader: Reader, src_ip: str, dest_ip: str) -> frozenset[AddressRole]:
    def role_of(path: str) -> AddressRole | None:
        ip = normalise_ip(reader.get(path))
        if ip is None or src_ip == dest_ip:
            return None
        return AddressRole.SRC if ip == src_ip else AddressRole.DST if ip == dest_ip else None

    if category is Category.ATTACK:
        attacker = role_of("alert.source.ip")
        return frozenset({attacker or AddressRole.SRC})
    if category is Category.WEAK_PASSWORD:
        return frozenset({AddressRole.DST})
    victim = role_of("alert.target.ip")
    return frozenset({victim}) if victim else frozenset({AddressRole.SRC, AddressRole.DST})


def parse(record: Mapping[str, Any], ctx: Context) -> list[Alert]:
    reader = Reader(FORMAT, record)
    event_type = reader.req_text("event_type")
    if event_type != "alert":
        raise reader.fail("event_type", f"is {event_type!r}: only EVE 'alert' events are alerts")
    reader.mapping("alert", required=True)
    signature_id = reader.req_integer("alert.signature_id")
    signature = reader.req_text("alert.signature")
    priority = reader.req_integer("alert.severity")
    if priority < 1:
        raise reader.fail("alert.severity", f"must be 1 or more, got {priority}")
    classification = reader.text("alert.category") or ""
    metadata = reader.mapping("alert.metadata")

    addresses = Addresses()
    src_ip = addresses.require(reader, "src_ip", AddressRole.SRC)
    dest_ip = addresses.require(reader, "dest_ip", AddressRole.DST)

    category = classify(classification, signature)
    src_port, dest_port = reader.integer("src_port"), reader.integer("dest_port")
    direction = reader.text("direction")
    host = normalise_host(reader.text("http.hostname")) or normalise_host(reader.text("tls.sni"))

    flow_id = reader.integer("flow_id")
    tx_id = reader.integer("tx_id")
    if flow_id is not None:
        external_id = f"{flow_id}:{signature_id}:{'-' if tx_id is None else tx_id}"
    else:
        external_id = record_digest(record)

    payload = reader.get("payload_printable")
    evidence = {
        "event_time": reader.text("timestamp"),
        "signature": signature,
        "signature_id": signature_id,
        "gid": reader.integer("alert.gid"),
        "rev": reader.integer("alert.rev"),
        "classification": classification,
        "priority": priority,
        "action": reader.text("alert.action"),
        "metadata": dict(metadata),
        "proto": reader.text("proto"),
        "src_port": src_port,
        "dest_port": dest_port,
        "direction": direction,
        "app_proto": reader.text("app_proto"),
        "in_iface": reader.text("in_iface"),
        "flow_id": flow_id,
        "tx_id": tx_id,
        "community_id": reader.text("community_id"),
        "http_hostname": reader.text("http.hostname"),
        "url": reader.text("http.url"),
        "http_user_agent": reader.text("http.http_user_agent"),
        "tls_sni": reader.text("tls.sni"),
        "payload_excerpt": payload[:512] if isinstance(payload, str) else None,
        "not_ip_addresses": addresses.not_ip,
    }
    return [
        Alert(
            received_at=ctx.received_at,
            source=ctx.source,
            format=FORMAT,
            category=category,
            severity=severity_of(priority, metadata),
            confidence=Confidence.HIGH,
            addresses=tuple(addresses.tagged),
            subject_roles=_subject_roles(category, reader, src_ip, dest_ip),
            target_host=host,
            target_host_role=_server_role(direction, src_port, dest_port) if host else None,
            external_id=external_id,
            resolved=False,
            title=signature[:300],
            evidence=limit_evidence(evidence),
        )
    ]
