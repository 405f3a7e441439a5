"""群机器人 (/admin/robots), the center administrator's page: a unit's robot set up through the form
(blank webhook and secret kept on a later change, never put back into the page), a bad webhook shown
beside its field with the rule and nothing written, the delivery status listed and a failed message sent
again with its button; every other role is refused naming the rule."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import select

from tests.factories import PASSWORD, Factory
from tests.robots.conftest import Receiver
from vmportal.kit import db
from vmportal.mail.models import GroupRobot, NotificationState, RobotMessage
from vmportal.mail.service import MailEvent, notify

SECRET = "SEC" + "fedcba9876543210" * 4


def _log_in(client: TestClient, username: str) -> None:
    r = client.post(
        "/login", data={"username": username, "password": PASSWORD, "next": "/"}, follow_redirects=False
    )
    assert r.status_code == 303, r.text


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m is not None
    return m.group(1)


def _error(html: str, name: str) -> str:
    m = re.search(rf'id="f-{name}-error"[^>]*>(.*?)</p>', html, re.S)
    assert m is not None, f"no error beside {name}"
    return re.sub(r"<[^>]+>", "", m.group(1)).strip()


def _form(token: str, **fields: Any) -> dict[str, Any]:
    return {
        "csrf_token": token,
        "kind": "dingtalk",
        "webhook_url": "",
        "secret": "",
        "enabled": "true",
        **fields,
    }


def test_the_admin_sets_up_a_units_robot_and_sends_a_failed_message_again(
    client: TestClient, factory: Factory, receiver: Receiver
) -> None:
    unit = factory.unit()
    admin = factory.user("center_admin")
    _log_in(client, admin.username)
    page = client.get("/admin/robots")
    assert page.status_code == 200
    assert '<li><a href="/admin/robots"' in page.text  # in the admin's navigation
    assert f'data-robot="{unit.id}"' in page.text and "无机器人" in page.text

    edit = client.get(f"/admin/robots?edit={unit.id}")
    token = _csrf(edit.text)
    # The kinds of notice are ticked by their words; the code the API takes stays beside them.
    assert 'value="containment"> 虚拟机已处置（隔离） <code class="hint">containment</code>' in edit.text
    # A webhook on a host that is not allowed: beside its field, with the rule; nothing written.
    bad = client.post(
        f"/admin/robots/{unit.id}",
        data=_form(token, webhook_url="https://hooks.example.com/robot/send?access_token=x", secret=SECRET),
    )
    assert bad.status_code == 422
    assert "不在允许的机器人主机列表中" in _error(bad.text, "webhook_url") and "allowed_host" in bad.text
    assert SECRET not in bad.text  # a credential is never put back into the page
    with db.transaction() as s:
        assert s.exec(select(GroupRobot)).all() == []

    receiver.dingtalk["tok-page"] = SECRET
    url = receiver.dingtalk_url("tok-page")
    saved = client.post(
        f"/admin/robots/{unit.id}",
        data={
            **_form(token, webhook_url=url, secret=SECRET),
            "kinds": ["finding_opened", "request_approved"],
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    listed = client.get("/admin/robots?done=saved")
    assert "安全隐患已下发、申请已批准" in listed.text  # the row says what the robot takes, in words
    assert "群机器人已保存" in listed.text and "tok-page" not in listed.text and SECRET not in listed.text
    # A later change with blank webhook and secret keeps both.
    client.post(f"/admin/robots/{unit.id}", data=_form(token, enabled="false"), follow_redirects=False)
    with db.transaction() as s:
        [robot] = s.exec(select(GroupRobot)).all()
        assert robot.enabled is False and robot.secret_encrypted and robot.kinds == []
    client.post(f"/admin/robots/{unit.id}", data=_form(token), follow_redirects=False)

    # A failed message is listed with its reason, and sent again with its button.
    with db.transaction() as s:
        notify(
            s,
            MailEvent.FINDING_OPENED,
            unit.id,
            subject_zh="发现安全隐患",
            subject_en="Finding opened",
            body_zh="请整改。",
            body_en="Please fix it.",
            link="/findings/1",
        )
    with db.transaction() as s:
        [message] = s.exec(select(RobotMessage)).all()
        assert message.state == NotificationState.SENT.value
        message.state, message.last_error = (
            NotificationState.FAILED.value,
            "attempt 10: errcode 310000: sign not match",
        )
        s.add(message)
    listed = client.get("/admin/robots?state=failed")
    assert (
        f'data-message="{message.id}" data-state="failed"' in listed.text and "sign not match" in listed.text
    )
    again = client.post(
        f"/admin/robots/messages/{message.id}/resend", data={"csrf_token": token}, follow_redirects=False
    )
    assert again.status_code == 303
    with db.transaction() as s:
        assert s.get(RobotMessage, message.id).state == NotificationState.SENT.value  # type: ignore[union-attr]
    assert len(receiver.accepted) == 2


def test_other_roles_are_refused_naming_the_rule(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    for role in ("center_operator", "auditor", "unit_admin"):
        user = factory.user(role, unit if role == "unit_admin" else None)
        client.cookies.clear()
        _log_in(client, user.username)
        page = client.get("/admin/robots")
        assert page.status_code == 403 and "robots.read" in page.text
        assert '<li><a href="/admin/robots"' not in page.text
        token = _csrf(client.get("/").text)
        r = client.post(
            f"/admin/robots/{unit.id}",
            data=_form(token, webhook_url="https://oapi.dingtalk.com/robot/send?access_token=x"),
        )
        assert r.status_code == 403 and "robots.configure" in r.text
    with db.transaction() as s:
        assert s.exec(select(GroupRobot)).all() == []
