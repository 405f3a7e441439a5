"""The request lifecycle's mails and the failed power operation's (issue 14 point 6), received by a real
SMTP server (aiosmtpd on loopback): submitted (the center; the lead when endorsement is required),
endorsed, approved, rejected with its reason, delivered (where to collect the credentials, never the
password), failed (the center with the error each attempt, the unit once); a failed power operation
(the unit's admin, the center in copy). A refused action sends nothing. Tasks run inline, so each
mail has arrived when the request that caused it has answered."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from hypervisors.base import TaskFailed
from tests.api.test_delivery import fetch, simulator
from tests.api.test_power import (
    World,
    world,  # noqa: F401  (the "world" fixture)
)
from tests.api.test_power import simulator as power_simulator
from tests.api.test_requests import API, Portal, make_portal
from tests.factories import Factory
from tests.security_reports.conftest import (
    CENTER_MAILBOX,
    MailServer,
    Received,
    mail_server,  # noqa: F401  (the "mail_server" fixture)
)
from vmportal.kit import db
from vmportal.kit.settings import Settings
from vmportal.unit.models import Contact, Unit

BASE = "https://vm.nic.example.edu.cn"


@pytest.fixture
def portal(client: TestClient, factory: Factory, settings: Settings) -> Portal:
    settings.base_url = f"{BASE}/"
    return make_portal(client, factory, quota=(50, 200, 512, 10000))


def registry(unit: Unit) -> dict[str, str]:
    with db.transaction() as s:
        return {c.role: c.email for c in s.exec(select(Contact).where(Contact.unit_id == unit.id))}


def kinds(server: MailServer) -> list[str]:
    return [str(m.message["X-Vmportal-Notification"]).split()[0] for m in server.messages]


def only(server: MailServer, kind: str) -> Received:
    [mail] = [m for m in server.messages if str(m.message["X-Vmportal-Notification"]).startswith(f"{kind} ")]
    return mail


def assert_bilingual(mail: Received, zh: str, en: str) -> None:
    body = mail.body
    assert zh in body and en in body, body
    assert body.index(zh) < body.index(en)  # Chinese first


def test_submitted_approved_delivered_and_never_the_password(
    portal: Portal,
    mail_server: MailServer,  # noqa: F811
) -> None:
    contacts = registry(portal.unit)
    admin, lead = contacts["security_admin"], contacts["security_lead"]
    req = portal.submitted()
    n = req["id"]

    # Submitted: the center decides, the center alone hears of it.
    assert kinds(mail_server) == ["request_submitted"]
    submitted = only(mail_server, "request_submitted")
    assert submitted.rcpt_tos == [CENTER_MAILBOX] and submitted.message["Cc"] is None
    assert submitted.subject.startswith(f"【网络与信息中心】新的虚拟机申请 #{n}（")
    assert f"New VM request #{n} (" in submitted.subject
    assert_bilingual(submitted, "请信息中心登录平台审批", "Please decide on it in the portal")
    assert "lab-web" in submitted.body and "本科课程实验平台" in submitted.body
    assert f"{BASE}/requests/{n}）" in submitted.body and f"Details: {BASE}/requests/{n})" in submitted.body

    r = portal.act("operator", n, "approve")
    assert r.status_code == 200, r.text
    done = portal.get("admin", f"/requests/{n}").json()
    assert done["state"] == "delivered"
    vm = portal.get("admin", f"/vms/{done['vm_id']}").json()
    assert kinds(mail_server) == ["request_submitted", "request_approved", "request_delivered"]

    # Approved: the unit's administrator and lead, the center in copy.
    approved = only(mail_server, "request_approved")
    assert sorted(approved.rcpt_tos) == sorted([admin, lead, CENTER_MAILBOX])
    assert approved.message["Cc"] == CENTER_MAILBOX
    assert f"虚拟机申请 #{n} 已批准" in approved.subject and f"VM request #{n} approved" in approved.subject
    assert_bilingual(approved, "信息中心已批准以下虚拟机申请", "The center approved the VM request below")
    assert f"{BASE}/requests/{n}" in approved.body

    # Delivered: the unit's administrator (not the lead), the center in copy; where to collect.
    delivered = only(mail_server, "request_delivered")
    assert delivered.message["To"] == admin and delivered.message["Cc"] == CENTER_MAILBOX
    assert lead not in delivered.rcpt_tos
    assert f"虚拟机申请 #{n} 已交付" in delivered.subject and vm["ip_address"] in delivered.subject
    body = delivered.body
    assert_bilingual(delivered, "初始密码不通过邮件发送", "The initial password is not sent by mail")
    assert vm["ip_address"] in body and "管理员账号：vmadmin" in body and "Admin account: vmadmin" in body
    assert f"/api/v1/vms/{vm['id']}/credentials" in body and "只能领取一次" in body
    assert f"{BASE}/vms/{vm['id']}）" in body  # the VM's page on the published address

    # The password the unit collects afterwards is in no mail.
    r = fetch(portal, vm["id"])
    assert r.status_code == 200, r.text
    password = r.json()["password"]
    for mail in mail_server.messages:
        assert password not in mail.message.as_string() and password not in mail.body


def test_a_rejection_carries_its_reason_and_refused_actions_send_nothing(
    portal: Portal,
    mail_server: MailServer,  # noqa: F811
) -> None:
    contacts = registry(portal.unit)
    n = portal.submitted()["id"]
    assert kinds(mail_server) == ["request_submitted"]

    # Refused: no reason, the wrong role, another unit: nothing written, nothing sent.
    assert portal.act("operator", n, "reject", {"reason": "  "}).status_code == 422
    assert portal.act("admin", n, "reject", {"reason": "不需要"}).status_code == 403
    assert portal.act("admin", n, "approve").status_code == 403
    assert portal.act("lead", n, "endorse").status_code == 409  # the center does not require it
    assert portal.act("other_admin", n, "cancel").status_code == 404
    assert kinds(mail_server) == ["request_submitted"]

    reason = "申请用途与信息系统登记表不符，请补充登记后重新申请"
    r = portal.act("operator", n, "reject", {"reason": reason})
    assert r.status_code == 200, r.text
    rejected = only(mail_server, "request_rejected")
    assert sorted(rejected.rcpt_tos) == sorted(
        [contacts["security_admin"], contacts["security_lead"], CENTER_MAILBOX]
    )
    assert f"虚拟机申请 #{n} 未获批准" in rejected.subject and f"VM request #{n} rejected" in rejected.subject
    assert f"驳回理由：{reason}" in rejected.body and f"Reason: {reason}" in rejected.body
    assert rejected.body.index("驳回理由") < rejected.body.index("Reason:")

    # Rejected is final: a second decision is a 409 and sends nothing more.
    assert portal.act("operator", n, "reject", {"reason": "again"}).status_code == 409
    assert portal.act("operator", n, "approve").status_code == 409
    assert kinds(mail_server) == ["request_submitted", "request_rejected"]

    # A withdrawal has no mail.
    m = portal.submitted()["id"]
    assert portal.act("admin", m, "cancel", {"reason": "不再需要"}).status_code == 200
    assert kinds(mail_server) == ["request_submitted", "request_rejected", "request_submitted"]


def test_with_endorsement_required_the_lead_is_asked_then_everyone_hears_it_was_endorsed(
    portal: Portal,
    mail_server: MailServer,  # noqa: F811
) -> None:
    contacts = registry(portal.unit)
    r = portal.client.put(
        f"{API}/settings", json={"endorsement_required": True}, headers=portal.heads["center_admin"]
    )
    assert r.status_code == 200, r.text
    n = portal.submitted()["id"]
    submitted = only(mail_server, "request_submitted")
    assert submitted.message["To"] == contacts["security_lead"] and submitted.message["Cc"] == CENTER_MAILBOX
    assert_bilingual(submitted, "请单位网络安全负责人登录平台确认", "the unit's security lead should endorse")

    assert portal.act("operator", n, "approve").status_code == 409  # endorsement first: no mail
    assert kinds(mail_server) == ["request_submitted"]
    assert portal.act("lead", n, "endorse").status_code == 200
    endorsed = only(mail_server, "request_endorsed")
    assert sorted(endorsed.rcpt_tos) == sorted(
        [contacts["security_admin"], contacts["security_lead"], CENTER_MAILBOX]
    )
    assert f"虚拟机申请 #{n} 已经单位负责人确认" in endorsed.subject
    assert_bilingual(endorsed, "现由信息中心审批", "the center decides on it now")
    assert portal.act("operator", n, "approve").status_code == 200
    assert kinds(mail_server) == [
        "request_submitted",
        "request_endorsed",
        "request_approved",
        "request_delivered",
    ]


def test_a_failed_provisioning_tells_the_center_each_attempt_and_the_unit_once(
    portal: Portal,
    settings: Settings,
    mail_server: MailServer,  # noqa: F811
) -> None:
    contacts = registry(portal.unit)
    error = "Insufficient disk space on datastore 'sim-ds-01'"
    simulator(settings).inject_fault("clone", TaskFailed(error), times=2)
    n = portal.submitted()["id"]
    assert portal.act("operator", n, "approve").status_code == 200
    assert portal.get("operator", f"/requests/{n}").json()["state"] == "failed"

    def failed() -> list[Received]:
        return [
            m for m in mail_server.messages if m.message["X-Vmportal-Notification"].startswith("request_f")
        ]

    center, unit = failed()
    assert center.rcpt_tos == [CENTER_MAILBOX]
    assert f"虚拟机申请 #{n} 开通失败" in center.subject
    assert f"失败原因：{error}" in center.body and f"Error: {error}" in center.body
    assert "第 1 次开通失败" in center.body
    assert unit.message["To"] == contacts["security_admin"] and unit.message["Cc"] == CENTER_MAILBOX
    assert_bilingual(unit, "信息中心已收到通知并将重新开通", "The center has been told")
    assert error not in unit.body  # the hypervisor's detail is the center's

    # The retry fails again: the center hears again, the unit was told already.
    assert portal.act("operator", n, "retry").status_code == 200
    assert portal.get("operator", f"/requests/{n}").json()["state"] == "failed"
    assert len(failed()) == 3
    assert failed()[2].rcpt_tos == [CENTER_MAILBOX] and "第 2 次开通失败" in failed()[2].body

    # The third attempt succeeds: delivered.
    assert portal.act("operator", n, "retry").status_code == 200
    assert kinds(mail_server)[-1] == "request_delivered"


def test_a_failed_power_operation_mails_the_unit_admin_and_the_center(
    world: World,  # noqa: F811
    mail_server: MailServer,  # noqa: F811
) -> None:
    contacts = registry(world.unit_a)
    # Refused before it is queued (another unit's admin, the auditor): no operation, no mail.
    assert world.power("b_admin", "stop").status_code == 404
    assert world.power("auditor", "stop").status_code == 403
    # Succeeded: no mail.
    assert world.power("a_admin", "restart").status_code == 202
    assert mail_server.messages == []

    power_simulator(world).inject_fault("power", TaskFailed("Host sim-esx-01 is in maintenance mode"))
    r = world.power("a_admin", "stop")
    assert r.status_code == 202
    op: dict[str, Any] = world.get("a_admin", f"/operations/{r.json()['id']}").json()
    assert op["state"] == "failed"
    [mail] = mail_server.messages
    assert mail.message["X-Vmportal-Notification"] == f"power_failed power_operation:{op['id']}"
    assert mail.message["To"] == contacts["security_admin"] and mail.message["Cc"] == CENTER_MAILBOX
    assert "a-web-01" in mail.subject and "关机（强制）操作失败" in mail.subject
    assert "Power operation stop of VM a-web-01" in mail.subject
    assert_bilingual(mail, "失败原因：Host sim-esx-01 is in maintenance mode", "Error: Host sim-esx-01")
    assert f"/vms/{world.vm.id}" in mail.body
