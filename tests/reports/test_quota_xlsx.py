"""The quota report as XLSX (issue 14, point 3): Chinese headers, the same figures as the JSON, a
native chart, and a unit user's file holding that unit only."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from tests.api.test_requests import make_portal
from tests.factories import Factory


def test_quota_xlsx_matches_the_json_and_has_a_chart(client: TestClient, factory: Factory) -> None:
    p = make_portal(client, factory, quota=(5, 20, 64, 1000))
    factory.vm(p.unit)  # 2 vCPU, 4 GiB
    p.submitted(vcpus=4, memory_gib=8, disk_gib=100)

    r = p.get("auditor", "/reports/quota?format=xlsx")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert 'filename="quota-report-' in r.headers["content-disposition"]
    ws = load_workbook(io.BytesIO(r.content)).active
    assert ws is not None and ws.title == "配额使用情况"
    header = [c.value for c in ws[1]]
    assert header[:4] == ["单位代码", "单位名称", "虚拟机配额", "虚拟机已用"]
    rows = {row[0]: dict(zip(header, row, strict=False)) for row in ws.iter_rows(min_row=2, values_only=True)}
    assert len(rows) == 2  # both units of the portal fixture
    mine = rows[p.unit.code]
    assert mine["单位名称"] == p.unit.name_zh
    assert (mine["vCPU配额"], mine["vCPU已用"], mine["vCPU申请中"], mine["vCPU剩余"]) == (20, 2, 4, 14)
    assert (mine["虚拟机配额"], mine["虚拟机已用"], mine["虚拟机申请中"]) == (5, 1, 1)
    assert len(ws._charts) == 1  # a native chart, not a picture

    own = load_workbook(io.BytesIO(p.get("admin", "/reports/quota?format=xlsx").content)).active
    assert own is not None
    assert [row[0] for row in own.iter_rows(min_row=2, values_only=True)] == [p.unit.code]
