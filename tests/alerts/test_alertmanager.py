"""Alertmanager webhook payloads (version 4), written from the webhook_config documentation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.alerts.helpers import RECEIVED, VM_A, VM_B, VM_V6
from vmportal.alerts import AddressRole, AlertFormat, ParseError, match_vm, parse, parse_batch
from vmportal.alerts.model import Category, Confidence, Severity


def am_alert(
    labels: dict[str, str],
    *,
    status: str = "firing",
    fingerprint: str = "1a30ba71cca2921f",
    starts_at: str = "2026-03-16T05:40:00.000Z",
    **annotations: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-03-16T05:55:00.000Z",
        "generatorURL": "http://prometheus.nic.example.edu.cn:9090/graph?g0.expr=webshell_found+%3E+0",
        "fingerprint": fingerprint,
    }


def payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}/{category=~"^(?:.+)$"}:{alertname="SecurityFinding"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "vmportal",
        "groupLabels": {"alertname": "SecurityFinding"},
        "commonLabels": {"job": "security"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.nic.example.edu.cn:9093",
        "alerts": list(alerts),
    }


GROUP = payload(
    am_alert(
        {"alertname": "SecurityFinding", "category": "webshell", "severity": "critical", "vm_ip": VM_A},
        summary="Webshell found in /var/www/html",
        fingerprint="aa01",
    ),
    am_alert(
        {
            "alertname": "OutboundScan",
            "category": "attack",
            "severity": "warning",
            "instance": f"{VM_B}:9100",
        },
        fingerprint="aa02",
    ),
    am_alert(
        {"alertname": "Trojan", "severity": "high", "instance": f"[{VM_V6}]:9100"},
        status="resolved",
        fingerprint="aa03",
    ),
)


def test_each_alert_of_a_group_on_its_own() -> None:
    alerts = parse("alertmanager", GROUP, source="prom", received_at=RECEIVED)
    assert [a.format for a in alerts] == [AlertFormat.ALERTMANAGER] * 3

    webshell, scan, trojan = alerts
    assert (webshell.category, webshell.severity) == (Category.WEBSHELL, Severity.CRITICAL)
    assert webshell.addresses[0].ip == VM_A and webshell.addresses[0].field == "labels.vm_ip"
    assert webshell.title == "Webshell found in /var/www/html"
    assert webshell.external_id == "aa01:2026-03-16T05:40:00.000Z"
    assert webshell.evidence["receiver"] == "vmportal"
    assert webshell.confidence is Confidence.HIGH

    assert (scan.category, scan.severity) == (Category.ATTACK, Severity.MEDIUM)
    assert scan.addresses[0].ip == VM_B and scan.addresses[0].field == "labels.instance"  # port gone

    assert trojan.category is Category.TROJAN  # from the alertname, which names a category
    assert trojan.addresses[0].ip == VM_V6  # [v6]:port
    assert trojan.resolved and not webshell.resolved

    for alert in alerts:
        assert alert.subject_roles == {AddressRole.TARGET}
    found = match_vm(trojan, {VM_V6: "v6"})
    assert found is not None and found.accused and found.role is AddressRole.TARGET


def test_resolved_keeps_the_same_external_id_as_firing() -> None:
    firing = payload(am_alert({"alertname": "x", "category": "virus", "severity": "high", "vm_ip": VM_A}))
    resolved = payload(
        am_alert(
            {"alertname": "x", "category": "virus", "severity": "high", "vm_ip": VM_A}, status="resolved"
        ),
        status="resolved",
    )
    (a,) = parse("alertmanager", firing, source="p", received_at=RECEIVED)
    (b,) = parse("alertmanager", resolved, source="p", received_at=RECEIVED)
    assert a.external_id == b.external_id and not a.resolved and b.resolved


@pytest.mark.parametrize(
    ("labels", "ip", "host"),
    [
        ({"instance": "10.20.1.15"}, VM_A, None),
        ({"instance": "2001:db8:20::15"}, VM_V6, None),  # a bare IPv6 address has no port to strip
        ({"instance": "[::1]:9100"}, "::1", None),
        ({"instance": "jwc-web01.example.edu.cn:9100"}, None, "jwc-web01.example.edu.cn"),
        ({"instance": "https://JWC.example.edu.cn/login"}, None, "jwc.example.edu.cn"),
        ({"instance": "http://10.20.1.15:8080/health"}, VM_A, None),
        ({"vm_ip": VM_A, "instance": "blackbox-exporter:9115"}, VM_A, None),  # vm_ip wins
        ({"vm_host": "oa.example.edu.cn", "instance": "10.20.1.16:9100"}, VM_B, "oa.example.edu.cn"),
        ({}, None, None),
    ],
)
def test_targets(labels: dict[str, str], ip: str | None, host: str | None) -> None:
    record = payload(am_alert({"alertname": "Webshell", "severity": "high", **labels}))
    (alert,) = parse("alertmanager", record, source="p", received_at=RECEIVED)
    assert [a.ip for a in alert.addresses] == ([ip] if ip else [])
    assert alert.target_host == host


@pytest.mark.parametrize(
    ("labels", "category"),
    [
        ({"alertname": "WEAK-PASSWORD"}, Category.WEAK_PASSWORD),
        ({"alertname": "DarkLink"}, Category.DARK_LINK),
        ({"alertname": "HighCPU"}, Category.OTHER),
        ({"alertname": "HighCPU", "category": "Virus"}, Category.VIRUS),
    ],
)
def test_category_from_label_or_alertname(labels: dict[str, str], category: Category) -> None:
    record = payload(am_alert({"severity": "info", "vm_ip": VM_A, **labels}))
    (alert,) = parse("alertmanager", record, source="p", received_at=RECEIVED)
    assert alert.category is category
    assert alert.severity is Severity.LOW


def test_low_confidence_label() -> None:
    record = payload(
        am_alert(
            {"alertname": "x", "category": "trojan", "severity": "high", "confidence": "low", "vm_ip": VM_A}
        )
    )
    (alert,) = parse("alertmanager", record, source="p", received_at=RECEIVED)
    assert alert.confidence is Confidence.LOW


def test_one_broken_alert_does_not_cost_the_others() -> None:
    record = copy.deepcopy(GROUP)
    record["alerts"][1]["labels"]["category"] = "ransom"
    record["alerts"][2]["labels"].pop("severity")
    batch = parse_batch("alertmanager", record, source="p", received_at=RECEIVED)
    assert len(batch.alerts) == 1 and batch.alerts[0].category is Category.WEBSHELL
    assert [(e.index, e.field) for e in batch.errors] == [
        (0, "alerts[1].labels.category"),
        (0, "alerts[2].labels.severity"),
    ]
    assert "is 'ransom', not one of: virus, trojan" in batch.errors[0].reason
    assert "labels.severity' is missing" in batch.errors[1].reason


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(version="3"), "only webhook payload version '4'"),
        (lambda r: r.pop("alerts"), "field 'alerts' is missing"),
        (lambda r: r.update(alerts={}), "field 'alerts' must be a list"),
        (lambda r: r["alerts"][0].update(status="pending"), "must be 'firing' or 'resolved'"),
        (lambda r: r["alerts"][0].pop("startsAt"), "alerts[0].startsAt' is missing"),
        (lambda r: r["alerts"][0]["labels"].update(vm_ip="vm-17"), "labels.vm_ip' is not an IP address"),
        (lambda r: r["alerts"][0]["labels"].update(severity="sev1"), "labels.severity' is 'sev1'"),
        (lambda r: r["alerts"][0]["labels"].update(confidence="maybe"), "not high or low"),
        (lambda r: r["alerts"].__setitem__(0, "x"), "alerts[0] must be an object"),
    ],
)
def test_broken_payloads(change: Any, message: str) -> None:
    record = copy.deepcopy(GROUP)
    change(record)
    with pytest.raises(ParseError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse("alertmanager", record, source="p", received_at=RECEIVED)


def test_missing_fingerprint_keys_on_the_labels() -> None:
    alert = am_alert({"alertname": "x", "severity": "high", "vm_ip": VM_A})
    del alert["fingerprint"]
    (a,) = parse("alertmanager", payload(alert), source="p", received_at=RECEIVED)
    (b,) = parse("alertmanager", payload(copy.deepcopy(alert)), source="p", received_at=RECEIVED)
    assert a.external_id.startswith("sha256:") and a.external_id == b.external_id
