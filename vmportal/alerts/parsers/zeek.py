"""Zeek ``notice.log`` written as JSON (docs.zeek.org, ``Notice::Info``).

Zeek has no severity: category, severity and the accused side come from the ``note`` alone.

==================================== ============= ======== ===========================================
note                                 category      severity accused
==================================== ============= ======== ===========================================
TeamCymruMalwareHashRegistry::Match  virus         high     either end (the host that fetched the file)
Intel::Notice described as C2 / C&C  trojan        high     either end
Intel::Notice, any other indicator   other (LOW)   medium   either end; a feed hit alone proves little
Scan::Address_Scan                   attack        high     ``src``, the scanner (a VM sweeping the net)
Scan::* (Port_Scan, …)               attack        medium   ``src``
SSH::Password_Guessing               attack        high     ``src``, the guesser
FTP::Bruteforcing                    attack        high     ``src``
HTTP::SQL_Injection_Attacker         attack        high     ``src``
Software::Vulnerable_Version         vulnerability medium   ``src``, the host running the software
anything else                        other         low      either end
==================================== ============= ======== ===========================================

An Intel notice is a trojan only when the feed's description — not the indicator itself, whose name
may contain anything — says C2, C&C, CnC, command and control or botnet. Stock Zeek writes only the
indicator (``msg`` "Intel hit on <indicator> at <where>", ``sub`` the indicator), so the site's intel
script must carry the feed's description into ``sub`` or a ``sources`` field for this to fire.

A VM that is the *destination* of a scan or of password guessing is named by the notice but not
accused: it is the victim. ``external_id`` is ``uid:note``; notices about a host rather than a
connection (scans, password guessing) have no ``uid`` and are keyed by the record's digest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vmportal.alerts.model import (
    AddressRole,
    Alert,
    AlertFormat,
    Category,
    Confidence,
    Severity,
    limit_evidence,
    record_digest,
)
from vmportal.alerts.parsers._common import Addresses, Context, Reader, epoch_to_iso

FORMAT = AlertFormat.ZEEK

_EITHER = frozenset({AddressRole.SRC, AddressRole.DST})
_SENDER = frozenset({AddressRole.SRC})


@dataclass(frozen=True)
class NoteMapping:
    category: Category
    severity: Severity
    accused: frozenset[AddressRole]
    confidence: Confidence = Confidence.HIGH


NOTES: dict[str, NoteMapping] = {
    "TeamCymruMalwareHashRegistry::Match": NoteMapping(Category.VIRUS, Severity.HIGH, _EITHER),
    "Scan::Address_Scan": NoteMapping(Category.ATTACK, Severity.HIGH, _SENDER),
    "SSH::Password_Guessing": NoteMapping(Category.ATTACK, Severity.HIGH, _SENDER),
    "FTP::Bruteforcing": NoteMapping(Category.ATTACK, Severity.HIGH, _SENDER),
    "HTTP::SQL_Injection_Attacker": NoteMapping(Category.ATTACK, Severity.HIGH, _SENDER),
    "Software::Vulnerable_Version": NoteMapping(Category.VULNERABILITY, Severity.MEDIUM, _SENDER),
}
_OTHER_SCAN = NoteMapping(Category.ATTACK, Severity.MEDIUM, _SENDER)
_INTEL_C2 = NoteMapping(Category.TROJAN, Severity.HIGH, _EITHER)
_INTEL_OTHER = NoteMapping(Category.OTHER, Severity.MEDIUM, _EITHER, Confidence.LOW)
_UNKNOWN = NoteMapping(Category.OTHER, Severity.LOW, _EITHER)
_INTEL_MSG = re.compile(r"^Intel hit on (?P<indicator>.+?) at (?P<where>\S+)$")
_C2_WORDS = re.compile(
    r"(?<![a-z0-9])(?:c2|c&c|cnc|command[ _-]and[ _-]control|botnet)(?![a-z0-9])", re.IGNORECASE
)


def looks_like_zeek(record: Mapping[str, Any]) -> bool:
    return "note" in record and "ts" in record


def _intel_description(msg: str, sub: str, sources: list[str]) -> str:
    """What an Intel notice says about its indicator, without the indicator itself: stock Zeek writes
    only "Intel hit on <indicator> at <where>" and the indicator, so a C2 label reaches the notice only
    when the site's script adds the feed's description to ``sub`` or a ``sources`` field."""
    found = _INTEL_MSG.match(msg)
    indicator = found.group("indicator") if found else None
    texts = [msg, sub, *sources]
    if indicator:
        texts = [text.replace(indicator, " ") for text in texts]
    return " ".join(texts)


def mapping_for(note: str, msg: str, sub: str, sources: list[str] | None = None) -> NoteMapping:
    if note in NOTES:
        return NOTES[note]
    if note.startswith("Scan::"):
        return _OTHER_SCAN
    if note == "Intel::Notice":
        described = _intel_description(msg, sub, sources or [])
        return _INTEL_C2 if _C2_WORDS.search(described) else _INTEL_OTHER
    return _UNKNOWN


def parse(record: Mapping[str, Any], ctx: Context) -> list[Alert]:
    reader = Reader(FORMAT, record)
    note = reader.req_text("note", max_len=200)
    if "::" not in note:
        raise reader.fail("note", f"is not a Zeek notice type (Module::Name): {note!r:.60}")
    ts = reader.get("ts")
    if ts is None:
        raise reader.fail("ts", "is missing")
    event_time = epoch_to_iso(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None
    if event_time is None:
        if not isinstance(ts, str) or not ts.strip():
            raise reader.fail("ts", f"must be a Unix time or an ISO 8601 time, got {ts!r:.60}")
        event_time = epoch_to_iso(ts) or ts.strip()[:64]  # json_timestamps=JSON::TS_ISO8601 writes text
    msg = reader.text("msg") or ""
    sub = reader.text("sub") or ""
    sources = reader.strings("sources")
    rule = mapping_for(note, msg, sub, sources)

    addresses = Addresses()
    addresses.add(reader.get("src"), AddressRole.SRC, "src")
    addresses.add(reader.get("id.orig_h"), AddressRole.SRC, "id.orig_h")
    addresses.add(reader.get("dst"), AddressRole.DST, "dst")
    addresses.add(reader.get("id.resp_h"), AddressRole.DST, "id.resp_h")

    uid = reader.text("uid", max_len=100)
    actions = reader.get("actions")
    evidence = {
        "event_time": event_time,
        "ts": ts,
        "note": note,
        "msg": msg,
        "sub": sub,
        "uid": uid,
        "orig_p": reader.integer("id.orig_p"),
        "resp_p": reader.integer("id.resp_p"),
        "p": reader.integer("p"),
        "n": reader.integer("n"),
        "proto": reader.text("proto"),
        "fuid": reader.text("fuid"),
        "file_mime_type": reader.text("file_mime_type"),
        "file_desc": reader.text("file_desc"),
        "peer_descr": reader.text("peer_descr"),
        "actions": actions if isinstance(actions, list) else None,
        "community_id": reader.text("community_id"),
        "sources": sources,
        "not_ip_addresses": addresses.not_ip,
    }
    title = f"{note}: {msg}" if msg else note
    return [
        Alert(
            received_at=ctx.received_at,
            source=ctx.source,
            format=FORMAT,
            category=rule.category,
            severity=rule.severity,
            confidence=rule.confidence,
            addresses=tuple(addresses.tagged),
            subject_roles=rule.accused,
            target_host=None,
            target_host_role=None,
            external_id=f"{uid}:{note}" if uid else record_digest(record),
            resolved=False,
            title=title[:300],
            evidence=limit_evidence(evidence),
        )
    ]
