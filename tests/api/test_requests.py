"""VM requests through the HTTP API (issue 2, points 4 and 5): the policy layer at submission, the
lifecycle, approval's race-free quota re-check with the center_admin's override, and the deadline
filters. Tasks run inline: an approval is delivered on the simulator before the answer returns."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import func, select

from policies.roles import Actor, Role
from tests.factories import Factory
from vmportal.audit.models import AuditEntry
from vmportal.connection.service import forget_templates
from vmportal.jobs.models import OutboxTask
from vmportal.kit import db, errors
from vmportal.request import service
from vmportal.request.lifecycle import Action
from vmportal.request.models import VMRequest
from vmportal.request.service import checks, decisions
from vmportal.unit.models import Quota, Unit
from vmportal.vm.models import VM

API = "/api/v1"


@dataclass
class Portal:
    """One unit with complete paperwork, its admin and lead, the center's staff, and a pool."""

    client: TestClient
    factory: Factory
    unit: Unit
    connection_id: int
    heads: dict[str, dict[str, str]]

    def body(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "system_name": "本科课程实验平台",
            "purpose": "teaching",
            "description": "计算机学院本科生操作系统课程实验环境",
            "hostname": "lab-web",
            "connection_id": self.connection_id,
            "template_ref": "tpl-rocky-9",
            "vcpus": 2,
            "memory_gib": 4,
            "disk_gib": 40,
        }
        body.update(overrides)
        return {k: v for k, v in body.items() if v is not None}

    def submit(self, who: str = "admin", **overrides: Any) -> httpx.Response:
        return self.client.post(f"{API}/requests", json=self.body(**overrides), headers=self.heads[who])

    def submitted(self, **overrides: Any) -> dict[str, Any]:
        r = self.submit(**overrides)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def act(
        self, who: str, request_id: int, action: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        return self.client.post(f"{API}/requests/{request_id}/{action}", json=body, headers=self.heads[who])

    def get(self, who: str, path: str) -> httpx.Response:
        return self.client.get(f"{API}{path}", headers=self.heads[who])


def make_portal(client: TestClient, factory: Factory, **unit_options: Any) -> Portal:
    forget_templates()
    unit = factory.unit(**unit_options)
    other = factory.unit()
    conn = factory.connection()
    factory.pool(cidr="10.20.0.0/24")
    users = {
        "admin": factory.user("unit_admin", unit),
        "lead": factory.user("unit_lead", unit),
        "other_admin": factory.user("unit_admin", other),
        "other_lead": factory.user("unit_lead", other),
        "center_admin": factory.user("center_admin"),
        "operator": factory.user("center_operator"),
        "auditor": factory.user("auditor"),
    }
    heads = {name: factory.login(client, user) for name, user in users.items()}
    assert conn.id is not None
    return Portal(client, factory, unit, conn.id, heads)


@pytest.fixture
def portal(client: TestClient, factory: Factory) -> Portal:
    return make_portal(client, factory)


def counts() -> dict[str, int]:
    with db.transaction() as s:
        return {
            model.__name__: int(s.exec(select(func.count()).select_from(model)).one())
            for model in (VMRequest, VM, OutboxTask, AuditEntry)
        }


def refusals() -> list[AuditEntry]:
    """The audit rows of refused submissions, oldest first."""
    with db.transaction() as s:
        query = select(AuditEntry).where(AuditEntry.action == "request.submit", AuditEntry.result == "denied")
        return list(s.exec(query.order_by(AuditEntry.id)))  # type: ignore[arg-type]


def written() -> dict[str, int]:
    """counts() without the audit log: a refusal writes its audit row and nothing else."""
    return {k: v for k, v in counts().items() if k != "AuditEntry"}


def assert_denied(r: httpx.Response, rule: str) -> dict[str, Any]:
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["rule"] == rule
    assert error["message"] and error["message_zh"]
    assert rule in error["rules"]
    return dict(error)


# ---- submission under the rules ------------------------------------------------------------------


def test_a_proper_request_is_submitted_with_its_due_time(portal: Portal) -> None:
    r = portal.submit()
    assert r.status_code == 201, r.text
    req = r.json()
    assert req["state"] == "submitted"
    assert req["unit_id"] == portal.unit.id
    assert req["template_name"] == "Rocky Linux 9"
    assert req["deadline_status"] == "on_time"
    assert req["actions"] == ["cancel"]
    # The agreement was filed 30 days ago, so the week runs from the submission.
    submitted = _parse(req["submitted_at"])
    assert _parse(req["due_at"]) - submitted == timedelta(days=7)
    with db.transaction() as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "request.submit")).one()
    assert entry.target_id == str(req["id"]) and entry.unit_id == portal.unit.id


def test_due_time_runs_from_a_later_agreement(client: TestClient, factory: Factory) -> None:
    p = make_portal(client, factory, agreement_filed_days_ago=0)
    with db.transaction() as s:
        from vmportal.unit.models import Document

        doc = s.exec(
            select(Document).where(Document.unit_id == p.unit.id, Document.kind == "vm_agreement")
        ).one()
        doc.filed_at = db.utcnow() + timedelta(hours=5)  # filed after the submission below
        s.add(doc)
        filed = doc.filed_at
    req = p.submitted()
    assert _parse(req["due_at"]) == filed + timedelta(days=7)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"purpose": "news", "system_name": "学院新闻网"}, "purpose"),
        ({"purpose": "publicity", "system_name": "招生宣传平台"}, "purpose"),
        ({"system_name": "学院新闻网站", "purpose": "management"}, "system_name"),
        ({"purpose": "personal"}, "purpose"),
        ({"beneficiary": "person"}, "beneficiary"),
        ({"purpose": "other"}, "purpose"),
    ],
)
def test_news_sites_and_personal_requests_are_refused_by_rule_purpose(
    portal: Portal, overrides: dict[str, Any], field: str
) -> None:
    before, audited = written(), len(refusals())
    error = assert_denied(portal.submit(**overrides), "purpose")
    assert error["denials"][0]["field"] == field
    assert error["denials"][0]["clause"].startswith("agreement §1")
    assert written() == before
    # The refusal is in the audit log (issue 11 point 8): who asked, for which unit, by which rule.
    rows = refusals()
    assert len(rows) == audited + 1
    row = rows[-1]
    assert (row.actor_role, row.unit_id, row.target_type) == ("unit_admin", portal.unit.id, "vm_request")
    assert row.after is not None and row.after["rules"] == ["purpose"]
    assert "[purpose]" in row.detail


def test_news_site_answer_points_to_the_site_cluster_platform(portal: Portal) -> None:
    error = assert_denied(portal.submit(purpose="news", system_name="学院新闻网"), "purpose")
    assert "站点群" in error["message_zh"] and "site-cluster" in error["message"]


def test_a_unit_without_a_signed_agreement_is_refused_by_rule_paperwork(
    client: TestClient, factory: Factory
) -> None:
    p = make_portal(client, factory, agreement=False)
    before, audited = written(), len(refusals())
    error = assert_denied(p.submit(), "paperwork")
    assert "《虚拟机服务协议书》" in error["message_zh"]
    assert written() == before
    rows = refusals()
    assert len(rows) == audited + 1 and rows[-1].after is not None
    assert rows[-1].after["rules"] == ["paperwork"] and rows[-1].unit_id == p.unit.id


def test_a_unit_without_a_contact_registry_is_refused_by_rule_paperwork(
    client: TestClient, factory: Factory
) -> None:
    p = make_portal(client, factory, paperwork=False)
    assert_denied(p.submit(), "paperwork")


def test_an_over_quota_request_is_refused_by_rule_quota(client: TestClient, factory: Factory) -> None:
    p = make_portal(client, factory, quota=(2, 4, 8, 100))
    before, audited = written(), len(refusals())
    error = assert_denied(p.submit(vcpus=6), "quota")
    assert "vCPU" in error["message"]
    assert written() == before
    rows = refusals()
    assert len(rows) == audited + 1 and rows[-1].after is not None
    assert rows[-1].after["rules"] == ["quota"] and rows[-1].after["vcpus"] == 6
    # Pending requests count: the second request would pass the memory quota with the first.
    p.submitted(memory_gib=6, disk_gib=40)
    error = assert_denied(p.submit(memory_gib=4, disk_gib=40, hostname="lab-two"), "quota")
    assert "pending" in error["message"]


def test_all_deciding_rules_are_named(client: TestClient, factory: Factory) -> None:
    p = make_portal(client, factory, agreement=False, quota=(0, 0, 0, 0))
    error = assert_denied(p.submit(purpose="news", system_name="学院新闻网"), "purpose")
    assert error["rules"] == ["purpose", "paperwork", "quota"]


def test_a_registered_system_of_the_unit_can_be_named(portal: Portal) -> None:
    system = portal.factory.system(portal.unit, name="研究生管理系统", purpose="management")
    req = portal.submitted(system_name=None, purpose=None, description=None, system_id=system.id)
    assert req["system_id"] == system.id
    assert req["system_name"] == "研究生管理系统" and req["purpose"] == "management"


def test_another_units_system_is_not_found(portal: Portal) -> None:
    foreign = portal.factory.system(portal.factory.unit())
    before = counts()
    r = portal.submit(system_name=None, purpose=None, system_id=foreign.id)
    assert r.status_code == 404, r.text
    assert counts() == before


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"vcpus": 0}, "vcpus"),
        ({"vcpus": 65}, "vcpus"),
        ({"memory_gib": 10240}, "memory_gib"),
        ({"memory_gib": -4}, "memory_gib"),
        ({"disk_gib": 5}, "disk_gib"),
        ({"disk_gib": 20}, "disk_gib"),  # smaller than the template's 40 GiB disk
        ({"purpose": "gaming"}, "purpose"),
        ({"beneficiary": "everyone"}, "beneficiary"),
        ({"hostname": "-lab"}, "hostname"),
        ({"hostname": "lab_web"}, "hostname"),
        ({"hostname": "a" * 64}, "hostname"),
        ({"system_name": "x" * 201}, "system_name"),
        ({"description": "x" * 2001}, "description"),
        ({"template_ref": "tpl-does-not-exist"}, "template_ref"),
        ({"connection_id": 999}, "connection_id"),
        ({"pool_id": 999}, "pool_id"),
        ({"purpose": None}, "purpose"),
        ({"system_name": None, "purpose": None}, "system_name"),
        ({"system_id": 1}, "system_name"),  # both
        ({"colour": "blue"}, "colour"),
        ({"vcpus": "four"}, "vcpus"),
    ],
)
def test_bad_input_is_a_422_naming_the_field_and_writes_nothing(
    portal: Portal, overrides: dict[str, Any], field: str
) -> None:
    before = counts()
    r = portal.submit(**overrides)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["fields"][0]["field"] == field
    assert counts() == before


def test_malformed_json_is_a_400(portal: Portal) -> None:
    before = counts()
    r = portal.client.post(
        f"{API}/requests",
        content=b'{"hostname": "lab", ',
        headers={**portal.heads["admin"], "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json"
    assert counts() == before


@pytest.mark.parametrize("who", ["lead", "center_admin", "operator", "auditor"])
def test_only_a_unit_admin_submits(portal: Portal, who: str) -> None:
    r = portal.submit(who=who)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"


# ---- the lifecycle -----------------------------------------------------------------------------------


def test_approval_delivers_and_a_second_approval_is_a_409_naming_the_state(portal: Portal) -> None:
    req = portal.submitted()
    r = portal.act("operator", req["id"], "approve")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "approved"
    now = portal.get("admin", f"/requests/{req['id']}").json()
    assert now["state"] == "delivered" and now["vm_id"] is not None
    assert now["deadline_status"] == "met"
    r = portal.act("center_admin", req["id"], "approve")
    assert r.status_code == 409
    assert r.json()["error"]["state"] == "delivered"
    assert "delivered" in r.json()["error"]["message"]
    # The Chinese message names the state and the action in Chinese (issue 11 point 7).
    assert r.json()["error"]["message_zh"] == "虚拟机申请当前状态为“已交付”，不能执行“批准”"


def test_two_simultaneous_approvals_give_one_approval_and_one_409(portal: Portal) -> None:
    req = portal.submitted()
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(2)

    def approve(who: str) -> None:
        barrier.wait()
        answers.append(portal.act(who, req["id"], "approve"))

    threads = [threading.Thread(target=approve, args=(w,)) for w in ("operator", "center_admin")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [200, 409]
    conflict = next(a for a in answers if a.status_code == 409).json()["error"]
    assert conflict["state"] in ("approved", "provisioning", "delivered")
    with db.transaction() as s:
        assert len(s.exec(select(AuditEntry).where(AuditEntry.action == "request.approve")).all()) == 1
        assert len(s.exec(select(OutboxTask).where(OutboxTask.task == service.PROVISION_TASK)).all()) == 1
        assert len(s.exec(select(VM).where(VM.request_id == req["id"])).all()) == 1


def test_compare_and_set_refuses_a_stale_transition(portal: Portal) -> None:
    """Two transactions read 'submitted'; the one that writes second finds the row moved on."""
    req = portal.submitted()
    with db.transaction() as s:
        stale = s.get(VMRequest, req["id"])
        assert stale is not None
        s.expunge(stale)
    with db.transaction() as s:
        fresh = s.get(VMRequest, req["id"])
        assert fresh is not None
        decisions._move(s, fresh, Action.REJECT, decision_reason="duplicate of another request")
    with pytest.raises(errors.StateConflict) as caught, db.transaction() as s:
        s.add(stale)
        decisions._move(s, stale, Action.APPROVE)
    assert caught.value.extra["state"] == "rejected"
    assert portal.get("admin", f"/requests/{req['id']}").json()["state"] == "rejected"


def test_rejection_needs_a_reason_and_is_final(portal: Portal) -> None:
    req = portal.submitted()
    r = portal.act("operator", req["id"], "reject", {})
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "reason"
    r = portal.act("operator", req["id"], "reject", {"reason": "   "})
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "reason"
    r = portal.act("admin", req["id"], "reject", {"reason": "no"})
    assert r.status_code == 403
    r = portal.act("operator", req["id"], "reject", {"reason": "该系统已有虚拟机，请复用"})
    assert r.status_code == 200
    assert r.json()["state"] == "rejected" and r.json()["decision_reason"] == "该系统已有虚拟机，请复用"
    assert r.json()["deadline_status"] is None
    for who, action in (("operator", "approve"), ("admin", "cancel"), ("operator", "retry")):
        r = portal.act(who, req["id"], action)
        assert r.status_code == 409, (action, r.text)
        assert r.json()["error"]["state"] == "rejected"


def test_the_unit_admin_cancels_before_the_decision(portal: Portal) -> None:
    first, second = portal.submitted(), portal.submitted(hostname="lab-two")
    assert portal.act("lead", first["id"], "cancel").status_code == 403
    assert portal.act("other_admin", first["id"], "cancel").status_code == 404
    r = portal.act("admin", first["id"], "cancel", {"reason": "提交重复"})
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert portal.act("operator", second["id"], "approve").status_code == 200
    r = portal.act("admin", second["id"], "cancel")
    assert r.status_code == 409 and r.json()["error"]["state"] == "delivered"


def test_endorsement_when_the_center_requires_it(portal: Portal) -> None:
    req = portal.submitted()
    r = portal.act("lead", req["id"], "endorse")
    assert r.status_code == 409
    assert "does not require" in r.json()["error"]["message"]

    r = portal.client.put(
        f"{API}/settings", json={"endorsement_required": True}, headers=portal.heads["center_admin"]
    )
    assert r.status_code == 200, r.text
    r = portal.act("operator", req["id"], "approve")
    assert r.status_code == 409
    assert r.json()["error"]["state"] == "submitted" and "endorsement" in r.json()["error"]["message"]
    assert portal.get("lead", f"/requests/{req['id']}").json()["actions"] == ["endorse", "decline"]
    assert portal.act("other_lead", req["id"], "endorse").status_code == 404
    assert portal.act("admin", req["id"], "endorse").status_code == 403
    r = portal.act("lead", req["id"], "endorse")
    assert r.status_code == 200 and r.json()["state"] == "endorsed" and r.json()["endorsed_by"] is not None
    assert portal.act("lead", req["id"], "endorse").status_code == 409
    r = portal.act("operator", req["id"], "approve")
    assert r.status_code == 200
    assert portal.get("admin", f"/requests/{req['id']}").json()["state"] == "delivered"


# ---- quota at approval ----------------------------------------------------------------------------


def _set_quota(unit_id: int, vms: int, vcpus: int, memory: int, disk: int) -> None:
    with db.transaction() as s:
        quota = s.get(Quota, unit_id)
        assert quota is not None
        quota.max_vms, quota.max_vcpus, quota.max_memory_gib, quota.max_disk_gib = vms, vcpus, memory, disk
        s.add(quota)


def test_approval_rechecks_the_quota_and_only_a_center_admin_overrides_with_a_reason(portal: Portal) -> None:
    first = portal.submitted(vcpus=4)
    second = portal.submitted(vcpus=4, hostname="lab-two")
    assert portal.unit.id is not None
    _set_quota(portal.unit.id, 10, 6, 128, 2000)  # the center lowered the quota after submission

    assert portal.act("operator", first["id"], "approve").status_code == 200  # 4 of 6 vCPUs
    assert portal.get("admin", f"/requests/{first['id']}").json()["state"] == "delivered"

    before = counts()
    error = assert_denied(portal.act("operator", second["id"], "approve"), "quota")
    assert "vCPU" in error["message"]
    error = assert_denied(
        portal.act("operator", second["id"], "approve", {"override_reason": "教学评估期间临时需要"}), "quota"
    )
    assert error["denials"][0]["field"] == "override_reason"
    error = assert_denied(
        portal.act("center_admin", second["id"], "approve", {"override_reason": "ok"}), "quota"
    )
    assert error["denials"][0]["field"] == "override_reason"
    assert counts() == before

    reason = "本学期课程评估需要，经中心主任同意临时超配"
    r = portal.act("center_admin", second["id"], "approve", {"override_reason": reason})
    assert r.status_code == 200, r.text
    assert r.json()["override_reason"] == reason
    assert portal.get("admin", f"/requests/{second['id']}").json()["state"] == "delivered"
    audit = portal.get(
        "auditor", f"/audit?action=request.approve&target_type=vm_request&target_id={second['id']}"
    ).json()["items"]
    assert len(audit) == 1
    assert audit[0]["detail"] == f"quota override: {reason}"
    assert audit[0]["after"]["quota_override"] is True and audit[0]["after"]["override_reason"] == reason


def test_an_override_reason_within_quota_is_not_recorded(portal: Portal) -> None:
    req = portal.submitted()
    r = portal.act("center_admin", req["id"], "approve", {"override_reason": "just in case, really"})
    assert r.status_code == 200
    assert r.json()["override_reason"] == ""
    # An operator giving a reason is refused even within quota: no override may be recorded by them.
    other = portal.submitted(hostname="lab-two")
    assert_denied(
        portal.act("operator", other["id"], "approve", {"override_reason": "just in case, really"}), "quota"
    )


# ---- reading, scoping and deadlines ---------------------------------------------------------------


def test_unit_users_see_their_unit_only(portal: Portal) -> None:
    mine = portal.submitted()
    other_unit = portal.factory.unit()
    other_admin = portal.factory.user("unit_admin", other_unit)
    theirs = portal.client.post(
        f"{API}/requests",
        json=portal.body(hostname="their-lab"),
        headers=portal.factory.login(portal.client, other_admin),
    ).json()
    assert {r["id"] for r in portal.get("admin", "/requests").json()["items"]} == {mine["id"]}
    assert {r["id"] for r in portal.get("lead", "/requests").json()["items"]} == {mine["id"]}
    assert portal.get("admin", f"/requests?unit_id={other_unit.id}").json()["items"] == []
    assert portal.get("admin", f"/requests/{theirs['id']}").status_code == 404
    assert portal.get("other_admin", f"/requests/{mine['id']}").status_code == 404
    for who in ("auditor", "operator", "center_admin"):
        assert {r["id"] for r in portal.get(who, "/requests").json()["items"]} == {mine["id"], theirs["id"]}
    assert [r["id"] for r in portal.get("auditor", f"/requests?unit_id={other_unit.id}").json()["items"]] == [
        theirs["id"]
    ]
    assert portal.get("auditor", f"/requests/{mine['id']}").json()["actions"] == []


def test_state_filter_and_unknown_state(portal: Portal) -> None:
    a, b = portal.submitted(), portal.submitted(hostname="lab-two")
    portal.act("operator", b["id"], "reject", {"reason": "重复申请"})
    assert [r["id"] for r in portal.get("operator", "/requests?state=submitted").json()["items"]] == [a["id"]]
    assert [r["id"] for r in portal.get("operator", "/requests?state=rejected").json()["items"]] == [b["id"]]
    r = portal.get("operator", "/requests?state=lost")
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "state"
    assert portal.get("operator", "/requests?limit=0").status_code == 422
    page = portal.get("operator", "/requests?limit=1&offset=1").json()
    assert page["total"] == 2 and page["limit"] == 1 and page["offset"] == 1
    assert [r["id"] for r in page["items"]] == [a["id"]]  # newest first


def test_at_risk_and_overdue_filters(portal: Portal) -> None:
    on_time = portal.submitted(hostname="on-time")
    at_risk = portal.submitted(hostname="at-risk")
    overdue = portal.submitted(hostname="overdue")
    failed_overdue = portal.submitted(hostname="failed-late")
    delivered_late = portal.submitted(hostname="delivered-late")
    rejected_late = portal.submitted(hostname="rejected-late")
    now = db.utcnow()
    with db.transaction() as s:
        for req, due, state, delivered in (
            (at_risk, now + timedelta(hours=30), None, None),
            (overdue, now - timedelta(hours=2), None, None),
            (failed_overdue, now - timedelta(days=1), "failed", None),
            (delivered_late, now - timedelta(days=2), "delivered", now - timedelta(days=1)),
            (rejected_late, now - timedelta(days=2), "rejected", None),
        ):
            row = s.get(VMRequest, req["id"])
            assert row is not None
            row.due_at = due
            row.state = state or row.state
            row.delivered_at = delivered
            s.add(row)

    def ids(query: str) -> set[int]:
        r = portal.get("operator", f"/requests{query}")
        assert r.status_code == 200, r.text
        return {item["id"] for item in r.json()["items"]}

    assert ids("?at_risk=true") == {at_risk["id"]}
    assert ids("?overdue=true") == {overdue["id"], failed_overdue["id"]}
    assert ids("?at_risk=true&overdue=true") == {at_risk["id"], overdue["id"], failed_overdue["id"]}
    assert ids(f"?overdue=true&unit_id={portal.unit.id}&state=failed") == {failed_overdue["id"]}
    assert ids("?at_risk=false") == {
        r["id"] for r in (on_time, at_risk, overdue, failed_overdue, delivered_late, rejected_late)
    }
    status = {
        item["hostname"]: item["deadline_status"] for item in portal.get("admin", "/requests").json()["items"]
    }
    assert status == {
        "on-time": "on_time",
        "at-risk": "at_risk",
        "overdue": "overdue",
        "failed-late": "overdue",
        "delivered-late": "missed",
        "rejected-late": None,
    }


def test_the_lifecycle_table_is_the_one_place_roles_are_checked() -> None:
    actor = Actor(user_id=1, role=Role.AUDITOR, unit_id=None)
    with pytest.raises(errors.Forbidden):
        checks.authorize(actor, Action.APPROVE)
    checks.authorize(Actor(user_id=1, role=Role.CENTER_OPERATOR, unit_id=None), Action.RETRY)


def _parse(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00"))
