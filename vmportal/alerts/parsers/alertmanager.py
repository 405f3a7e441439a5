"""Prometheus Alertmanager webhook payloads, ``version: "4"`` (prometheus.io, ``webhook_config``).

One payload is a notification for a group; each element of ``alerts`` is handled on its own, so one
broken alert does not cost the others. Labels the center agrees with whoever writes the alerting rules:

* ``category`` — one of vmportal's categories (virus, trojan, webshell, backdoor, attack, dark_link,
  weak_password, vulnerability, forbidden_service, other). Without it, an ``alertname`` that *is* a
  category name (case, ``_`` and ``-`` ignored: ``Webshell``, ``WEAK-PASSWORD``) gives it; any other
  alertname is ``other``. An unknown ``category`` value is refused rather than guessed;
* ``severity`` — critical, high, medium, low, or the usual Prometheus words: error/major → high,
  warning/warn/moderate → medium, info/informational/minor/none → low. Required: an alert that does
  not say how bad it is is refused, naming the label;
* ``confidence`` — high (the default) or low;
* ``vm_ip`` — the VM's address; otherwise ``instance`` without its port (``10.0.0.5:9100``,
  ``[2001:db8::5]:9100``). An ``instance`` that is a hostname or a URL (blackbox probes) names a host;
  ``vm_host`` names one explicitly.

``status: resolved`` sets ``resolved``; it never releases a VM by itself. ``external_id`` is
``fingerprint:startsAt``: a firing and a resolved notification of one alert share it (they are the
same alert), so a caller that wants to record the resolution keys on (external_id, resolved).
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
    ParseError,
    Severity,
    limit_evidence,
    normalise_host,
    normalise_ip,
    record_digest,
    split_host_port,
)
from vmportal.alerts.parsers._common import Addresses, Context, Reader

FORMAT = AlertFormat.ALERTMANAGER
VERSION = "4"
STATUSES = frozenset({"firing", "resolved"})

SEVERITY_WORDS: dict[str, Severity] = {
    "critical": Severity.CRITICAL,
    "high": Severity.HIGH,
    "error": Severity.HIGH,
    "major": Severity.HIGH,
    "medium": Severity.MEDIUM,
    "warning": Severity.MEDIUM,
    "warn": Severity.MEDIUM,
    "moderate": Severity.MEDIUM,
    "low": Severity.LOW,
    "minor": Severity.LOW,
    "info": Severity.LOW,
    "informational": Severity.LOW,
    "none": Severity.LOW,
}
_CATEGORY_BY_SQUASHED = {re.sub(r"[^a-z]", "", c.value): c for c in Category}


def looks_like_alertmanager(record: Mapping[str, Any]) -> bool:
    return isinstance(record.get("alerts"), list) and ("groupKey" in record or "receiver" in record)


def _category(reader: Reader, labels: Mapping[str, Any]) -> Category:
    value = labels.get("category")
    if value not in (None, ""):
        text = str(value).strip().lower()
        try:
            return Category(text)
        except ValueError:
            allowed = ", ".join(c.value for c in Category)
            raise reader.fail("labels.category", f"is {text!r:.40}, not one of: {allowed}") from None
    alertname = str(labels.get("alertname") or "")
    return _CATEGORY_BY_SQUASHED.get(re.sub(r"[^a-z]", "", alertname.lower()), Category.OTHER)


def _severity(reader: Reader, labels: Mapping[str, Any]) -> Severity:
    value = labels.get("severity")
    if value in (None, ""):
        raise reader.fail("labels.severity", "is missing: say critical, high, medium or low")
    text = str(value).strip().lower()
    if text not in SEVERITY_WORDS:
        raise reader.fail("labels.severity", f"is {text!r:.40}, not one of: {', '.join(SEVERITY_WORDS)}")
    return SEVERITY_WORDS[text]


def _confidence(reader: Reader, labels: Mapping[str, Any]) -> Confidence:
    value = labels.get("confidence")
    if value in (None, ""):
        return Confidence.HIGH
    try:
        return Confidence(str(value).strip().lower())
    except ValueError:
        raise reader.fail("labels.confidence", f"is {str(value)!r:.40}, not high or low") from None


def _instance_target(instance: str) -> tuple[str | None, str | None]:
    """(ip, host) from an ``instance`` label: ``10.0.0.5:9100``, ``[::1]:9100``, ``2001:db8::5``,
    ``web01.example.edu.cn:9100`` or a probed URL."""
    text = instance.strip()
    ip = normalise_ip(text)  # a bare address, IPv6 included, has no port to strip
    if ip:
        return ip, None
    if "://" in text:
        host = normalise_host(text)
        if host:
            return None, host
        inner = text.split("://", 1)[1].split("/", 1)[0]
        return normalise_ip(split_host_port(inner)[0]), None
    bare = split_host_port(text)[0]
    return normalise_ip(bare), (None if normalise_ip(bare) else normalise_host(bare))


def _one(alert: Mapping[str, Any], index: int, payload: Reader, ctx: Context) -> Alert:
    reader = Reader(FORMAT, alert, prefix=f"alerts[{index}].")
    labels = reader.mapping("labels", required=True)
    annotations = reader.mapping("annotations")
    status = (reader.text("status") or payload.text("status") or "").lower()
    if status not in STATUSES:
        raise reader.fail("status", f"must be 'firing' or 'resolved', got {status!r:.40}")
    starts_at = reader.req_text("startsAt", max_len=64)
    fingerprint = reader.text("fingerprint", max_len=64)

    category = _category(reader, labels)
    severity = _severity(reader, labels)
    confidence = _confidence(reader, labels)

    addresses = Addresses()
    host = normalise_host(labels.get("vm_host"))
    vm_ip = labels.get("vm_ip")
    if vm_ip not in (None, ""):
        if addresses.add(vm_ip, AddressRole.TARGET, "labels.vm_ip") is None:
            raise reader.fail("labels.vm_ip", f"is not an IP address: {str(vm_ip)!r:.60}")
    elif isinstance(labels.get("instance"), str):
        ip, instance_host = _instance_target(labels["instance"])
        addresses.add(ip, AddressRole.TARGET, "labels.instance")
        host = host or instance_host

    evidence = {
        "event_time": starts_at,
        "ends_at": reader.text("endsAt"),
        "status": status,
        "alertname": labels.get("alertname"),
        "labels": dict(labels),
        "summary": annotations.get("summary"),
        "description": annotations.get("description"),
        "generator_url": reader.text("generatorURL"),
        "fingerprint": fingerprint,
        "receiver": payload.text("receiver"),
        "group_key": payload.text("groupKey"),
        "external_url": payload.text("externalURL"),
        "truncated_alerts": payload.integer("truncatedAlerts") or None,
    }
    if fingerprint:
        external_id = f"{fingerprint}:{starts_at}"
    else:  # Alertmanager before 0.19 sent no fingerprint: the labels identify the alert
        external_id = record_digest({"labels": dict(labels), "startsAt": starts_at})
    title = str(annotations.get("summary") or labels.get("alertname") or "Alertmanager alert")
    return Alert(
        received_at=ctx.received_at,
        source=ctx.source,
        format=FORMAT,
        category=category,
        severity=severity,
        confidence=confidence,
        addresses=tuple(addresses.tagged),
        subject_roles=frozenset({AddressRole.TARGET}),
        target_host=host,
        target_host_role=AddressRole.TARGET if host else None,
        external_id=external_id,
        resolved=status == "resolved",
        title=title[:300],
        evidence=limit_evidence(evidence),
    )


def parse_each(record: Mapping[str, Any], ctx: Context) -> list[Alert | ParseError]:
    """Every alert of one payload, or the error that alert alone has; the payload's own errors raise."""
    payload = Reader(FORMAT, record)
    version = payload.text("version")
    if version is not None and version != VERSION:
        raise payload.fail("version", f"is {version!r:.20}: only webhook payload version '4' is understood")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise payload.fail("alerts", "is missing" if alerts is None else "must be a list")
    out: list[Alert | ParseError] = []
    for index, alert in enumerate(alerts):
        try:
            if not isinstance(alert, Mapping):
                raise ParseError(f"alertmanager: alerts[{index}] must be an object", field=f"alerts[{index}]")
            out.append(_one(alert, index, payload, ctx))
        except ParseError as error:
            out.append(error)
    return out


def parse(record: Mapping[str, Any], ctx: Context) -> list[Alert]:
    """Every alert of one payload; the first broken alert raises."""
    results = parse_each(record, ctx)
    for result in results:
        if isinstance(result, ParseError):
            raise result
    return [r for r in results if isinstance(r, Alert)]
