"""The quota report through the HTTP API (issue 2, point 10): per unit, quota vs used vs requested
and free, in JSON and in a CSV that Excel opens with its Chinese unit names intact."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from tests.api.test_requests import API, make_portal
from tests.factories import Factory
from vmportal.kit import db
from vmportal.vm.models import VM


def test_quota_used_requested_and_free_per_unit(client: TestClient, factory: Factory) -> None:
    p = make_portal(client, factory, quota=(5, 20, 64, 1000))
    active = factory.vm(p.unit)  # 2 vCPU, 4 GiB, the template's disk
    retired = factory.vm(p.unit)
    with db.transaction() as s:
        row = s.get(VM, retired.id)
        assert row is not None
        row.lifecycle = "decommissioned"  # uses nothing any more
        s.add(row)
    p.submitted(vcpus=4, memory_gib=8, disk_gib=100)
    rejected = p.submitted(vcpus=8, memory_gib=16, disk_gib=200, hostname="lab-two")
    p.act("operator", rejected["id"], "reject", {"reason": "重复申请"})

    r = p.get("auditor", "/reports/quota")
    assert r.status_code == 200, r.text
    units = {u["unit_id"]: u for u in r.json()["units"]}
    assert len(units) == 2  # both units of the portal fixture
    mine = units[p.unit.id]
    used_disk = active.disk_gib
    assert mine["unit_name_zh"] == p.unit.name_zh
    assert mine["vms"] == {"quota": 5, "used": 1, "requested": 1, "free": 3}
    assert mine["vcpus"] == {"quota": 20, "used": 2, "requested": 4, "free": 14}
    assert mine["memory_gib"] == {"quota": 64, "used": 4, "requested": 8, "free": 52}
    assert mine["disk_gib"] == {"quota": 1000, "used": used_disk, "requested": 100, "free": 900 - used_disk}
    assert mine["over_quota"] == []


def test_over_quota_units_are_flagged_and_free_never_negative(client: TestClient, factory: Factory) -> None:
    p = make_portal(client, factory, quota=(1, 1, 1, 10))
    factory.vm(p.unit)  # 2 vCPUs on a quota of 1: an override, or a quota lowered later
    mine = next(u for u in p.get("operator", "/reports/quota").json()["units"] if u["unit_id"] == p.unit.id)
    assert mine["vcpus"]["free"] == 0
    assert set(mine["over_quota"]) == {"vcpus", "memory_gib", "disk_gib"}


def test_unit_users_see_their_own_unit_only(client: TestClient, factory: Factory) -> None:
    p = make_portal(client, factory)
    for who in ("admin", "lead"):
        units = p.get(who, "/reports/quota").json()["units"]
        assert [u["unit_id"] for u in units] == [p.unit.id]
    other = next(
        u["unit_id"]
        for u in p.get("center_admin", "/reports/quota").json()["units"]
        if u["unit_id"] != p.unit.id
    )
    assert p.get("admin", f"/reports/quota?unit_id={other}").json()["units"] == []
    assert [u["unit_id"] for u in p.get("auditor", f"/reports/quota?unit_id={other}").json()["units"]] == [
        other
    ]


def test_csv_has_a_header_a_bom_and_a_filename(client: TestClient, factory: Factory) -> None:
    p = make_portal(client, factory)
    r = p.get("auditor", "/reports/quota?format=csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="quota-report-' in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == 2
    header = next(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert header[:4] == ["unit_code", "unit_name_zh", "unit_name_en", "vms_quota"]
    assert "disk_gib_free" in header
    mine = next(row for row in rows if row["unit_code"] == p.unit.code)
    assert mine["unit_name_zh"] == p.unit.name_zh  # Chinese survives
    assert mine["vms_quota"] == "10" and mine["vcpus_quota"] == "40"


def test_unknown_format_is_a_422(client: TestClient, factory: Factory) -> None:
    p = make_portal(client, factory)
    r = p.get("auditor", "/reports/quota?format=pdf")  # XLSX answers since issue 14
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "format"
    assert client.get(f"{API}/reports/quota").status_code == 401
