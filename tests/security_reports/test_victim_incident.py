"""The victim of an internal attack gets an incident of its own (issue 12.4): a VM of one unit
attacks a VM of another; the attacker's incident follows the containment policy, the victim's is
notify-only — never contained — and its unit and the center are mailed (aiosmtpd)."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from tests.factories import Factory
from tests.security.helpers import center_admin, incidents, nics, post, register
from tests.security_reports.conftest import CENTER_MAILBOX, MailServer
from tests.security_reports.helpers import contacts


def web_attack(attacker_ip: str, victim_ip: str) -> dict[str, Any]:
    """A SQL injection from one campus VM against another's web site (EVE ``alert``)."""
    return {
        "timestamp": "2026-03-16T15:20:11.000000+0800",
        "flow_id": 1_900_000_000 + time.time_ns() % 1_000_000,
        "event_type": "alert",
        "src_ip": attacker_ip,
        "src_port": 40112,
        "dest_ip": victim_ip,
        "dest_port": 80,
        "proto": "TCP",
        "tx_id": 0,
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": 2006446,
            "rev": 13,
            "signature": "ET WEB_SERVER Possible SQL Injection Attempt UNION SELECT",
            "category": "Web Application Attack",
            "severity": 1,
        },
        "http": {"hostname": "lib.example.edu.cn", "url": "/search?q=1 UNION SELECT"},
    }


def test_the_victim_of_an_internal_attack_is_told_not_contained(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    h = center_admin(client, factory)
    attacking_unit, victim_unit = factory.unit(), factory.unit()
    attacker, victim = factory.vm(attacking_unit), factory.vm(victim_unit)
    source = register(client, h, "suricata")
    assert (
        post(client, source, web_attack(attacker.ip_address or "", victim.ip_address or "")).status_code
        == 202
    )

    [culprit] = incidents(client, h, vm_id=attacker.id)
    [told] = incidents(client, h, vm_id=victim.id)
    assert culprit["unit_id"] == attacking_unit.id and told["unit_id"] == victim_unit.id
    assert culprit["state"] == "contained" and not any(nics(factory, attacker))  # the policy acted
    assert told["state"] == "open" and told["action"] == "notify_only"
    assert told["executed_action"] == "" and told["containment_state"] == "none"
    assert all(nics(factory, victim)), "the victim is never cut off"
    assert "victim of VM" in told["title"] and attacker.name in told["title"]

    timeline = client.get(f"/api/v1/incidents/{told['id']}/timeline", headers=h).json()
    [opened] = [e for e in timeline if e["kind"] == "opened"]
    assert "校内攻击的受害者" in opened["message_zh"] and attacker.name in opened["message_zh"]
    assert "victim of an internal attack" in opened["message_en"]

    end = time.monotonic() + 20
    while time.monotonic() < end and not mail_server.collector.about(f"安全事件 #{told['id']}"):
        time.sleep(0.05)
    [mail] = mail_server.collector.about(f"安全事件 #{told['id']}")
    assert "未自动处置" in mail.subject and victim.name in mail.subject
    assert set(contacts(victim_unit).values()) | {CENTER_MAILBOX} <= set(mail.rcpt_tos)
    assert not set(contacts(attacking_unit).values()) & set(mail.rcpt_tos)


def test_an_outsider_scanning_two_vms_opens_no_victim_incidents_beyond_the_named_vm(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    """No internal attacker: the alert's VM is held for a human as before, nothing more is opened."""
    h = center_admin(client, factory)
    victim = factory.vm(factory.unit())
    source = register(client, h, "suricata")
    assert post(client, source, web_attack("203.0.113.50", victim.ip_address or "")).status_code == 202
    [held] = incidents(client, h, vm_id=victim.id)
    assert held["state"] == "open" and held["action"] == "notify_only"
    assert "victim of VM" not in held["title"]
    assert all(nics(factory, victim))
