"""The annual clean-up (issue 14 point 4; plan 二(二)1 开展网站域名、虚拟机清理工作) through the API:
the center opens a campaign, each unit answers its own VMs, systems and domains (confirm, correct,
retire; by the page's calls or by its 附件4 file) and cannot see another unit's; past the deadline the
unconfirmed are listed, powered off after the grace period and decommissioned, which frees their
addresses and quota; the compliance report reads the result. Time is injected: the deadline step runs
with the ``now`` it is given, and the campaign's deadline is moved into the past where the grace
period must have ended."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlmodel import col, select

from tests.factories import Factory
from vmportal.audit.models import AuditEntry
from vmportal.cleanup import tasks
from vmportal.cleanup.models import CleanupCampaign
from vmportal.kit import db
from vmportal.network.models import IPAllocation
from vmportal.unit.models import InformationSystem, Unit
from vmportal.vm.models import VM, PowerOperation

API = "/api/v1"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _open(
    client: TestClient, headers: dict[str, str], *, days: int = 10, grace_days: int = 7
) -> dict[str, Any]:
    deadline = (db.utcnow() + timedelta(days=days)).isoformat()
    r = client.post(
        f"{API}/cleanup/campaigns",
        json={"name": "2026年度网站域名、虚拟机清理", "deadline_at": deadline, "grace_days": grace_days},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _items(
    client: TestClient, headers: dict[str, str], campaign_id: int, **params: Any
) -> list[dict[str, Any]]:
    r = client.get(f"{API}/cleanup/campaigns/{campaign_id}/items", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _by_kind(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        out.setdefault(item["kind"], []).append(item)
    return out


def _audit(action: str) -> list[AuditEntry]:
    with db.transaction() as s:
        return list(
            s.exec(select(AuditEntry).where(AuditEntry.action == action).order_by(col(AuditEntry.id)))
        )


def _move_deadline(campaign_id: int, deadline: datetime) -> None:
    """Time passes: the campaign's deadline now lies where the test needs it."""
    with db.transaction() as s:
        campaign = s.get(CleanupCampaign, campaign_id)
        assert campaign is not None
        campaign.deadline_at = deadline
        s.add(campaign)


def _two_units(factory: Factory) -> tuple[Unit, Unit, InformationSystem, VM, VM]:
    a, b = factory.unit(), factory.unit()
    system = factory.system(a, name="课程实验平台")
    vm_a = factory.vm(a, name="lab-web", system_id=system.id)
    vm_b = factory.vm(b, name="oa-db")
    return a, b, system, vm_a, vm_b


def test_a_unit_confirms_and_corrects_its_own_items_and_sees_no_other_units(
    client: TestClient, factory: Factory
) -> None:
    a, b, system, vm_a, vm_b = _two_units(factory)
    other = factory.system(a, name="学院网站")
    center = factory.login(client, factory.user("center_admin"))
    admin_a = factory.login(client, factory.user("unit_admin", a))
    admin_b = factory.login(client, factory.user("unit_admin", b))

    campaign = _open(client, center)
    assert campaign["state"] == "open" and campaign["pending"] == campaign["total"]
    progress = {u["unit_id"]: u for u in campaign["units"]}
    assert progress[a.id]["total"] == 5  # a VM, two systems, their two domains
    assert progress[b.id]["total"] == 1
    cid = campaign["id"]

    # Unit A sees its own items only, whatever it asks for.
    mine = _by_kind(_items(client, admin_a, cid))
    assert {i["unit_id"] for k in mine.values() for i in k} == {a.id}
    assert [i["target_id"] for i in mine["vm"]] == [vm_a.id]
    assert {i["label"] for i in mine["system"]} == {"课程实验平台", "学院网站"}
    assert [i["domain"] for i in mine["domain"]] == [f"lab{a.id}.example.edu.cn"] * 2
    assert (
        client.get(
            f"{API}/cleanup/campaigns/{cid}/items", params={"unit_id": b.id}, headers=admin_a
        ).status_code
        == 404
    )
    [b_item] = _items(client, admin_b, cid)
    assert b_item["target_id"] == vm_b.id
    # Another unit's item answers 404, to read and to answer alike.
    assert client.get(f"{API}/cleanup/items/{b_item['id']}", headers=admin_a).status_code == 404
    r = client.post(f"{API}/cleanup/items/{b_item['id']}/confirm", json={}, headers=admin_a)
    assert r.status_code == 404 and r.json()["error"]["message_zh"].startswith("未找到清理项目")
    # A unit's progress is its own.
    seen = client.get(f"{API}/cleanup/campaigns/{cid}", headers=admin_a).json()
    assert [u["unit_id"] for u in seen["units"]] == [a.id]
    # Only the center opens campaigns.
    assert (
        client.post(
            f"{API}/cleanup/campaigns",
            json={"name": "x", "deadline_at": (db.utcnow() + timedelta(days=3)).isoformat()},
            headers=admin_a,
        ).status_code
        == 403
    )

    # Confirm the VM.
    [vm_item] = mine["vm"]
    r = client.post(
        f"{API}/cleanup/items/{vm_item['id']}/confirm", json={"note": "仍用于实验教学"}, headers=admin_a
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "confirmed" and r.json()["note"] == "仍用于实验教学"
    assert r.json()["current"]["name"] == "lab-web"

    # Correct the system: the registration itself changes (the responsible person has changed).
    lab_item = next(i for i in mine["system"] if i["target_id"] == system.id)
    r = client.post(
        f"{API}/cleanup/items/{lab_item['id']}/correct",
        json={"responsible_person": "李老师", "responsible_phone": "0516-83591234", "note": "负责人变更"},
        headers=admin_a,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "corrected"
    assert r.json()["changes"]["responsible_person"] == {"before": "张老师", "after": "李老师"}
    assert (
        client.get(f"{API}/units/{a.id}/systems/{system.id}", headers=admin_a).json()["responsible_person"]
        == "李老师"
    )

    # Correct a domain: renamed in the system's registration.
    lab_domain = next(i for i in mine["domain"] if i["target_id"] == system.id)
    r = client.post(
        f"{API}/cleanup/items/{lab_domain['id']}/correct",
        json={"domain": "Lab.Example.edu.cn."},
        headers=admin_a,
    )
    assert r.status_code == 200, r.text
    assert r.json()["domain"] == "lab.example.edu.cn"
    assert client.get(f"{API}/units/{a.id}/systems/{system.id}", headers=admin_a).json()["domains"] == [
        "lab.example.edu.cn"
    ]

    # Retire the other system: it is removed, and its domain item with it.
    old_item = next(i for i in mine["system"] if i["target_id"] == other.id)
    r = client.post(
        f"{API}/cleanup/items/{old_item['id']}/retire",
        json={"reason": "网站已并入站点群平台"},
        headers=admin_a,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "retired" and r.json()["current"] is None
    assert client.get(f"{API}/units/{a.id}/systems/{other.id}", headers=admin_a).status_code == 404
    statuses = {i["id"]: i["status"] for i in _items(client, admin_a, cid)}
    assert list(statuses.values()).count("pending") == 0
    # A retired answer is final.
    r = client.post(f"{API}/cleanup/items/{old_item['id']}/confirm", json={}, headers=admin_a)
    assert r.status_code == 409 and r.json()["error"]["state"] == "retired"

    progress = {
        u["unit_id"]: u for u in client.get(f"{API}/cleanup/campaigns/{cid}", headers=center).json()["units"]
    }
    assert progress[a.id]["complete"] and progress[a.id]["pending"] == 0
    assert progress[b.id]["pending"] == 1 and not progress[b.id]["complete"]

    # Every change audited, with the unit it concerns.
    assert len(_audit("cleanup.open")) == 1
    [confirmed] = _audit("cleanup.confirm")
    assert (
        confirmed.unit_id == a.id and confirmed.after is not None and confirmed.after["status"] == "confirmed"
    )
    assert len(_audit("cleanup.corrected")) == 2
    assert len(_audit("cleanup.retired")) == 2  # the system and its domain
    assert _audit("system.update") and _audit("system.delete")

    # One campaign at a time.
    r = client.post(
        f"{API}/cleanup/campaigns",
        json={"name": "另一次", "deadline_at": (db.utcnow() + timedelta(days=3)).isoformat()},
        headers=center,
    )
    assert r.status_code == 409 and "同一时间只能进行一项清理工作" in r.json()["error"]["message_zh"]


def test_bad_input_is_a_422_naming_the_field_in_both_languages(client: TestClient, factory: Factory) -> None:
    a = factory.unit()
    factory.system(a)
    factory.vm(a)
    center = factory.login(client, factory.user("center_admin"))
    admin = factory.login(client, factory.user("unit_admin", a))

    def error(r: Any) -> dict[str, Any]:
        assert r.status_code == 422, r.text
        return dict(r.json()["error"])

    past = (db.utcnow() - timedelta(hours=1)).isoformat()
    e = error(
        client.post(f"{API}/cleanup/campaigns", json={"name": "清理", "deadline_at": past}, headers=center)
    )
    assert e["fields"][0]["field"] == "deadline_at" and e["fields"][0]["rule"] == "future"
    assert e["message_zh"].startswith("截止时间：") and "deadline_at" in e["message"]
    future = (db.utcnow() + timedelta(days=5)).isoformat()
    e = error(
        client.post(
            f"{API}/cleanup/campaigns",
            json={"name": "清理", "deadline_at": future, "grace_days": 365},
            headers=center,
        )
    )
    assert "grace_days" in e["message"] and "宽限期（天）" in e["message_zh"]
    e = error(
        client.post(
            f"{API}/cleanup/campaigns",
            json={"name": "清理", "deadline_at": "2027-09-20T18:00"},
            headers=center,
        )
    )
    assert "deadline_at" in e["message"] and "截止时间" in e["message_zh"]  # no time zone
    e = error(
        client.post(f"{API}/cleanup/campaigns", json={"name": "", "deadline_at": future}, headers=center)
    )
    assert "name" in e["message"] and "名称" in e["message_zh"]
    # Nothing half-written: no campaign exists.
    assert client.get(f"{API}/cleanup/campaigns", headers=center).json() == []

    campaign = _open(client, center)
    items = _by_kind(_items(client, admin, campaign["id"]))
    vm_item, domain_item = items["vm"][0], items["domain"][0]
    e = error(
        client.post(
            f"{API}/cleanup/items/{vm_item['id']}/correct", json={"domain": "a.example.cn"}, headers=admin
        )
    )
    assert (
        e["fields"][0]
        == {
            "field": "domain",
            "rule": "kind",
            "message": e["fields"][0]["message"],
        }
        and "域名" in e["message_zh"]
    )
    e = error(
        client.post(
            f"{API}/cleanup/items/{domain_item['id']}/correct", json={"domain": "not a domain"}, headers=admin
        )
    )
    assert "domain" in e["message"] and "域名" in e["message_zh"]
    e = error(
        client.post(f"{API}/cleanup/items/{vm_item['id']}/correct", json={"system_id": 999999}, headers=admin)
    )
    assert e["fields"][0]["rule"] == "belongs_to_unit" and "信息系统" in e["message_zh"]
    e = error(client.post(f"{API}/cleanup/items/{vm_item['id']}/retire", json={"reason": ""}, headers=admin))
    assert "reason" in e["message"] and "理由" in e["message_zh"]
    e = error(
        client.post(f"{API}/cleanup/items/{vm_item['id']}/confirm", json={"surprise": 1}, headers=admin)
    )
    assert "surprise" in e["message"]
    # The items are as they were.
    assert {i["status"] for i in _items(client, admin, campaign["id"])} == {"pending"}


def test_past_the_deadline_the_unconfirmed_are_listed_powered_off_and_decommissioned(
    client: TestClient, factory: Factory
) -> None:
    a, b, _system, vm_a, vm_b = _two_units(factory)
    vm_b2 = factory.vm(b, name="oa-web")
    vm_b3 = factory.vm(b, name="oa-mail")
    center = factory.login(client, factory.user("center_admin"))
    admin_a = factory.login(client, factory.user("unit_admin", a))
    admin_b = factory.login(client, factory.user("unit_admin", b))
    campaign = _open(client, center, grace_days=7)
    cid = campaign["id"]
    deadline = datetime.fromisoformat(campaign["deadline_at"])
    # Unit A confirms everything; unit B hands one VM back and leaves the other unanswered.
    r = client.post(f"{API}/cleanup/campaigns/{cid}/confirm-all", json={}, headers=admin_a)
    assert r.status_code == 200 and r.json()["total"] == 3
    b_items = {i["target_id"]: i for i in _items(client, admin_b, cid)}
    r = client.post(
        f"{API}/cleanup/items/{b_items[vm_b2.id]['id']}/retire",
        json={"reason": "系统已停用"},
        headers=admin_b,
    )
    assert r.status_code == 200

    # Before the deadline the center cannot act on anything.
    r = client.post(f"{API}/cleanup/campaigns/{cid}/power-off", json={"reason": "清理"}, headers=center)
    assert r.status_code == 409 and r.json()["error"]["state"] == "open"

    # The deadline step: run a minute early, nothing; at the deadline, once.
    assert tasks.tick(now=deadline - timedelta(minutes=1))["deadlines"] == {}
    assert tasks.tick(now=deadline + timedelta(minutes=1))["deadlines"] == {
        cid: {"unconfirmed": 2, "units": 1}
    }
    assert tasks.tick(now=deadline + timedelta(minutes=16))["deadlines"] == {}
    seen = client.get(f"{API}/cleanup/campaigns/{cid}", headers=center).json()
    assert seen["state"] == "deadline_passed" and seen["deadline_processed_at"] is not None
    listed = client.get(f"{API}/cleanup/campaigns/{cid}/unconfirmed", headers=center).json()["items"]
    assert [(i["unit_id"], i["target_id"]) for i in listed] == [(b.id, vm_b.id), (b.id, vm_b3.id)]
    [deadline_audit] = _audit("cleanup.deadline")
    assert deadline_audit.actor == "cleanup" and deadline_audit.after is not None
    assert deadline_audit.after["unconfirmed"] == 2

    # Within the grace period: refused, naming when it ends.
    r = client.post(f"{API}/cleanup/campaigns/{cid}/power-off", json={"reason": "清理"}, headers=center)
    assert r.status_code == 409 and "宽限期" in r.json()["error"]["message_zh"], r.text
    assert r.json()["error"]["grace_ends_at"]
    # A unit may not power off or decommission through the campaign.
    assert (
        client.post(
            f"{API}/cleanup/campaigns/{cid}/power-off", json={"reason": "x"}, headers=admin_b
        ).status_code
        == 403
    )

    # The grace period has passed: the unconfirmed VM is powered off, nothing else.
    _move_deadline(cid, db.utcnow() - timedelta(days=8))
    r = client.post(
        f"{API}/cleanup/campaigns/{cid}/power-off",
        json={"item_ids": [_items(client, admin_a, cid, kind="vm")[0]["id"]], "reason": "清理"},
        headers=center,
    )
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "item_ids"
    r = client.post(f"{API}/cleanup/campaigns/{cid}/power-off", json={"reason": "逾期未确认"}, headers=center)
    assert r.status_code == 200, r.text
    assert [(i["target_id"], i["action"]) for i in r.json()["items"]] == [
        (vm_b.id, "powered_off"),
        (vm_b3.id, "powered_off"),
    ]
    # The auditor reads, never answers; unit B confirms one of them late: it is kept, and may be started.
    auditor = factory.login(client, factory.user("auditor"))
    assert (
        client.post(
            f"{API}/cleanup/items/{b_items[vm_b3.id]['id']}/confirm", json={}, headers=auditor
        ).status_code
        == 403
    )
    r = client.post(
        f"{API}/cleanup/items/{b_items[vm_b3.id]['id']}/confirm",
        json={"note": "邮件系统仍在使用"},
        headers=admin_b,
    )
    assert r.status_code == 200 and r.json()["status"] == "confirmed" and r.json()["action"] == "powered_off"
    [late] = [e for e in _audit("cleanup.confirm") if e.target_id == str(b_items[vm_b3.id]["id"])]
    assert late.after is not None and late.after["late"] is True
    with db.transaction() as s:
        ops = list(s.exec(select(PowerOperation).where(PowerOperation.vm_id == vm_b.id)))
        assert [(op.action, op.state) for op in ops] == [("stop", "succeeded")]
        stopped = s.get(VM, vm_b.id)
        assert stopped is not None and stopped.power_state == "stopped"
        running = s.get(VM, vm_a.id)
        assert running is not None and running.power_state == "running"  # confirmed: untouched

    # Decommission: the powered-off unconfirmed VM and the one its unit retired.
    with db.transaction() as s:
        s.add(IPAllocation(pool_id=factory.pool(cidr="10.30.0.0/24").id, address="10.30.0.50", vm_id=vm_b.id))  # type: ignore[arg-type]
    r = client.post(
        f"{API}/cleanup/campaigns/{cid}/decommission", json={"reason": "清理回收"}, headers=center
    )
    assert r.status_code == 200, r.text
    assert sorted(i["target_id"] for i in r.json()["items"]) == sorted([vm_b.id, vm_b2.id])
    with db.transaction() as s:
        for vm_id in (vm_b.id, vm_b2.id):
            gone = s.get(VM, vm_id)
            assert (
                gone is not None and gone.lifecycle == "decommissioned" and gone.decommissioned_at is not None
            )
        allocation = s.exec(select(IPAllocation).where(IPAllocation.address == "10.30.0.50")).one()
        assert allocation.released_at is not None  # the address is free again
    quota = client.get(f"{API}/reports/quota", headers=center)
    assert quota.status_code == 200, quota.text
    [b_quota] = [u for u in quota.json()["units"] if u["unit_id"] == b.id]
    assert b_quota["vms"]["used"] == 1  # the two decommissioned VMs' quota freed; the confirmed one counts
    with db.transaction() as s:
        kept = s.get(VM, vm_b3.id)
        assert kept is not None and kept.lifecycle == "active"
    assert len(_audit("cleanup.powered_off")) == 2 and len(_audit("cleanup.decommissioned")) == 2
    assert len(_audit("vm.decommission")) == 2

    # The compliance report reads the campaign: A confirmed it, B did not (and is not compliant).
    r = client.get(f"{API}/reports/compliance", headers=center)
    assert r.status_code == 200, r.text
    rows = {row["unit_id"]: row for row in r.json()["rows"]}
    assert (
        rows[a.id]["last_cleanup_confirmed"] is True
        and rows[a.id]["last_cleanup"] == "2026年度网站域名、虚拟机清理"
    )
    assert rows[b.id]["last_cleanup_confirmed"] is False and rows[b.id]["cleanup_unconfirmed"] == 1
    assert rows[b.id]["compliant"] is False
    assert rows[a.id]["compliant"] is True

    # Closed: nothing more can be answered.
    assert client.post(f"{API}/cleanup/campaigns/{cid}/close", headers=center).json()["state"] == "closed"
    r = client.post(f"{API}/cleanup/items/{b_items[vm_b.id]['id']}/confirm", json={}, headers=admin_b)
    assert r.status_code == 409 and r.json()["error"]["state"] == "closed"


def test_a_units_annex4_upload_answers_the_systems_it_lists(client: TestClient, factory: Factory) -> None:
    a, b = factory.unit(), factory.unit()
    lab = factory.system(a, name="课程实验平台")
    site = factory.system(a, name="学院网站", purpose="management")
    gone = factory.system(a, name="旧系统", purpose="research")
    factory.system(b, name="办公系统", purpose="management")
    center = factory.login(client, factory.user("center_admin"))
    admin = factory.login(client, factory.user("unit_admin", a))
    cid = _open(client, center)["id"]

    wb = load_workbook(
        io.BytesIO(client.get(f"{API}/units/{a.id}/forms/systems.xlsx", headers=admin).content)
    )
    ws = wb["信息系统登记表"]
    rows = {str(ws.cell(row=i, column=1).value): i for i in range(5, ws.max_row + 1)}
    ws.cell(row=rows[str(site.id)], column=5, value="王老师")  # the responsible person changed
    ws.cell(row=rows[str(gone.id)], column=8, value="否")  # no longer used
    buf = io.BytesIO()
    wb.save(buf)
    content = buf.getvalue()

    def post(commit: bool) -> Any:
        return client.post(
            f"{API}/cleanup/campaigns/{cid}/register",
            params={"commit": commit},
            files=[("files", ("附件4.xlsx", content, XLSX))],
            headers=admin,
        )

    dry = post(False)
    assert dry.status_code == 200, dry.text
    answers = {i["system_id"]: i["answer"] for i in dry.json()["cleanup"]["items"]}
    assert answers == {lab.id: "confirmed", site.id: "corrected", gone.id: "retired"}
    assert {i["status"] for i in _items(client, admin, cid)} == {"pending"}  # a dry run changes nothing

    r = post(True)
    assert r.status_code == 200, r.text
    status = {(i["kind"], i["target_id"]): (i["status"], i["via"]) for i in _items(client, admin, cid)}
    assert status[("system", lab.id)] == ("confirmed", "register")
    assert status[("system", site.id)] == ("corrected", "register")
    assert status[("system", gone.id)] == ("retired", "register")
    assert status[("domain", lab.id)] == ("confirmed", "register")
    assert status[("domain", gone.id)] == ("retired", "register")
    assert (
        client.get(f"{API}/units/{a.id}/systems/{site.id}", headers=admin).json()["responsible_person"]
        == "王老师"
    )
    # The other unit's items are untouched.
    other = _items(client, center, cid, unit_id=b.id)
    assert other and {i["status"] for i in other} == {"pending"}
