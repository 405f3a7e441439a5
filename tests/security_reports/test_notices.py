"""Notices from the authorities through the HTTP API: matched to a VM by IP or by the URL's host against
the information systems' domains, turned into a held incident (nothing suspended) and a finding with
the notice's deadline, contained only when a center user confirms; unmatched notices wait for a human;
deadlines as notices word them; bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import Factory
from tests.security.helpers import calls, center_admin, nics, vm_state
from tests.security_reports.conftest import CENTER_MAILBOX, MailServer
from tests.security_reports.helpers import contacts, set_vm
from vmportal.compliance.service.deadlines import parse_deadline
from vmportal.kit import errors
from vmportal.kit.clock import BEIJING

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _notice(client: TestClient, headers: dict[str, str], **fields: Any) -> Any:
    body = {
        "issuer": "教育部",
        "notice_number": "教技信函〔2026〕第0317号",
        "event_type": "挂马",
        "target_url": "http://10.20.0.200/index.php",
        "evidence": "首页被植入恶意 iframe：<iframe src=http://evil.example/x.js>",
        "required_action": "清除恶意代码",
        "deadline": "24小时内",
        **fields,
    }
    return client.post("/api/v1/notices", json=body, headers=headers)


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_a_notice_becomes_a_held_incident_and_a_finding_and_is_contained_only_when_confirmed(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    vm = set_vm(factory.vm(unit), ip_address="10.20.0.200")
    admin = factory.login(client, factory.user("unit_admin", unit))
    before = datetime.now(UTC)

    r = _notice(client, h)
    assert r.status_code == 201, r.text
    notice = r.json()
    assert (notice["state"], notice["vm_id"], notice["unit_id"], notice["category"]) == (
        "open",
        vm.id,
        unit.id,
        "trojan",
    )
    assert notice["issuer_kind"] == "ministry" and notice["suggested_action"] == "isolate_network"
    deadline = _at(notice["deadline_at"])
    assert before + timedelta(hours=24) <= deadline <= datetime.now(UTC) + timedelta(hours=24)

    # The incident is open and notify-only: the VM is untouched.
    incident = notice["incident"]
    assert (incident["state"], incident["containment_state"], incident["action"]) == (
        "open",
        "none",
        "notify_only",
    )
    full = client.get(incident["link"], headers=h).json()
    assert full["origin"] == "notice" and full["confidence"] == "high"
    assert "center user confirms" in " ".join(full["reasons_en"])
    assert all(nics(factory, vm)) and vm_state(client, admin, vm)["security_state"] == "normal"
    timeline = [e["kind"] for e in client.get(f"{incident['link']}/timeline", headers=h).json()]
    assert timeline == ["opened", "notice"]

    # The finding carries the notice's deadline; the notice mail reached the unit, so it is notified.
    [finding] = notice["findings"]
    assert (finding["origin"], finding["notice_id"], finding["incident_id"]) == (
        "notice",
        notice["id"],
        incident["id"],
    )
    assert _at(finding["deadline_at"]) == deadline and finding["category"] == "trojan"
    assert client.get(f"/api/v1/findings/{finding['id']}", headers=admin).json()["state"] == "notified"
    [mail] = mail_server.collector.about("安全通报")
    registry = contacts(unit)
    assert sorted(mail.rcpt_tos) == sorted(
        [registry["security_admin"], registry["security_lead"], CENTER_MAILBOX]
    )
    assert mail.subject.startswith("【网络与信息中心】教育部安全通报 教技信函〔2026〕第0317号：挂马")
    assert "清除恶意代码" in mail.body and "Security notice" in mail.subject

    # The unit may read its notice; another unit may not.
    assert client.get(f"/api/v1/notices/{notice['id']}", headers=admin).status_code == 200
    stranger = factory.login(client, factory.user("unit_admin", factory.unit()))
    assert client.get(f"/api/v1/notices/{notice['id']}", headers=stranger).status_code == 404
    assert client.get("/api/v1/notices", headers=stranger).json()["total"] == 0
    assert client.post(f"/api/v1/notices/{notice['id']}/confirm", json={}, headers=admin).status_code == 403

    # A center user confirms: the incident workflow contains the VM (isolate, the suggested action).
    confirmed = client.post(
        f"/api/v1/notices/{notice['id']}/confirm", json={"reason": "已电话核实"}, headers=h
    )
    assert confirmed.status_code == 202, confirmed.text
    assert confirmed.json()["state"] == "confirmed" and confirmed.json()["confirmed_at"]
    assert confirmed.json()["incident"]["state"] == "containing"  # the task runs after the commit
    after = client.get(f"/api/v1/notices/{notice['id']}", headers=h).json()
    assert after["incident"]["state"] == "contained" and after["incident"]["containment_state"] == "confirmed"
    assert not any(nics(factory, vm)) and calls(factory, vm, "set_network") == 1
    assert vm_state(client, admin, vm)["security_state"] == "suspended"
    start = client.post(f"/api/v1/vms/{vm.id}/power", json={"action": "start"}, headers=admin)
    assert start.status_code == 403
    again = client.post(f"/api/v1/notices/{notice['id']}/confirm", json={}, headers=h)
    assert again.status_code == 409 and again.json()["error"]["state"] == "contained"
    [suspended] = mail_server.collector.about("已被暂停")
    assert registry["security_admin"] in suspended.rcpt_tos


def test_a_notice_url_matches_a_system_domain_and_states_its_own_deadline(
    client: TestClient, factory: Factory
) -> None:
    h = center_admin(client, factory)
    unit = factory.unit()
    system = factory.system(unit)
    vm = set_vm(factory.vm(unit), system_id=system.id)
    domain = system.domains[0]
    r = _notice(
        client,
        h,
        issuer="CNCERT",
        notice_number="CNCERT-2026-03-1187",
        event_type="暗链",
        target_url=f"https://{domain.upper()}/news/list.html?page=2",
        deadline="3月20日前",
        required_action="限制校外访问",
    )
    assert r.status_code == 201, r.text
    notice = r.json()
    assert notice["vm_id"] == vm.id and notice["category"] == "dark_link" and notice["severity"] == "high"
    assert notice["suggested_action"] == "block_web"
    local = _at(notice["deadline_at"]).astimezone(BEIJING)
    assert (local.month, local.day, local.hour, local.minute) == (3, 20, 23, 59)
    assert local.date() >= datetime.now(BEIJING).date()

    # Same issuer and number again: 409 naming the notice entered.
    dup = _notice(client, h, issuer="CNCERT", notice_number="CNCERT-2026-03-1187", event_type="暗链")
    assert dup.status_code == 409 and dup.json()["error"]["notice_id"] == notice["id"]
    listed = client.get("/api/v1/notices", params={"issuer": "CNCERT"}, headers=h).json()
    assert [n["id"] for n in listed["items"]] == [notice["id"]]


def test_an_unmatched_notice_waits_for_the_center_and_is_assigned_by_hand(
    client: TestClient, factory: Factory, mail_server: MailServer
) -> None:
    h = center_admin(client, factory)
    r = _notice(
        client,
        h,
        issuer="other",
        issuer_name="某市公安局网安支队",
        notice_number="网安〔2026〕88号",
        event_type="webshell",
        target_url="",
        target_ip="10.99.1.7",
        deadline="2099-01-01T18:00",
    )
    assert r.status_code == 201, r.text
    notice = r.json()
    assert (notice["state"], notice["vm_id"], notice["unit_id"], notice["incident"]) == (
        "unmatched",
        None,
        None,
        None,
    )
    assert notice["issuer"] == "某市公安局网安支队" and notice["severity"] == "critical"
    assert _at(notice["deadline_at"]) == datetime(2099, 1, 1, 18, 0, tzinfo=BEIJING)
    [center_only] = mail_server.messages
    assert center_only.rcpt_tos == [CENTER_MAILBOX] and "请人工处理" in center_only.subject
    finding = notice["findings"][0]
    assert finding["unit_id"] is None and finding["state"] == "open"  # the center's mail told no unit
    confirm = client.post(f"/api/v1/notices/{notice['id']}/confirm", json={}, headers=h)
    assert confirm.status_code == 409

    unit = factory.unit()
    vm = factory.vm(unit)
    assigned = client.post(f"/api/v1/notices/{notice['id']}/assign", json={"vm_id": vm.id}, headers=h)
    assert assigned.status_code == 200, assigned.text
    body = assigned.json()
    assert (body["state"], body["vm_id"], body["unit_id"]) == ("open", vm.id, unit.id)
    assert body["incident"]["state"] == "open" and body["findings"][0]["vm_id"] == vm.id
    finding_now = client.get(f"/api/v1/findings/{finding['id']}", headers=h).json()
    assert finding_now["state"] == "notified"  # once the mail to the unit was delivered
    assert contacts(unit)["security_admin"] in mail_server.collector.about("安全通报")[0].rcpt_tos
    twice = client.post(f"/api/v1/notices/{notice['id']}/assign", json={"vm_id": vm.id}, headers=h)
    assert twice.status_code == 409


def test_evidence_files_and_bad_input(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = set_vm(factory.vm(factory.unit()), ip_address="10.20.0.201")
    form = {
        "issuer": "360",
        "notice_number": "360-CERT-0001",
        "event_type": "弱口令",
        "target_ip": "10.20.0.201",
        "evidence": "后台 /admin 使用 admin/123456 可登录",
        "severity": "",
        "deadline": "",
    }
    r = client.post(
        "/api/v1/notices",
        data=form,
        files=[
            ("files", ("login.png", PNG, "image/png")),
            ("files", ("urls.txt", "网址列表\n".encode(), "text/plain")),
        ],
        headers=h,
    )
    assert r.status_code == 201, r.text
    notice = r.json()
    assert notice["vm_id"] == vm.id and notice["category"] == "weak_password"
    assert [a["filename"] for a in notice["attachments"]] == ["login.png", "urls.txt"]
    # No deadline stated: by severity (high, 72 hours).
    finding = notice["findings"][0]
    assert _at(finding["deadline_at"]) - _at(finding["created_at"]) == timedelta(hours=72)
    got = client.get(notice["attachments"][0]["link"], headers=h)
    assert got.status_code == 200 and got.content == PNG
    exe = client.post(
        "/api/v1/notices",
        data={**form, "notice_number": "360-CERT-0002"},
        files=[("files", ("x.png", b"MZ\x90\x00", "image/png"))],
        headers=h,
    )
    assert exe.status_code == 415

    def error(**fields: Any) -> dict[str, Any]:
        answer = _notice(client, h, **fields)
        assert answer.status_code == 422, answer.text
        return dict(answer.json()["error"]["fields"][0])

    assert error(target_url="", target_ip="")["field"] == "target_url"
    assert error(target_ip="10.20.0.999", target_url="")["field"] == "target_ip"
    assert error(deadline="尽快")["field"] == "deadline"
    assert error(deadline="2月30日前")["field"] == "deadline"
    assert error(event_type="钓鱼")["field"] == "event_type"
    assert error(issuer="FBI")["field"] == "issuer"
    assert error(issuer="other")["field"] == "issuer_name"
    assert error(unknown="x")["field"] == "unknown"
    bad_json = client.post(
        "/api/v1/notices", content=b"{not json", headers={**h, "Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    unit_admin = factory.login(client, factory.user("unit_admin", factory.unit()))
    assert _notice(client, unit_admin).status_code == 403


NOW = datetime(2026, 3, 16, 10, 30, tzinfo=BEIJING)  # a Monday


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24小时内", NOW + timedelta(hours=24)),
        ("48 小时以内", NOW + timedelta(hours=48)),
        ("3天内", NOW + timedelta(days=3)),
        ("5个工作日内", datetime(2026, 3, 23, 10, 30, tzinfo=BEIJING)),
        ("3月20日前", datetime(2026, 3, 20, 23, 59, 59, tzinfo=BEIJING)),
        ("3月20日18时前", datetime(2026, 3, 20, 18, 0, tzinfo=BEIJING)),
        ("2026年4月1日", datetime(2026, 4, 1, 23, 59, 59, tzinfo=BEIJING)),
        ("1月5日前", datetime(2027, 1, 5, 23, 59, 59, tzinfo=BEIJING)),  # already past this year
        ("2026-03-20", datetime(2026, 3, 20, 23, 59, 59, tzinfo=BEIJING)),
        ("2026-03-20T18:00", datetime(2026, 3, 20, 18, 0, tzinfo=BEIJING)),
        ("2026-03-20T10:00:00Z", datetime(2026, 3, 20, 10, 0, tzinfo=UTC)),
        ("", None),
    ],
)
def test_deadlines_as_notices_word_them(text: str, expected: datetime | None) -> None:
    assert parse_deadline(text, NOW) == expected


@pytest.mark.parametrize("text", ["尽快", "0小时内", "13月1日前", "3月20日25时前", "next week"])
def test_unreadable_deadlines_are_refused(text: str) -> None:
    with pytest.raises(errors.InvalidField):
        parse_deadline(text, NOW)
