"""The center's reports by unit and period (issue 14, point 3): provisioning on time, incidents per
month, time in quarantine, repeat offenders, overdue findings and the compliance summary, each as JSON,
CSV and XLSX, with the figures a reader of the spreadsheet sees.

The data is made through the API (requests submitted and approved, alerts posted by a registered
Suricata and Wazuh source, findings entered and fixed); time passing is a timestamp moved back, never a
wait."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from tests.api.test_requests import make_portal
from tests.factories import Factory
from tests.security.helpers import incidents, post, register, suricata_c2, wazuh_webshell
from vmportal.incidents.models import Finding, Incident
from vmportal.kit import db
from vmportal.kit.clock import BEIJING, beijing_today
from vmportal.request.models import VMRequest

API = "/api/v1"


def _move(model: type, ident: int, **values: Any) -> None:
    """Time passes: the record's timestamps moved back instead of the clock."""
    with db.transaction() as s:
        row = s.get(model, ident)
        assert row is not None
        for key, value in values.items():
            setattr(row, key, value)
        s.add(row)


def _sheets(content: bytes) -> dict[str, list[dict[str, Any]]]:
    """Every sheet of a workbook as rows keyed by the Chinese header."""
    wb = load_workbook(io.BytesIO(content))
    out = {}
    for ws in wb.worksheets:
        rows = list(ws.iter_rows(values_only=True))
        out[ws.title] = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    return out


def _charts(content: bytes) -> int:
    return len(load_workbook(io.BytesIO(content)).worksheets[0]._charts)


def test_provisioning_on_time_late_and_overdue(client: TestClient, factory: Factory) -> None:
    p = make_portal(client, factory)
    on_time, late, waiting = (p.submitted(hostname=h) for h in ("on-time", "late-one", "waiting"))
    for req in (on_time, late):
        assert p.act("operator", req["id"], "approve").status_code == 200
    assert p.get("admin", f"/requests/{late['id']}").json()["state"] == "delivered"
    now = db.utcnow()
    # The late one was filed ten days ago: its week ended three days before it was delivered (now).
    _move(
        VMRequest,
        late["id"],
        submitted_at=now - timedelta(days=10),
        decided_at=now - timedelta(days=9),
        due_at=now - timedelta(days=3),
    )
    _move(VMRequest, waiting["id"], submitted_at=now - timedelta(days=8), due_at=now - timedelta(days=1))

    r = p.get("auditor", "/reports/provisioning")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["period"]["until"] == beijing_today().isoformat()
    rows = {row["unit_code"]: row for row in body["rows"]}
    assert set(rows) == {p.unit.code, *(c for c in rows if c != p.unit.code)} and len(rows) == 2
    mine = rows[p.unit.code]
    assert (mine["delivered"], mine["on_time"], mine["late"], mine["overdue_now"]) == (2, 1, 1, 1)
    assert mine["on_time_percent"] == 50.0
    assert (mine["median_days"], mine["longest_days"]) == (5.0, 10.0)  # 0 and 10 days from the start
    assert mine["median_days_after_approval"] == 4.5  # approved 0 and 9 days before delivery
    [shown_late] = body["lists"]["late"]["rows"]
    assert (shown_late["hostname"], shown_late["days_late"], shown_late["state"]) == (
        "late-one",
        3.0,
        "delivered",
    )
    assert shown_late["due_at"] == (now - timedelta(days=3)).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")
    [overdue] = body["lists"]["overdue_now"]["rows"]
    assert (overdue["hostname"], overdue["state"], overdue["days_late"]) == ("waiting", "submitted", 1.0)
    assert body["totals"]["on_time_percent"] == 50.0 and body["totals"]["delivered"] == 2
    other = next(row for code, row in rows.items() if code != p.unit.code)
    assert other["delivered"] == 0 and other["on_time_percent"] is None

    x = p.get("auditor", "/reports/provisioning?format=xlsx")
    assert x.status_code == 200 and x.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert 'filename="provisioning-' in x.headers["content-disposition"]
    sheets = _sheets(x.content)
    assert list(sheets) == ["虚拟机开通及时率", "逾期交付的申请", "当前超期未交付的申请"]
    row = next(r for r in sheets["虚拟机开通及时率"] if r["单位代码"] == p.unit.code)
    assert (row["期间交付数"], row["按期交付数"], row["逾期交付数"], row["按期率(%)"]) == (2, 1, 1, 50)
    assert (
        row["单位名称"] == p.unit.name_zh
        and row["当前超期未交付"] == 1
        and row["审批至交付中位数(天)"] == 4.5
    )
    assert [(r["主机名"], r["超期天数"], r["状态"]) for r in sheets["逾期交付的申请"]] == [
        ("late-one", 3, "已交付")
    ]
    assert [r["主机名"] for r in sheets["当前超期未交付的申请"]] == ["waiting"]
    assert _charts(x.content) == 1

    c = p.get("auditor", "/reports/provisioning?format=csv")
    assert c.status_code == 200 and c.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(c.content.decode("utf-8-sig"))))
    assert table[0][:4] == ["单位代码", "单位名称", "期间交付数", "按期交付数"]
    assert [r[:6] for r in table[1:] if r[0] == p.unit.code] == [
        [p.unit.code, p.unit.name_zh, "2", "1", "1", "50.0"]
    ]

    # The unit's own users see their unit only; another unit's id is as if it did not exist.
    own = p.get("admin", "/reports/provisioning").json()
    assert [row["unit_code"] for row in own["rows"]] == [p.unit.code]
    other_id = other["unit_id"]
    assert p.get("admin", f"/reports/provisioning?unit_id={other_id}").status_code == 404
    assert p.get("other_admin", "/reports/provisioning").json()["lists"]["late"]["rows"] == []
    # A period that ended before the deliveries counts none of them.
    old = p.get("auditor", "/reports/provisioning?since=2025-01-01&until=2025-12-31").json()
    assert {row["unit_code"]: row["delivered"] for row in old["rows"]}[p.unit.code] == 0


def test_period_and_parameters_refused_with_field_and_rule(client: TestClient, factory: Factory) -> None:
    h = factory.login(client, factory.user("center_operator"))

    def refused(path: str) -> dict[str, Any]:
        r = client.get(f"{API}{path}", headers=h)
        assert r.status_code == 422, r.text
        return dict(r.json()["error"])

    e = refused("/reports/provisioning?since=2026-06-01&until=2026-05-31")
    assert e["fields"] == [{"field": "since", "rule": "period_order", "message": e["fields"][0]["message"]}]
    assert "until (2026-05-31)" in e["message"] and e["message_zh"].startswith("起始时间：不能晚于截止日期")
    e = refused("/reports/incidents-monthly?since=2020-01-01&until=2024-01-01")
    assert (e["fields"][0]["field"], e["fields"][0]["rule"]) == ("until", "period_too_long")
    assert "最长 1096 天（三年），当前为 1462 天" in e["message_zh"]
    tomorrow = (beijing_today() + timedelta(days=1)).isoformat()
    e = refused(f"/reports/quarantine?since={tomorrow}&until={tomorrow}")
    assert e["fields"][0]["rule"] == "period_in_future" and "北京时间" in e["message_zh"]
    e = refused("/reports/compliance?since=2026-13-01")
    assert e["fields"][0]["field"] == "since" and "应为日期（YYYY-MM-DD）" in e["message_zh"]
    e = refused("/reports/repeat-offenders?threshold=0")
    assert e["fields"][0]["field"] == "threshold" and "次数阈值：不能小于 1" in e["message_zh"]
    e = refused("/reports/overdue-findings?format=pdf")
    assert e["fields"][0]["field"] == "format" and "格式" in e["message_zh"]
    e = refused("/reports/provisioning?unit_id=0")
    assert e["fields"][0]["field"] == "unit_id"
    e = refused("/reports/provisioning?since=0001-01-01")
    assert (e["fields"][0]["field"], e["fields"][0]["rule"]) == ("since", "date_out_of_range")
    assert "应在 2000-01-01 至 2099-12-31 之间" in e["message_zh"]
    e = refused("/reports/compliance?until=9999-12-31")
    assert (e["fields"][0]["field"], e["fields"][0]["rule"]) == ("until", "date_out_of_range")
    # Nothing a caller types gives a 5xx: every odd value is a 422 (or, where it means something, a 200).
    odd = ("since=", "until=2026-01-01T00:00:00", "since=2026-02-30", "threshold=99999999999999999999")
    for path in (
        "provisioning",
        "incidents-monthly",
        "quarantine",
        "repeat-offenders",
        "overdue-findings",
        "compliance",
    ):
        for query in (*odd, "unit_id=2147483648", "since=2099-12-31&until=2099-12-31"):
            assert client.get(f"{API}/reports/{path}?{query}", headers=h).status_code in (200, 404, 422)
    # A period wholly in the past and one day long is fine; a future end is allowed (figures so far).
    assert (
        client.get(f"{API}/reports/provisioning?since=2026-01-01&until=2026-01-01", headers=h).status_code
        == 200
    )
    assert client.get(f"{API}/reports/provisioning?until={tomorrow}", headers=h).status_code == 200
    assert client.get(f"{API}/reports/provisioning").status_code == 401


def test_incidents_monthly_quarantine_and_repeat_offenders(client: TestClient, factory: Factory) -> None:
    center = factory.login(client, factory.user("center_admin"))
    unit, calm = factory.unit(), factory.unit()
    admin = factory.login(client, factory.user("unit_admin", unit))
    calm_lead = factory.login(client, factory.user("unit_lead", calm))
    web, db_vm = factory.vm(unit, name="kyc-web01"), factory.vm(unit, name="kyc-db01")
    assert web.ip_address and db_vm.ip_address
    suricata, wazuh = register(client, center, "suricata"), register(client, center, "wazuh")
    assert post(client, suricata, suricata_c2(web.ip_address)).status_code == 202
    assert post(client, wazuh, wazuh_webshell(web.ip_address)).status_code == 202
    assert post(client, suricata, suricata_c2(db_vm.ip_address)).status_code == 202
    on_web = {i["category"]: i for i in incidents(client, center, vm_id=web.id)}
    [on_db] = incidents(client, center, vm_id=db_vm.id)
    assert set(on_web) == {"trojan", "webshell"} and on_db["state"] == "contained"

    # The trojan on the web VM was opened 40 days ago and contained three days after; released now.
    now = db.utcnow()
    earlier = now - timedelta(days=40)
    trojan, webshell = on_web["trojan"], on_web["webshell"]
    assert webshell["state"] == "contained"
    _move(Incident, trojan["id"], created_at=earlier, contained_at=now - timedelta(days=3))
    _move(Incident, webshell["id"], contained_at=now - timedelta(hours=6))
    r = client.post(f"{API}/incidents/{trojan['id']}/dismiss", json={"reason": "复核为误报"}, headers=center)
    assert r.status_code == 200, r.text
    # The web shell still holds the VM: its quarantine goes on, so the trojan's has not ended either.
    held = client.get(f"{API}/reports/quarantine", headers=admin).json()["rows"][0]
    assert (held["contained"], held["released"], held["still_contained"]) == (3, 0, 3)
    r = client.post(
        f"{API}/incidents/{webshell['id']}/dismiss", json={"reason": "复核为误报"}, headers=center
    )
    assert r.status_code == 200, r.text
    # The one on the database VM has been contained for 30 hours and still is.
    _move(Incident, on_db["id"], contained_at=now - timedelta(hours=30))

    this_month, that_month = (
        now.astimezone(BEIJING).strftime("%Y-%m"),
        earlier.astimezone(BEIJING).strftime("%Y-%m"),
    )
    body = client.get(f"{API}/reports/incidents-monthly", headers=center).json()
    months = {row["month"]: row for row in body["rows"]}
    assert len(months) == 12 and list(months)[-1] == this_month  # every month, zeros included
    assert (months[this_month]["total"], months[this_month]["category_trojan"]) == (2, 1)
    assert (months[this_month]["category_webshell"], months[this_month]["origin_alert"]) == (1, 2)
    assert (months[this_month]["sensor_wazuh"], months[this_month]["sensor_suricata"]) == (1, 1)
    assert (months[that_month]["total"], months[that_month]["category_trojan"]) == (1, 1)
    assert months[that_month]["sensor_suricata"] == 1
    assert sum(row["total"] for row in body["rows"]) == body["totals"]["total"] == 3
    by_unit = body["lists"]["by_unit"]["rows"]
    assert [(r["month"], r["unit_code"], r["total"]) for r in by_unit] == [
        (that_month, unit.code, 1),
        (this_month, unit.code, 2),
    ]
    x = client.get(f"{API}/reports/incidents-monthly?format=xlsx", headers=center)
    sheets = _sheets(x.content)
    month_rows = {r["月份"]: r for r in sheets["安全事件月度统计"]}
    assert (
        month_rows[this_month]["事件总数"],
        month_rows[this_month]["木马"],
        month_rows[this_month]["来源：告警"],
    ) == (
        2,
        1,
        2,
    )
    assert (
        month_rows[this_month]["网页后门（webshell）"] == 1 and month_rows[this_month]["告警系统：Wazuh"] == 1
    )
    assert [r["单位名称"] for r in sheets["各单位月度安全事件"]] == [unit.name_zh, unit.name_zh]
    assert _charts(x.content) == 1
    # This month only: the trojan opened 40 days ago is outside.
    first = now.astimezone(BEIJING).date().replace(day=1).isoformat()
    assert (
        client.get(f"{API}/reports/incidents-monthly?since={first}", headers=center).json()["totals"]["total"]
        == 2
    )
    assert client.get(f"{API}/reports/incidents-monthly", headers=calm_lead).json()["totals"]["total"] == 0

    q = client.get(f"{API}/reports/quarantine", headers=admin).json()
    [row] = q["rows"]
    assert row["unit_code"] == unit.code
    assert (row["contained"], row["released"], row["still_contained"]) == (3, 2, 1)
    assert (row["median_hours"], row["longest_hours"]) == (39.0, 72.0)  # 72 and 6 hours
    assert row["longest_ongoing_hours"] == 30.0
    listed = {i["incident_id"]: i for i in q["lists"]["incidents"]["rows"]}
    assert listed[trojan["id"]]["released"] is True and listed[trojan["id"]]["hours"] == 72.0
    assert listed[trojan["id"]]["state"] == "dismissed" and listed[trojan["id"]]["vm_name"] == "kyc-web01"
    assert listed[on_db["id"]]["released"] is False and listed[on_db["id"]]["category"] == "木马"
    qx = _sheets(client.get(f"{API}/reports/quarantine?format=xlsx", headers=center).content)
    qrow = next(r for r in qx["虚拟机处置时长"] if r["单位代码"] == unit.code)
    assert (qrow["处置时长中位数(小时)"], qrow["最长处置时长(小时)"], qrow["仍在处置中"]) == (39, 72, 1)
    assert next(r for r in qx["虚拟机处置时长"] if r["单位代码"] == calm.code)["期间处置数"] == 0
    assert {r["状态"] for r in qx["处置的安全事件"]} >= {"已排除"}

    ro = client.get(f"{API}/reports/repeat-offenders", headers=center).json()  # more than 1
    assert [(r["unit_code"], r["incidents"], r["vms"]) for r in ro["rows"]] == [(unit.code, 3, 2)]
    assert [(v["vm_name"], v["incidents"]) for v in ro["lists"]["vms"]["rows"]] == [("kyc-web01", 2)]
    assert sorted(ro["lists"]["vms"]["rows"][0]["categories"]) == ["木马×1", "网页后门（webshell）×1"]
    assert client.get(f"{API}/reports/repeat-offenders?threshold=3", headers=center).json()["rows"] == []
    assert (
        client.get(f"{API}/reports/repeat-offenders", headers=calm_lead).json()["lists"]["vms"]["rows"] == []
    )
    rx = client.get(f"{API}/reports/repeat-offenders?threshold=2&format=xlsx", headers=center)
    rsheets = _sheets(rx.content)
    assert [(r["单位名称"], r["事件数"]) for r in rsheets["多次发生安全事件的单位"]] == [(unit.name_zh, 3)]
    assert rsheets["多次发生安全事件的虚拟机"] == []


def _finding(
    client: TestClient, headers: dict[str, str], vm_id: int | None, title: str, severity: str
) -> int:
    body = {"vm_id": vm_id, "category": "vulnerability", "severity": severity, "title": title}
    r = client.post(f"{API}/findings", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_overdue_findings_and_the_compliance_summary(client: TestClient, factory: Factory) -> None:
    center = factory.login(client, factory.user("center_admin"))
    unit, missing = factory.unit(), factory.unit(paperwork=False)
    factory.system(unit)
    admin = factory.login(client, factory.user("unit_admin", unit))
    vm = factory.vm(unit, name="oa-web")
    now = db.utcnow()
    late_high = _finding(client, center, vm.id, "Struts2 远程代码执行", "high")
    late_low = _finding(client, center, vm.id, "目录遍历", "low")
    fixed_late = _finding(client, center, vm.id, "弱口令", "medium")
    in_time = _finding(client, center, vm.id, "旧版 jQuery", "low")
    _move(Finding, late_high, deadline_at=now - timedelta(days=5))
    _move(Finding, late_low, deadline_at=now - timedelta(days=2))
    _move(Finding, fixed_late, deadline_at=now - timedelta(days=1))
    fix = client.post(f"{API}/findings/{fixed_late}/fix", json={"note": "已改为强口令"}, headers=admin)
    assert fix.status_code == 200, fix.text

    body = client.get(f"{API}/reports/overdue-findings", headers=center).json()
    rows = {r["unit_code"]: r for r in body["rows"]}
    mine = rows[unit.code]
    assert (mine["overdue"], mine["severity_high"], mine["severity_low"], mine["fixed_late"]) == (2, 1, 1, 1)
    assert mine["longest_overdue_days"] == 5.0
    assert mine["oldest_deadline"] == (now - timedelta(days=5)).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")
    assert rows[missing.code]["overdue"] == 0
    listed = body["lists"]["findings"]["rows"]
    assert [(f["finding_id"], f["severity"], f["days_overdue"]) for f in listed] == [
        (late_high, "高危", 5.0),
        (late_low, "低危", 2.0),
    ]
    assert in_time not in {f["finding_id"] for f in listed} and listed[0]["vm_name"] == "oa-web"
    x = _sheets(client.get(f"{API}/reports/overdue-findings?format=xlsx", headers=admin).content)
    assert [(r["单位代码"], r["超期未整改数"], r["超期后才整改数"]) for r in x["超期未整改的安全隐患"]] == [
        (unit.code, 2, 1)
    ]
    assert [r["隐患名称"] for r in x["超期隐患清单"]] == ["Struts2 远程代码执行", "目录遍历"]

    summary = client.get(f"{API}/reports/compliance", headers=center).json()
    by_code = {r["unit_code"]: r for r in summary["rows"]}
    assert by_code[unit.code]["paperwork_complete"] is True and by_code[unit.code]["systems_registered"] == 1
    assert by_code[unit.code]["overdue_findings"] == 2 and by_code[unit.code]["compliant"] is False
    gap = by_code[missing.code]
    assert (gap["paperwork_complete"], gap["registry_complete"], gap["vm_agreement_signed"]) == (
        False,
        False,
        False,
    )
    assert gap["compliant"] is False and "commitment_letter" in gap["missing"]
    assert summary["totals"] == {"units": 2, "compliant": 0, "paperwork_complete": 1}
    cx = client.get(f"{API}/reports/compliance?format=xlsx", headers=center)
    crow = next(r for r in _sheets(cx.content)["各单位网络安全合规情况"] if r["单位代码"] == missing.code)
    assert (crow["达标"], crow["材料齐全"], crow["承诺书已签署"]) == ("否", "否", "否")
    assert _charts(cx.content) == 1
    cc = client.get(f"{API}/reports/compliance?format=csv", headers=admin)
    assert [r[0] for r in csv.reader(io.StringIO(cc.content.decode("utf-8-sig")))][1:] == [unit.code]

    # The committee's workbook: a cover with the same figures, then every report with its chart.
    w = client.get(f"{API}/reports/committee?format=xlsx", headers=center)
    assert w.status_code == 200 and 'filename="committee-' in w.headers["content-disposition"]
    book = load_workbook(io.BytesIO(w.content))
    assert book.sheetnames[:7] == [
        "汇总",
        "各单位网络安全合规情况",
        "虚拟机开通及时率",
        "安全事件月度统计",
        "虚拟机处置时长",
        "多次发生安全事件的单位",
        "超期未整改的安全隐患",
    ]
    assert (
        "超期隐患清单" in book.sheetnames and "配额使用情况" in book.sheetnames and len(book.sheetnames) == 14
    )
    cover = {r["指标"]: r["数值"] for r in _sheets(w.content)["汇总"]}
    assert (cover["单位数"], cover["达标单位数"], cover["材料齐全单位数"]) == (2, 0, 1)
    assert (cover["超期未整改隐患数"], cover["超期后才整改的隐患数"], cover["期间安全事件数"]) == (2, 1, 0)
    assert cover["统计期间（北京时间）"].endswith(f"至 {beijing_today().isoformat()}")
    for name in ("各单位网络安全合规情况", "虚拟机开通及时率", "超期未整改的安全隐患"):
        assert len(book[name]._charts) == 1, name
    j = client.get(f"{API}/reports/committee", headers=admin).json()
    assert j["cover"]["units"] == 1 and j["cover"]["overdue_findings"] == 2
    assert [r["unit_code"] for r in j["reports"]["compliance"]["rows"]] == [unit.code]

    # Fixed and closed by the center: the unit is compliant again.
    for fid in (late_high, late_low):
        assert (
            client.post(f"{API}/findings/{fid}/fix", json={"note": "已修复"}, headers=admin).status_code
            == 200
        )
    again = {r["unit_code"]: r for r in client.get(f"{API}/reports/compliance", headers=admin).json()["rows"]}
    assert again[unit.code]["overdue_findings"] == 0 and again[unit.code]["compliant"] is True
    assert isinstance(datetime.fromisoformat(summary["generated_at"]), datetime)


def test_control_characters_in_stored_text_do_not_break_the_workbook(
    client: TestClient, factory: Factory
) -> None:
    center = factory.login(client, factory.user("center_admin"))
    unit = factory.unit()
    vm = factory.vm(unit)
    fid = _finding(client, center, vm.id, "目录\x0b遍历\x1f漏洞", "low")
    _move(Finding, fid, deadline_at=db.utcnow() - timedelta(hours=1))
    r = client.get(f"{API}/reports/overdue-findings?format=xlsx", headers=center)
    assert r.status_code == 200, r.text
    assert [row["隐患名称"] for row in _sheets(r.content)["超期隐患清单"]] == ["目录\ufffd遍历\ufffd漏洞"]
    # The JSON keeps the text as stored.
    j = client.get(f"{API}/reports/overdue-findings", headers=center).json()
    assert j["lists"]["findings"]["rows"][0]["title"] == "目录\x0b遍历\x1f漏洞"


def test_stored_text_never_runs_as_a_formula(client: TestClient, factory: Factory) -> None:
    center = factory.login(client, factory.user("center_admin"))
    made = client.post(
        f"{API}/units",
        json={"code": "EVIL01", "name_zh": '=HYPERLINK("http://x.example","点我")'},
        headers=center,
    )
    assert made.status_code == 201, made.text
    unit = made.json()
    vm = factory.vm(factory.unit())
    fid = _finding(client, center, vm.id, "=1+1", "low")
    _move(Finding, fid, deadline_at=db.utcnow() - timedelta(hours=1))

    c = client.get(f"{API}/reports/compliance?format=csv", headers=center)
    rows = {r[0]: r for r in csv.reader(io.StringIO(c.content.decode("utf-8-sig")))}
    assert rows["EVIL01"][1] == '\'=HYPERLINK("http://x.example","点我")'
    q = client.get(f"{API}/reports/quota?format=csv", headers=center)
    quota = {r[0]: r for r in csv.reader(io.StringIO(q.content.decode("utf-8-sig")))}
    assert quota["EVIL01"][1].startswith("'=HYPERLINK(")
    x = client.get(f"{API}/reports/overdue-findings?format=xlsx", headers=center)
    book = load_workbook(io.BytesIO(x.content))
    listed = book["超期隐患清单"]
    title = listed.cell(row=2, column=[c.value for c in listed[1]].index("隐患名称") + 1)
    assert (title.value, title.data_type) == ("=1+1", "s")
    evil = next(r for r in book.worksheets[0].iter_rows(min_row=2) if r[0].value == "EVIL01")
    assert (evil[1].value, evil[1].data_type) == (unit["name_zh"], "s")


def test_a_deactivated_unit_keeps_its_history(client: TestClient, factory: Factory) -> None:
    p = make_portal(client, factory)
    req = p.submitted(hostname="closing-lab")
    assert p.act("operator", req["id"], "approve").status_code == 200
    _move(VMRequest, req["id"], due_at=db.utcnow() - timedelta(days=2))
    r = client.patch(f"{API}/units/{p.unit.id}", json={"active": False}, headers=p.heads["center_admin"])
    assert r.status_code == 200, r.text

    body = p.get("auditor", "/reports/provisioning").json()
    rows = {row["unit_code"]: row for row in body["rows"]}
    assert (rows[p.unit.code]["delivered"], rows[p.unit.code]["late"]) == (1, 1)
    assert list(rows)[-1] == p.unit.code  # after the active units
    [late] = body["lists"]["late"]["rows"]
    assert (late["unit_code"], late["unit_name"]) == (p.unit.code, p.unit.name_zh)
    # The compliance summary is about today: only active units.
    assert p.unit.code not in {
        row["unit_code"] for row in p.get("auditor", "/reports/compliance").json()["rows"]
    }
