"""Group robots end to end (issue 14 point 6): the notices of a unit's request reach its DingTalk or
WeCom group through a receiver that checks the signature as the services do; a wrong secret is refused
with errcode 310000 and the delivery ends failed with that reason after its retries, then goes through
once the center corrects the secret and sends it again; a disabled robot, or a kind of notice the
robot does not take, receives nothing; the center's own robot hears what is mailed to the center."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from tests.api.test_delivery import fetch
from tests.api.test_requests import API, Portal, make_portal
from tests.factories import Factory
from tests.robots.conftest import Receiver
from vmportal.kit import db
from vmportal.kit.settings import Settings
from vmportal.mail import robots
from vmportal.mail.models import GroupRobot

BASE = "https://vm.nic.example.edu.cn"
SECRET = "SEC" + "0123456789abcdef" * 4


@pytest.fixture
def portal(client: TestClient, factory: Factory, settings: Settings) -> Portal:
    settings.base_url = f"{BASE}/"
    return make_portal(client, factory, quota=(50, 200, 512, 10000))


def configure(portal: Portal, path: str, **body: Any) -> dict[str, Any]:
    r = portal.client.put(f"{API}/group-robots/{path}", json=body, headers=portal.heads["center_admin"])
    assert r.status_code == 200, r.text
    return dict(r.json())


def messages(portal: Portal, **query: Any) -> list[dict[str, Any]]:
    r = portal.client.get(f"{API}/robot-messages", params=query, headers=portal.heads["operator"])
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def kinds(receiver: Receiver) -> list[str]:
    return [p.text.split("\n", 1)[0] for p in receiver.accepted]


def test_a_units_dingtalk_robot_hears_its_request_signed_and_never_the_password(
    portal: Portal, receiver: Receiver
) -> None:
    receiver.dingtalk["tok-cs"] = SECRET
    shown = configure(
        portal,
        f"units/{portal.unit.id}",
        kind="dingtalk",
        webhook_url=receiver.dingtalk_url("tok-cs"),
        secret=SECRET,
    )
    assert shown["enabled"] is True and shown["kinds"] == [] and shown["secret_set"] is True
    assert SECRET not in str(shown) and "tok-cs" not in shown["webhook_url"]

    req = portal.submitted()
    n = req["id"]
    assert receiver.accepted == []  # submitted is the center's notice, and the center has no robot
    assert portal.act("operator", n, "approve").status_code == 200
    done = portal.get("admin", f"/requests/{n}").json()
    assert done["state"] == "delivered"

    # Approved and delivered, each posted once with a signature the receiver verified.
    assert len(receiver.accepted) == 2 and receiver.refused == []
    approved, delivered = receiver.accepted
    assert approved.token == "tok-cs" and approved.query["sign"] and approved.query["timestamp"]
    assert approved.body["msgtype"] == "markdown"
    assert approved.body["markdown"]["title"].startswith(f"【网络与信息中心】虚拟机申请 #{n} 已批准")
    text = approved.text
    assert f"虚拟机申请 #{n} 已批准" in text and f"VM request #{n} approved" in text
    assert text.index("已批准") < text.index("approved")  # Chinese first
    assert f"({BASE}/requests/{n})" in text  # the portal link
    assert f"{BASE}/vms/{done['vm_id']}/credentials" in delivered.text  # where to collect them

    # The delivery status is the center's to read, per message, linked to the mail it repeats.
    rows = messages(portal, unit_id=portal.unit.id)
    assert [(m["kind"], m["state"], m["attempts"]) for m in rows] == [
        ("request_delivered", "sent", 1),
        ("request_approved", "sent", 1),
    ]
    assert all(m["notification_id"] and m["sent_at"] and m["last_error"] == "" for m in rows)

    # The password the unit collects afterwards was in no robot message.
    password = fetch(portal, done["vm_id"]).json()["password"]
    assert all(password not in str(p.body) for p in receiver.accepted)


def test_a_wrong_secret_fails_with_the_robots_reason_after_the_retries_then_the_center_fixes_it(
    portal: Portal, receiver: Receiver, settings: Settings
) -> None:
    settings.robot_max_attempts = 3
    receiver.dingtalk["tok-cs"] = SECRET
    configure(
        portal,
        f"units/{portal.unit.id}",
        kind="dingtalk",
        webhook_url=receiver.dingtalk_url("tok-cs"),
        secret="SEC-not-the-groups-secret",
        kinds=["request_approved"],
    )
    n = portal.submitted()["id"]
    assert portal.act("operator", n, "approve").status_code == 200
    [(posted, errcode, errmsg)] = receiver.refused
    assert errcode == 310000 and errmsg == "sign not match" and posted.token == "tok-cs"
    [first] = messages(portal)
    assert first["kind"] == "request_approved" and first["state"] == "pending" and first["attempts"] == 1
    assert "310000" in first["last_error"] and "sign not match" in first["last_error"]

    # The retries follow the mails' backoff (1 min, 2 …): nothing is due before then.
    now = db.utcnow()
    assert robots.send_due(now + timedelta(seconds=30))["retry"] == 0
    assert robots.send_due(now + timedelta(minutes=1, seconds=5))["retry"] == 1
    assert robots.send_due(now + timedelta(minutes=4))["failed"] == 1
    [failed] = messages(portal, state="failed")
    assert failed["attempts"] == 3 and failed["next_attempt_at"] is None
    assert failed["last_error"].startswith("attempt 3: refused by the robot: errcode 310000: sign not match")
    assert len(receiver.refused) == 3 and receiver.accepted == []

    # The center corrects the secret and sends the failed message again: it goes through.
    configure(portal, f"units/{portal.unit.id}", secret=SECRET)
    r = portal.client.post(f"{API}/robot-messages/{failed['id']}/resend", headers=portal.heads["operator"])
    assert r.status_code == 202, r.text
    [sent] = messages(portal, state="sent")
    assert sent["id"] == failed["id"] and sent["attempts"] == 1
    [accepted] = receiver.accepted
    assert f"VM request #{n} approved" in accepted.text
    # A sent message is not sent twice.
    r = portal.client.post(f"{API}/robot-messages/{failed['id']}/resend", headers=portal.heads["operator"])
    assert r.status_code == 409 and r.json()["error"]["state"] == "sent"


def test_a_rate_limit_answer_is_retried_without_spending_an_attempt(
    portal: Portal, receiver: Receiver
) -> None:
    receiver.dingtalk["tok-cs"] = ""  # an unsigned robot (keyword or IP protection instead)
    receiver.rate_limit_next = 1
    configure(portal, f"units/{portal.unit.id}", kind="dingtalk", webhook_url=receiver.dingtalk_url("tok-cs"))
    n = portal.submitted()["id"]
    assert portal.act("operator", n, "reject", {"reason": "用途不符合规定"}).status_code == 200
    [waiting] = messages(portal)
    assert waiting["state"] == "pending" and waiting["attempts"] == 0
    assert "rate limited" in waiting["last_error"] and "130101" in waiting["last_error"]
    assert robots.send_due(db.utcnow() + timedelta(minutes=3))["sent"] == 1
    [rejected] = receiver.accepted
    assert "用途不符合规定" in rejected.text and "sign" not in rejected.query


def test_a_disabled_robot_or_a_kind_it_does_not_take_receives_nothing(
    portal: Portal, receiver: Receiver
) -> None:
    receiver.wecom.add("key-cs")
    configure(
        portal,
        f"units/{portal.unit.id}",
        kind="wecom",
        webhook_url=receiver.wecom_url("key-cs"),
        enabled=False,
    )
    n = portal.submitted()["id"]
    assert portal.act("operator", n, "approve").status_code == 200
    assert receiver.accepted == [] and receiver.refused == [] and messages(portal) == []

    # On again, for rejections only: an approval is not posted, a rejection is.
    configure(portal, f"units/{portal.unit.id}", enabled=True, kinds=["request_rejected"])
    n2 = portal.submitted(hostname="lab-db")["id"]
    assert portal.act("operator", n2, "approve").status_code == 200
    assert receiver.accepted == []
    n3 = portal.submitted(hostname="lab-app")["id"]
    assert portal.act("operator", n3, "reject", {"reason": "重复申请"}).status_code == 200
    [posted] = receiver.accepted
    assert posted.kind == "wecom" and posted.token == "key-cs" and "重复申请" in posted.text
    assert set(posted.body) == {"msgtype", "markdown"} and set(posted.body["markdown"]) == {"content"}


def test_the_centers_robot_hears_what_is_mailed_to_the_center(portal: Portal, receiver: Receiver) -> None:
    receiver.dingtalk["tok-nic"] = SECRET
    configure(portal, "center", kind="dingtalk", webhook_url=receiver.dingtalk_url("tok-nic"), secret=SECRET)
    n = portal.submitted()["id"]
    [submitted] = receiver.accepted
    assert submitted.token == "tok-nic" and f"新的虚拟机申请 #{n}" in submitted.text
    [row] = messages(portal)
    assert row["kind"] == "request_submitted" and row["state"] == "sent"
    # The stored configuration keeps the token and the secret encrypted.
    with db.transaction() as s:
        [robot] = s.exec(select(GroupRobot)).all()
        assert robot.scope == "center" and robot.unit_id is None
        assert "tok-nic" not in robot.webhook_encrypted and SECRET not in robot.secret_encrypted


def test_an_unreachable_robot_is_retried(portal: Portal, receiver: Receiver, settings: Settings) -> None:
    # A port nobody listens on: a transport error is a retry like the SMTP server being down.
    configure(
        portal,
        f"units/{portal.unit.id}",
        kind="wecom",
        webhook_url="http://127.0.0.1:9/cgi-bin/webhook/send?key=k",
    )
    n = portal.submitted()["id"]
    assert portal.act("operator", n, "reject", {"reason": "资料不全"}).status_code == 200
    [row] = messages(portal)
    assert row["state"] == "pending" and row["attempts"] == 1 and "ConnectError" in row["last_error"]
