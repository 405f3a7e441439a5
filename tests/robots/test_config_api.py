"""The group-robot configuration API (center_admin only): a webhook outside the allowed hosts, plain
http off loopback, the wrong path for its service, a secret on a WeCom robot, an unknown kind or kind
of notice each answer 422 naming the field and the rule, in Chinese and English, and write nothing;
the token and the secret are never shown back in full; a change is audited."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from tests.factories import Factory
from tests.robots.conftest import Receiver
from vmportal.audit.models import AuditEntry
from vmportal.kit import db
from vmportal.mail.models import GroupRobot

API = "/api/v1"
DING = "https://oapi.dingtalk.com/robot/send?access_token=0123456789abcdef0123456789abcdef"
WECOM = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
SECRET = "SECdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef"


@pytest.fixture
def admin(client: TestClient, factory: Factory) -> dict[str, str]:
    return factory.login(client, factory.user("center_admin"))


def put(client: TestClient, headers: dict[str, str], path: str, body: Any) -> Any:
    return client.put(f"{API}/group-robots/{path}", json=body, headers=headers)


def field_error(r: Any) -> tuple[str, str, str, str]:
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    [first] = error["fields"][:1]
    return first["field"], first["rule"], error["message"], error["message_zh"]


@pytest.mark.parametrize(
    ("body", "field", "rule", "en", "zh"),
    [
        (
            {"kind": "dingtalk", "webhook_url": "https://hooks.example.com/robot/send?access_token=x"},
            "webhook_url",
            "allowed_host",
            "host hooks.example.com is not an allowed robot host",
            "Webhook 地址：主机 hooks.example.com 不在允许的机器人主机列表中",
        ),
        (
            {"kind": "dingtalk", "webhook_url": DING.replace("https", "http")},
            "webhook_url",
            "https",
            "must use https",
            "Webhook 地址：须使用 https",
        ),
        (
            {"kind": "wecom", "webhook_url": DING},
            "webhook_url",
            "service_path",
            "a WeCom robot's webhook is …/cgi-bin/webhook/send?key=…",
            "企业微信机器人的 Webhook 地址形如",
        ),
        (
            {"kind": "dingtalk", "webhook_url": "https://oapi.dingtalk.com/robot/send"},
            "webhook_url",
            "service_path",
            "/robot/send?access_token=",
            "钉钉机器人的 Webhook 地址形如",
        ),
        (
            {"kind": "dingtalk", "webhook_url": "ftp://oapi.dingtalk.com/x"},
            "webhook_url",
            "url",
            "https://",
            "网址",
        ),
        ({"kind": "dingtalk"}, "webhook_url", "required", "is required", "须填写机器人的 Webhook 地址"),
        (
            {"kind": "wecom", "webhook_url": WECOM, "secret": SECRET},
            "secret",
            "not_signed",
            "no signing",
            "没有加签密钥",
        ),
        (
            {"kind": "dingtalk", "webhook_url": DING, "secret": "SEC with spaces"},
            "secret",
            "format",
            "no spaces",
            "不含空格",
        ),
        ({"kind": "slack", "webhook_url": DING}, "kind", "enum", "", "类型"),
        (
            {"kind": "dingtalk", "webhook_url": DING, "kinds": ["request_approved", "birthday"]},
            "kinds.1",
            "enum",
            "",
            "通知类型",
        ),
        ({"kind": "dingtalk", "webhook_url": DING, "colour": "red"}, "colour", "extra_forbidden", "", ""),
    ],
)
def test_a_bad_configuration_names_the_field_and_rule_in_both_languages_and_writes_nothing(
    client: TestClient,
    factory: Factory,
    admin: dict[str, str],
    body: dict[str, Any],
    field: str,
    rule: str,
    en: str,
    zh: str,
) -> None:
    unit = factory.unit()
    got_field, got_rule, message, message_zh = field_error(put(client, admin, f"units/{unit.id}", body))
    assert (got_field, got_rule) == (field, rule)
    assert en in message and zh in message_zh
    assert message_zh != message  # a Chinese message, not the English one again
    with db.transaction() as s:
        assert s.exec(select(GroupRobot)).all() == []


def test_only_the_center_admin_configures_and_an_unknown_unit_is_404(
    client: TestClient, factory: Factory, admin: dict[str, str]
) -> None:
    unit = factory.unit()
    body = {"kind": "dingtalk", "webhook_url": DING}
    for role in ("center_operator", "auditor", "unit_admin"):
        headers = factory.login(client, factory.user(role, unit if role == "unit_admin" else None))
        assert put(client, headers, f"units/{unit.id}", body).status_code == 403
        assert client.get(f"{API}/group-robots", headers=headers).status_code == 403
    assert put(client, admin, "units/999999", body).status_code == 404
    assert put(client, admin, "units/0", body).status_code == 422
    assert client.get(f"{API}/group-robots/units/{unit.id}", headers=admin).status_code == 404


def test_the_token_and_secret_are_never_shown_back_and_a_change_is_audited(
    client: TestClient, factory: Factory, admin: dict[str, str]
) -> None:
    unit = factory.unit()
    r = put(client, admin, f"units/{unit.id}", {"kind": "dingtalk", "webhook_url": DING, "secret": SECRET})
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["scope"] == f"unit:{unit.id}" and shown["kind"] == "dingtalk" and shown["enabled"] is True
    assert shown["webhook_url"].startswith("https://oapi.dingtalk.com/robot/send?access_token=012")
    assert shown["secret_set"] is True and shown["secret_hint"].startswith("SEC")
    for answer in (
        r,
        client.get(f"{API}/group-robots", headers=admin),
        client.get(f"{API}/group-robots/units/{unit.id}", headers=admin),
    ):
        assert answer.status_code == 200
        assert SECRET not in answer.text and "0123456789abcdef0123456789abcdef" not in answer.text

    # A partial change keeps the rest; "" removes the secret.
    r = put(client, admin, f"units/{unit.id}", {"enabled": False, "secret": ""})
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["secret_set"] is False
    assert r.json()["webhook_url"] == shown["webhook_url"]
    # Changing the kind re-checks the stored webhook against the new service.
    field, rule, _, _ = field_error(put(client, admin, f"units/{unit.id}", {"kind": "wecom"}))
    assert (field, rule) == ("webhook_url", "service_path")

    with db.transaction() as s:
        rows = s.exec(
            select(AuditEntry)
            .where(col(AuditEntry.action) == "group_robot.configure")
            .order_by(col(AuditEntry.id))
        ).all()
        assert [r.target_id for r in rows] == [f"unit:{unit.id}"] * 2
        assert all(
            SECRET not in str(r.after) and "0123456789abcdef0123456789abcdef" not in str(r.after)
            for r in rows
        )
        assert (
            rows[1].before is not None
            and rows[1].before["enabled"] is True
            and rows[1].after["enabled"] is False
        )


def test_loopback_http_only_when_the_allowed_list_names_it(
    client: TestClient, factory: Factory, admin: dict[str, str], receiver: Receiver
) -> None:
    unit = factory.unit()
    # The receiver fixture adds 127.0.0.1 to VMPORTAL_ROBOT_ALLOWED_HOSTS: plain http is accepted there.
    r = put(client, admin, "center", {"kind": "wecom", "webhook_url": receiver.wecom_url("k1")})
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "center" and r.json()["unit_id"] is None
    # ::1 is loopback too, but not listed: refused.
    field, rule, _, _ = field_error(
        put(
            client,
            admin,
            f"units/{unit.id}",
            {"kind": "wecom", "webhook_url": "http://[::1]:8/cgi-bin/webhook/send?key=k"},
        )
    )
    assert (field, rule) == ("webhook_url", "allowed_host")
