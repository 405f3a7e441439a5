"""附件1 as a spreadsheet (issue 14, point 1): the template downloaded, filled with openpyxl the way an
office would (mistakes included), its dry run read by sheet/row/column, then committed all or nothing;
re-import updates by role; the center imports many units' files with one report; .xls/.csv refused."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from tests.factories import Factory

API = "/api/v1"
IMPORT = f"{API}/paperwork/imports/contacts"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
GOOD_ID = "11010519491231002X"  # GB 11643's own example, valid check digit
BAD_ID = "110105194912310021"  # one digit off: the checksum fails


@pytest.fixture
def setup(client: TestClient, factory: Factory) -> dict[str, Any]:
    a, b = factory.unit(paperwork=False), factory.unit(paperwork=False)
    return {
        "a": a,
        "b": b,
        "center": factory.login(client, factory.user("center_admin")),
        "a_admin": factory.login(client, factory.user("unit_admin", a)),
    }


def _template(client: TestClient, unit_id: int, headers: dict[str, str]) -> Any:
    r = client.get(f"{API}/units/{unit_id}/forms/contacts.xlsx", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == XLSX
    return load_workbook(io.BytesIO(r.content))


def _fill(wb: Any, *, admin_id: str = GOOD_ID, lead_title: str = "副院长") -> bytes:
    ws = wb["网络安全联络通讯录"]
    ws["B5"], ws["C5"], ws["D5"], ws["E5"], ws["F5"] = (
        "王负责",
        lead_title,
        "0516-83590000",
        "13812345678",
        "w@x.edu.cn",
    )
    ws["B6"], ws["C6"], ws["D6"], ws["E6"], ws["F6"] = (
        "李管理",
        "工程师",
        "0516-83590001",
        "13912345678",
        "l@x.edu.cn",
    )
    ws["G6"], ws["H6"], ws["I6"] = "12345678", "T12345", admin_id
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _post(client: TestClient, headers: dict[str, str], files: list[tuple[str, bytes]], commit: bool) -> Any:
    return client.post(
        IMPORT,
        params={"commit": commit},
        files=[("files", (name, content, XLSX)) for name, content in files],
        headers=headers,
    )


def test_template_has_chinese_headers_and_role_drop_down(client: TestClient, setup: dict[str, Any]) -> None:
    wb = _template(client, setup["a"].id, setup["a_admin"])
    ws = wb["网络安全联络通讯录"]
    assert [c.value for c in ws[4]] == [
        "角色",
        "姓名",
        "职务",
        "办公电话",
        "移动电话",
        "邮箱地址",
        "QQ",
        "工号",
        "身份证号",
    ]
    assert ws["B2"].value == setup["a"].code
    assert (ws["A5"].value, ws["A6"].value) == ("网络安全负责人", "网络安全管理员")
    lists = [dv for dv in ws.data_validations.dataValidation if dv.type == "list"]
    assert lists and "网络安全负责人" in lists[0].formula1


def test_dry_run_names_each_mistake_then_commit_is_all_or_nothing(
    client: TestClient, setup: dict[str, Any]
) -> None:
    unit_id, headers = setup["a"].id, setup["a_admin"]
    wb = _template(client, unit_id, headers)
    wb.create_sheet("Sheet2")  # an extra sheet a person added
    wb["网络安全联络通讯录"].merge_cells("G5:H5")  # a merged cell
    bad = _fill(wb, admin_id=BAD_ID, lead_title="")
    r = _post(client, headers, [("学院通讯录.xlsx", bad)], commit=False)
    assert r.status_code == 200, r.text
    problems = r.json()["problems"]
    where = {(p["sheet"], p["row"], p["column"]) for p in problems}
    assert ("网络安全联络通讯录", 6, "身份证号") in where  # the checksum, by the API's own validator
    assert ("网络安全联络通讯录", 5, "职务") in where  # required for the lead
    assert any(p["sheet"] == "Sheet2" for p in problems)
    assert any("合并单元格" in p["reason_zh"] for p in problems)
    assert all(p["reason_zh"] and p["reason_en"] and p["file"] == "学院通讯录.xlsx" for p in problems)
    r = _post(client, headers, [("学院通讯录.xlsx", bad)], commit=True)
    assert r.status_code == 422
    assert "未导入" in r.json()["error"]["message_zh"]
    assert client.get(f"{API}/units/{unit_id}/contacts", headers=headers).json() == []

    good = _fill(_template(client, unit_id, headers))
    r = _post(client, headers, [("学院通讯录.xlsx", good)], commit=True)
    assert r.status_code == 200, r.text
    assert r.json()["committed"] is True
    rows = {
        c["role"]: c for c in client.get(f"{API}/units/{unit_id}/contacts", headers=setup["center"]).json()
    }
    assert rows["security_admin"]["national_id"] == GOOD_ID
    assert rows["security_lead"]["title"] == "副院长"

    # Re-import from a fresh download (mobile and ID masked for a unit user): the numbers are kept,
    # the changed title replaces the row's value.
    wb = _template(client, unit_id, headers)
    ws = wb["网络安全联络通讯录"]
    assert ws["I6"].value != GOOD_ID and "*" in ws["I6"].value
    ws["C5"] = "院长"
    buf = io.BytesIO()
    wb.save(buf)
    r = _post(client, headers, [("again.xlsx", buf.getvalue())], commit=True)
    assert r.status_code == 200, r.text
    rows = {
        c["role"]: c for c in client.get(f"{API}/units/{unit_id}/contacts", headers=setup["center"]).json()
    }
    assert rows["security_lead"]["title"] == "院长"
    assert rows["security_admin"]["national_id"] == GOOD_ID
    assert len(rows) == 2


def test_center_imports_many_units_in_one_report(client: TestClient, setup: dict[str, Any]) -> None:
    center = setup["center"]
    files = [
        (f"{u.code}.xlsx", _fill(_template(client, u.id, center), admin_id=GOOD_ID))
        for u in (setup["a"], setup["b"])
    ]
    broken = _fill(_template(client, setup["b"].id, center), admin_id=BAD_ID)
    r = _post(client, center, [files[0], ("b-broken.xlsx", broken)], commit=True)
    assert r.status_code == 422
    assert {p["file"] for p in r.json()["error"]["problems"]} == {"b-broken.xlsx"}
    assert client.get(f"{API}/units/{setup['a'].id}/contacts", headers=center).json() == []  # all or nothing
    r = _post(client, center, files, commit=True)
    assert r.status_code == 200, r.text
    assert [f["unit_id"] for f in r.json()["files"]] == [setup["a"].id, setup["b"].id]
    for u in (setup["a"], setup["b"]):
        assert len(client.get(f"{API}/units/{u.id}/contacts", headers=center).json()) == 2
    # A unit user's file naming another unit is refused (as an unknown code).
    other = _fill(_template(client, setup["b"].id, center))
    r = _post(client, setup["a_admin"], [("b.xlsx", other)], commit=False)
    assert any(p["column"] == "单位代码" for p in r.json()["problems"])


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "word"),
    [
        ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512, ".xls"),
        ("list.csv", "角色,姓名\n网络安全负责人,王负责\n".encode(), ".csv"),
        ("broken.xlsx", b"PK\x03\x04" + b"\x00" * 100, ".xlsx"),
        ("garbage.xlsx", _zip({"[Content_Types].xml": b"<Types", "xl/workbook.xml": b"\x00\xff"}), ".xlsx"),
        ("bomb.xlsx", _zip({"xl/sharedStrings.xml": b"0" * (60 * 1024 * 1024)}), "50"),
    ],
    ids=["xls", "csv", "truncated-zip", "garbage-xml", "zip-bomb"],
)
def test_other_files_get_a_clear_answer_never_5xx(
    client: TestClient, setup: dict[str, Any], name: str, content: bytes, word: str
) -> None:
    r = _post(client, setup["a_admin"], [(name, content)], commit=True)
    assert r.status_code == 422, r.text
    problem = r.json()["error"]["problems"][0]
    assert word in problem["reason_zh"] and word in problem["reason_en"]
