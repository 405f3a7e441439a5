"""Alerts that match no VM reach the center by mail (issue 12.4), as the center setting
``unmatched_alert_mail`` says: an hourly digest by default, one mail per alert, or nothing. The
mails are read from a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import select

from tests.factories import Factory
from tests.security.helpers import center_admin, post, register, suricata_c2
from tests.security_reports.conftest import CENTER_MAILBOX, MailServer, Received
from vmportal.alerts import unmatched
from vmportal.incidents.models import SecurityAlert
from vmportal.kit import db


def _alerts(**where: Any) -> list[SecurityAlert]:
    with db.transaction(read_only=True) as s:
        query = select(SecurityAlert)
        for name, value in where.items():
            query = query.where(getattr(SecurityAlert, name) == value)
        return list(s.exec(query.order_by(SecurityAlert.id)).all())  # type: ignore[arg-type]


def _wait_for(server: MailServer, text: str, count: int = 1) -> list[Received]:
    end = time.monotonic() + 20
    while time.monotonic() < end:
        found = server.collector.about(text)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no mail about {text!r}; got {[m.subject for m in server.messages]}")


def _unmatched_alert(client: TestClient, h: dict[str, str], source: dict[str, Any], ip: str) -> SecurityAlert:
    assert post(client, source, suricata_c2(ip)).status_code == 202
    [alert] = [a for a in _alerts(state="unmatched") if any(x.get("ip") == ip for x in a.addresses)]
    return alert


def test_the_hourly_digest_lists_the_unmatched_alerts_once(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    h = center_admin(client, factory)
    factory.vm(factory.unit())  # an inventory exists; the alerts name addresses it does not hold
    source = register(client, h, "suricata")
    first = _unmatched_alert(client, h, source, "10.250.0.7")
    second = _unmatched_alert(client, h, source, "10.250.0.8")
    assert mail_server.messages == []  # the default is the digest: nothing per alert

    assert first.processed_at is not None
    after_the_hour = first.processed_at.replace(minute=0, second=0, microsecond=0) + timedelta(
        hours=1, minutes=2
    )
    # Both alerts fall in one hour unless the test straddled a full hour; allow for that.
    expected = 1 if second.processed_at and second.processed_at < after_the_hour - timedelta(minutes=2) else 2
    queued = unmatched.send_digest(now=after_the_hour + timedelta(hours=expected - 1))
    assert queued == expected
    mails = _wait_for(mail_server, "未匹配告警汇总", expected)
    body = "\n".join(m.body for m in mails)
    for alert in (first, second):
        assert f"#{alert.id} " in body
    assert "10.250.0.7" in body and "10.250.0.8" in body
    assert body.index("需要人工研判") < body.index("a human should review")  # Chinese first
    assert all(m.rcpt_tos == [CENTER_MAILBOX] for m in mails)  # the center only: no unit is known
    assert "Unmatched alerts digest" in mails[0].subject

    # Beat running again, late, or twice: each hour is mailed once.
    assert unmatched.send_digest(now=after_the_hour + timedelta(hours=3)) == 0
    time.sleep(0.2)
    assert len(mail_server.collector.about("未匹配告警汇总")) == expected


def test_each_mode_mails_every_unmatched_alert_and_off_mails_nothing(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    h = center_admin(client, factory)
    r = client.put("/api/v1/settings", json={"unmatched_alert_mail": "each"}, headers=h)
    assert r.status_code == 200 and r.json()["unmatched_alert_mail"] == "each"
    source = register(client, h, "suricata")
    alert = _unmatched_alert(client, h, source, "10.250.1.9")
    [mail] = _wait_for(mail_server, f"告警 #{alert.id} 未匹配到任何虚拟机")
    assert f"Alert #{alert.id} matched no VM ({source['name']})" in mail.subject
    assert "10.250.1.9" in mail.body and mail.rcpt_tos == [CENTER_MAILBOX]
    assert alert.processed_at is not None
    # The digest does not repeat what was mailed one by one.
    assert unmatched.send_digest(now=alert.processed_at + timedelta(hours=1)) == 0

    r = client.put("/api/v1/settings", json={"unmatched_alert_mail": "off"}, headers=h)
    assert r.status_code == 200
    quiet = _unmatched_alert(client, h, source, "10.250.1.10")
    assert quiet.processed_at is not None
    assert unmatched.send_digest(now=quiet.processed_at + timedelta(hours=1)) == 0
    time.sleep(0.2)
    assert len(mail_server.messages) == 1


def test_a_matched_alert_is_no_unmatched_mail(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    h = center_admin(client, factory)
    client.put("/api/v1/settings", json={"unmatched_alert_mail": "each"}, headers=h)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata")
    assert post(client, source, suricata_c2(vm.ip_address or "")).status_code == 202
    assert _alerts(state="unmatched") == []
    time.sleep(0.2)
    assert mail_server.collector.about("未匹配") == []
