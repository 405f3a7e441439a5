"""The one internal alert every sender's format is turned into, and the error for a record that is not.

An :class:`Alert` is plain data: no database, no HTTP. Its ``addresses`` are every IP address found in
the record, each tagged with the role it plays there (source, destination, agent, host, target), because
the VM an alert is about is whichever of those addresses the inventory knows, never blindly the source
or the destination (``vmportal.alerts.match``). ``subject_roles`` says in which roles an address is
the one the alert accuses: the scanner of a port scan (its source), the host an agent reports on, any
end of a trojan's command-and-control flow. A VM found only in another role (the victim of someone
else's attack) is named by the alert but not accused by it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import ipaddress
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from policies.compromise import Category, Confidence, Severity

__all__ = [
    "AddressRole",
    "Alert",
    "AlertFormat",
    "Category",
    "Confidence",
    "ParseError",
    "Severity",
    "SourceKind",
    "TaggedAddress",
    "limit_evidence",
    "normalise_host",
    "normalise_ip",
    "record_digest",
]


class AlertFormat(StrEnum):
    """The wire format a record was written in (what a parser understood)."""

    SURICATA = "suricata"  # EVE JSON, event_type "alert"
    WAZUH = "wazuh"  # alerts.json, bare or wrapped by Wazuh's Shuffle integration
    ZEEK = "zeek"  # notice.log as JSON
    ELASTIC = "elastic"  # Elastic Security / ECS alert document from a Kibana webhook
    ALERTMANAGER = "alertmanager"  # Prometheus Alertmanager webhook, version "4"


class SourceKind(StrEnum):
    """What the center registers a source as: one format, or ``generic`` (the format is detected)."""

    SURICATA = "suricata"
    WAZUH = "wazuh"
    ZEEK = "zeek"
    ELASTIC = "elastic"
    ALERTMANAGER = "alertmanager"
    GENERIC = "generic"


class AddressRole(StrEnum):
    SRC = "src"  # the side that sent the traffic (Suricata src_ip, Zeek src/id.orig_h, Wazuh data.srcip)
    DST = "dst"  # the side it went to (dest_ip, dst/id.resp_h, data.dstip)
    AGENT = "agent"  # the host a host agent runs on and reports about (Wazuh agent.ip)
    HOST = "host"  # the host an Elastic alert document describes (host.ip)
    TARGET = "target"  # the host a monitoring alert or a scan names (Alertmanager vm_ip/instance, Nmap)


@dataclass(frozen=True)
class TaggedAddress:
    ip: str  # normalised by normalise_ip: compressed, no zone, IPv4-mapped IPv6 unwrapped
    role: AddressRole
    field: str  # the record field it was read from, for the incident page ("dest_ip", "labels.vm_ip")


class ParseError(Exception):
    """Why a record was not understood, in words a center operator can act on.

    ``code`` is ``malformed_json`` when the bytes are not JSON at all (the API answers 400),
    ``not_understood`` when they are JSON no parser can turn into an alert (kept raw, answered 422),
    ``too_many_records`` for a body over the record limit (413), and for Nmap reports
    ``malformed_xml`` (400) or ``not_understood`` (422, which includes refused DTD/entity tricks).
    ``index`` is the record's position in a batch (array element or JSON line), ``field`` the field at
    fault when there is one, ``raw`` the record as received (for the caller to store, size-limited).
    """

    def __init__(
        self,
        reason: str,
        *,
        code: str = "not_understood",
        index: int | None = None,
        field: str | None = None,
        raw: bytes | None = None,
    ) -> None:
        self.reason = reason
        self.code = code
        self.index = index
        self.field = field
        self.raw = raw
        super().__init__(self._message())

    def _message(self) -> str:
        return self.reason if self.index is None else f"record {self.index}: {self.reason}"

    def at(self, index: int, raw: bytes | None = None) -> ParseError:
        """This error placed at a batch position (a new object; the original stays as it was)."""
        return ParseError(self.reason, code=self.code, index=index, field=self.field, raw=raw)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "code": self.code, "field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class Alert:
    # The portal's clock (timezone-aware); the sender's own time is evidence["event_time"].
    received_at: datetime
    source: str  # the registered source's name
    format: AlertFormat
    category: Category
    severity: Severity
    confidence: Confidence
    addresses: tuple[TaggedAddress, ...]  # every IP of the record, in record order, (ip, role) unique
    subject_roles: frozenset[AddressRole]  # an address in one of these roles is the one accused
    target_host: str | None  # a hostname or domain the alert names (normalised), if any
    target_host_role: AddressRole | None  # the role of the host target_host names
    external_id: str  # the sender's deduplication key (per format; "sha256:<hex>" when it has none)
    resolved: bool  # the sender says the condition ended (Alertmanager); never releases a VM by itself
    title: str
    evidence: dict[str, Any] = field(default_factory=dict, hash=False)  # JSON-safe, size-limited
    # Repeats of one event that the sender numbers apart: alerts sharing it within a time window are one
    # event (Wazuh: rule.id, agent.id, and the file or remote address). None when the format needs none.
    window_key: str | None = None

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None or self.received_at.utcoffset() is None:
            raise ValueError("received_at must be timezone-aware (the portal's clock, in UTC)")

    @property
    def subject_addresses(self) -> tuple[TaggedAddress, ...]:
        return tuple(a for a in self.addresses if a.role in self.subject_roles)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data, for storing the alert beside its raw record."""
        data = dataclasses.asdict(self)
        data["received_at"] = self.received_at.isoformat()
        data["subject_roles"] = sorted(self.subject_roles)
        data["addresses"] = [{"ip": a.ip, "role": str(a.role), "field": a.field} for a in self.addresses]
        for key in ("format", "category", "severity", "confidence", "target_host_role"):
            value = data[key]
            data[key] = None if value is None else str(value)
        return data


# --- normalisation shared by the parsers, the matcher and the Nmap reader ---------------------------


def normalise_ip(value: object) -> str | None:
    """The canonical text of an IP address, or None when ``value`` is not one.

    Accepts IPv4 and IPv6, with or without brackets (``[2001:db8::1]``) and zone (``fe80::1%eth0``),
    and unwraps IPv4-mapped IPv6 (``::ffff:10.0.0.5`` is ``10.0.0.5``) so the inventory's IPv4 matches.
    """
    if not isinstance(value, str):
        return None
    return _normalised_ip(value)


# Matching an alert normalises every address of the inventory (each VM's, once per processing task):
# the same few thousand strings over and over, so the results are kept.
@functools.lru_cache(maxsize=16384)
def _normalised_ip(value: str) -> str | None:
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]
    if not text or len(text) > 45:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.compressed


def split_host_port(value: str) -> tuple[str, str | None]:
    """``host:port`` → (host, port); ``[v6]:port`` → (v6, port); a bare IPv6 address keeps its colons."""
    text = value.strip()
    if text.startswith("["):
        end = text.find("]")
        if end != -1:
            rest = text[end + 1 :]
            return text[1:end], (rest[1:] if rest.startswith(":") else None)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, port
    return text, None


def normalise_host(value: object) -> str | None:
    """A hostname or domain as the inventory stores it: lowercase, no trailing dot, no port, no URL parts.

    ``https://WWW.Lib.example.edu.cn:8443/x`` → ``www.lib.example.edu.cn``; an internationalised
    name becomes its ``xn--`` form. An IP address is not a hostname (None): IPs go through
    :func:`normalise_ip`.
    """
    if not isinstance(value, str):
        return None
    return _normalised_host(value)


@functools.lru_cache(maxsize=16384)
def _normalised_host(value: str) -> str | None:
    text = value.strip()
    if "://" in text:
        try:
            text = urlsplit(text).hostname or ""
        except ValueError:
            return None
    else:
        text = text.split("/", 1)[0]
        text = split_host_port(text)[0]
    text = text.strip().rstrip(".").lower()
    if not text or len(text) > 253 or normalise_ip(text) is not None:
        return None
    if any(c.isspace() or c in "@[]<>\"'\\" for c in text):
        return None
    if not text.isascii():
        # An internationalised name (教务处.example.edu.cn) compares in its ASCII form, so the
        # inventory and the alert match however each wrote it.
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return text


# --- evidence -------------------------------------------------------------------------------------

MAX_EVIDENCE_STRING = 1024
MAX_EVIDENCE_ITEMS = 50
MAX_EVIDENCE_DEPTH = 5
MAX_EVIDENCE_BYTES = 16 * 1024


def _json_safe(value: Any, max_string: int, depth: int) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        if len(value) <= max_string:
            return value
        return value[:max_string] + f"…[{len(value) - max_string} more characters]"
    if depth >= MAX_EVIDENCE_DEPTH:
        return "…[nested too deep]"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for i, (key, item) in enumerate(value.items()):
            if i >= MAX_EVIDENCE_ITEMS:
                out["…"] = f"{len(value) - MAX_EVIDENCE_ITEMS} more keys"
                break
            out[str(key)[:200]] = _json_safe(item, max_string, depth + 1)
        return out
    if isinstance(value, list | tuple):
        items = [_json_safe(item, max_string, depth + 1) for item in value[:MAX_EVIDENCE_ITEMS]]
        if len(value) > MAX_EVIDENCE_ITEMS:
            items.append(f"…[{len(value) - MAX_EVIDENCE_ITEMS} more items]")
        return items
    return _json_safe(str(value), max_string, depth)


def limit_evidence(
    evidence: Mapping[str, Any],
    *,
    max_string: int = MAX_EVIDENCE_STRING,
    max_bytes: int = MAX_EVIDENCE_BYTES,
) -> dict[str, Any]:
    """JSON-safe evidence within ``max_bytes`` of JSON: long strings cut, None values dropped, and when
    still too big the largest entries dropped (their names listed under ``_dropped``)."""
    out = {k: v for k, v in _json_safe(dict(evidence), max_string, 0).items() if v not in (None, "", [], {})}

    def size(d: Mapping[str, Any]) -> int:
        return len(json.dumps(d, ensure_ascii=False).encode())

    dropped: list[str] = []
    while size(out) > max_bytes and any(k != "_dropped" for k in out):
        largest = max((k for k in out if k != "_dropped"), key=lambda k: size({k: out[k]}))
        dropped.append(largest)
        del out[largest]
        out["_dropped"] = dropped
    return out


def record_digest(record: object) -> str:
    """A stable key for a record that carries no id of its own: ``sha256:<hex>`` of its canonical JSON,
    so the same record sent twice is recognised as one."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
