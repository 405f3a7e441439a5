"""附件4 as a spreadsheet (issue 14, point 1): template with the unit's systems and drop-downs, edits
and additions imported by key or name, a removal, mistakes named by row and column, all or nothing."""

from __future__ import annotations

import io
from typing import Any

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from tests.factories import Factory

API = "/api/v1"
IMPORT = f"{API}/paperwork/imports/systems"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _post(client: TestClient, headers: dict[str, str], name: str, content: bytes, commit: bool) -> Any:
    return client.post(
        IMPORT, params={"commit": commit}, files=[("files", (name, content, XLSX))], headers=headers
    )


def _save(wb: Any) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_systems_round_trip(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    lab = factory.system(unit, name="课程实验平台")
    old = factory.system(unit, name="旧网站", purpose="management")
    headers = factory.login(client, factory.user("unit_admin", unit))
    r = client.get(f"{API}/units/{unit.id}/forms/systems.xlsx", headers=headers)
    assert r.status_code == 200
    wb = load_workbook(io.BytesIO(r.content))
    ws = wb["信息系统登记表"]
    assert [c.value for c in ws[4]] == [
        "编号",
        "系统名称",
        "用途",
        "域名",
        "负责人",
        "负责人电话",
        "说明",
        "保留",
    ]
    by_key = {str(ws.cell(row=i, column=1).value): i for i in range(5, ws.max_row + 1)}
    assert ws.cell(row=by_key[str(lab.id)], column=3).value == "教学"
    formulas = " ".join(dv.formula1 for dv in ws.data_validations.dataValidation)
    assert "教学" in formulas and "科研" in formulas and "否" in formulas

    ws.cell(row=by_key[str(lab.id)], column=4, value="lab.example.edu.cn，lab2.example.edu.cn")
    ws.cell(row=by_key[str(old.id)], column=8, value="否")  # the unit says it is gone (清理)
    new = ws.max_row + 1
    for col, value in enumerate(
        ["", "科研数据平台", "科研", "data.example.edu.cn", "赵老师", "0516-83590002", "", "是"], 1
    ):
        ws.cell(row=new, column=col, value=value)
    ws.cell(row=new + 1, column=2, value="无用途系统")
    ws.cell(row=new + 1, column=3, value="娱乐")  # not a purpose of the drop-down
    ws.cell(row=new + 1, column=5, value="某人")
    bad = _save(wb)
    r = _post(client, headers, "附件4.xlsx", bad, commit=False)
    assert r.status_code == 200, r.text
    assert [(p["row"], p["column"]) for p in r.json()["problems"]] == [(new + 1, "用途")]
    r = _post(client, headers, "附件4.xlsx", bad, commit=True)
    assert r.status_code == 422
    assert {s["name"] for s in client.get(f"{API}/units/{unit.id}/systems", headers=headers).json()} == {
        "课程实验平台",
        "旧网站",
    }

    ws.delete_rows(new + 1)
    r = _post(client, headers, "附件4.xlsx", _save(wb), commit=True)
    assert r.status_code == 200, r.text
    assert {k: r.json()["files"][0][k] for k in ("create", "update", "delete")} == {
        "create": 1,
        "update": 1,
        "delete": 1,
    }
    systems = {s["name"]: s for s in client.get(f"{API}/units/{unit.id}/systems", headers=headers).json()}
    assert set(systems) == {"课程实验平台", "科研数据平台"}
    assert systems["课程实验平台"]["domains"] == ["lab.example.edu.cn", "lab2.example.edu.cn"]
    assert systems["科研数据平台"]["purpose"] == "research"

    # Re-importing the same file: the added system is now matched by its name (no second copy), and
    # the removed one's number is named as no longer the unit's.
    r = _post(client, headers, "again.xlsx", _save(wb), commit=False)
    assert [(p["row"], p["column"]) for p in r.json()["problems"]] == [(by_key[str(old.id)], "编号")]
    assert r.json()["files"][0]["create"] == 0
