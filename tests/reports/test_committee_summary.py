"""The committee's reading of a period (issue 14, point 3): the workbook's quota sheet with its chart
and cover figures, and the one-page PDF summary (``/reports/committee?format=pdf``) whose figures are
the JSON's, read back with poppler's ``pdfinfo`` and ``pdftotext`` as a reader's viewer would."""

from __future__ import annotations

import io
import re
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from tests.api.test_requests import make_portal
from tests.factories import Factory
from tests.security.helpers import post, register, suricata_c2
from vmportal.kit import db
from vmportal.request.models import VMRequest
from vmportal.unit.models import Unit

API = "/api/v1"


def _pdf_text(content: bytes, tmp_path: Path) -> tuple[int, str]:
    """(pages, text laid out as on the page) of a PDF."""
    path = tmp_path / "summary.pdf"
    path.write_bytes(content)
    info = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True, text=True).stdout
    found = re.search(r"^Pages:\s+(\d+)$", info, re.M)
    assert found, info
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout
    return int(found.group(1)), text


def _named(unit: Unit, name_zh: str) -> Unit:
    with db.transaction() as s:
        row = s.get(Unit, unit.id)
        assert row is not None
        row.name_zh = name_zh
        s.add(row)
    unit.name_zh = name_zh
    return unit


def _shown(value: Any) -> str:
    return "—" if value is None else str(value)


def test_the_workbook_has_the_quota_sheet_with_its_chart_and_cover_figures(
    client: TestClient, factory: Factory
) -> None:
    p = make_portal(client, factory, quota=(5, 20, 64, 1000))
    factory.vm(p.unit)  # 2 vCPU, 4 GiB
    p.submitted(vcpus=4, memory_gib=8, disk_gib=100)
    tight = factory.unit(quota=(1, 1, 1, 1))
    factory.vm(tight)  # 2 vCPU on a quota of 1: over quota

    w = p.get("auditor", "/reports/committee?format=xlsx")
    assert w.status_code == 200, w.text
    book = load_workbook(io.BytesIO(w.content))
    assert "配额使用情况" in book.sheetnames
    ws = book["配额使用情况"]
    assert len(ws._charts) == 1  # a native chart, not a picture
    rows = list(ws.iter_rows(values_only=True))
    header = rows[0]
    by_code = {r[0]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    mine = by_code[p.unit.code]
    assert (mine["vCPU配额"], mine["vCPU已用"], mine["vCPU申请中"], mine["vCPU剩余"]) == (20, 2, 4, 14)
    assert (mine["虚拟机配额"], mine["虚拟机已用"], mine["vCPU使用率(%)"]) == (5, 1, 10)
    assert mine["超出配额"] is None
    assert "vCPU" in by_code[tight.code]["超出配额"]

    cover = {r[0]: r[1] for r in book["汇总"].iter_rows(min_row=2, values_only=True)}
    j = p.get("auditor", "/reports/committee").json()
    quota = j["reports"]["quota"]
    assert (
        cover["超出配额单位数（当前）"]
        == j["cover"]["over_quota_units"]
        == quota["totals"]["over_quota_units"]
    )
    assert j["cover"]["over_quota_units"] >= 1
    assert cover["vCPU 配额使用率(%)（当前）"] == j["cover"]["vcpus_used_percent"]
    assert {r["unit_code"] for r in quota["rows"]} >= {p.unit.code, tight.code}

    # A unit's admin: their own unit's quota line only.
    own = p.get("admin", "/reports/committee").json()["reports"]["quota"]["rows"]
    assert [r["unit_code"] for r in own] == [p.unit.code]


def test_the_one_page_summary_shows_the_jsons_figures(
    client: TestClient, factory: Factory, tmp_path: Path
) -> None:
    p = make_portal(client, factory)
    short = _named(factory.unit(paperwork=False), "材料未齐学院")
    on_time, late = p.submitted(hostname="on-time"), p.submitted(hostname="late-one")
    for req in (on_time, late):
        assert p.act("operator", req["id"], "approve").status_code == 200
    now = db.utcnow()
    with db.transaction() as s:
        row = s.get(VMRequest, late["id"])
        assert row is not None
        row.submitted_at, row.due_at = now - timedelta(days=10), now - timedelta(days=3)
        s.add(row)
    vm = factory.vm(p.unit, name="kyc-web01")
    assert vm.ip_address
    suricata = register(client, p.heads["center_admin"], "suricata")
    assert post(client, suricata, suricata_c2(vm.ip_address)).status_code == 202

    j = p.get("center_admin", "/reports/committee").json()
    assert j["cover"]["incidents"] == 1 and j["cover"]["on_time_percent"] == 50.0
    r = p.get("center_admin", "/reports/committee?format=pdf")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF-")
    assert re.search(r'filename="committee-\d{8}-\d{8}\.pdf"', r.headers["content-disposition"])
    pages, text = _pdf_text(r.content, tmp_path)
    assert pages == 1
    assert "网络安全工作委员会报表摘要" in text
    period = j["period"]
    assert f"{period['since']} 至 {period['until']}" in text
    # Every key figure of the JSON's cover, beside its label, with the same value.
    workbook = load_workbook(io.BytesIO(p.get("center_admin", "/reports/committee?format=xlsx").content))
    labels = {r[0]: r[1] for r in workbook["汇总"].iter_rows(min_row=2, values_only=True)}
    keys = {row_key: label for label, row_key in zip(labels, j["cover"], strict=True)}
    for key, value in j["cover"].items():
        if key == "period":
            continue
        assert re.search(re.escape(keys[key]) + r"\s+" + re.escape(_shown(value)) + r"(\s|$)", text, re.M), (
            key,
            value,
        )
    # The charts' titles, and the unit most short listed by name.
    assert "每月安全事件数" in text and "按期率 50.0%" in text
    assert short.name_zh in text and "需重点关注的单位" in text

    # A unit's admin gets their own unit's page; another unit's id is a 404 as in the JSON.
    own = p.get("admin", "/reports/committee?format=pdf")
    assert own.status_code == 200
    pages, own_text = _pdf_text(own.content, tmp_path)
    assert pages == 1 and p.unit.name_zh in own_text and short.name_zh not in own_text
    assert p.get("admin", f"/reports/committee?format=pdf&unit_id={short.id}").status_code == 404
    bad = p.get("center_admin", "/reports/committee?format=pdf&since=2026-13-01")
    assert bad.status_code == 422 and "since" in bad.text


def test_many_units_short_still_fit_one_page(client: TestClient, factory: Factory, tmp_path: Path) -> None:
    # Long names wrap onto two lines in the table: the page still holds, with fewer rows listed.
    for n in range(30):
        _named(
            factory.unit(paperwork=False), f"短缺{n:02d}学院，名称很长很长很长很长很长很长很长很长很长很长"
        )
    center = factory.login(client, factory.user("auditor"))
    r = client.get(f"{API}/reports/committee", params={"format": "pdf"}, headers=center)
    assert r.status_code == 200, r.text
    pages, text = _pdf_text(r.content, tmp_path)
    assert pages == 1
    listed = len(re.findall(r"短缺\d\d学院", text))
    assert 1 <= listed < 30
    assert f"另有 {30 - listed} 个单位未列出" in text


def test_chart_text_is_escaped() -> None:
    from vmportal.reports import charts

    # A unit's name is data: as text in the picture, never markup of it.
    svg = str(charts.rows("类别 <i>", ["<b>&学院"], [charts.Series("数", [3])]))
    assert "<b>" not in svg and "<i>" not in svg
    assert "&lt;b&gt;&amp;学院" in svg and "&lt;i&gt;" in svg
