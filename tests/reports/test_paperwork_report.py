"""Paperwork compliance per unit (issue 14, point 3) as JSON, CSV with BOM and XLSX with a native chart."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from tests.factories import Factory

API = "/api/v1"


def test_report_in_three_formats_says_the_same(client: TestClient, factory: Factory) -> None:
    done, missing = factory.unit(), factory.unit(paperwork=False)
    factory.system(done)
    center = factory.login(client, factory.user("auditor"))
    unit_user = factory.login(client, factory.user("unit_admin", missing))

    rows: dict[str, Any] = {
        r["unit_code"]: r for r in client.get(f"{API}/reports/paperwork", headers=center).json()["units"]
    }
    assert rows[done.code]["complete"] is True and rows[done.code]["systems_registered"] == 1
    gap = rows[missing.code]
    assert gap["complete"] is False and gap["registry_complete"] is False
    assert gap["commitment_letter_signed"] is False and gap["vm_agreement_signed"] is False
    assert "vm_agreement" in gap["missing"] and gap["missing_items"] == len(gap["missing"])

    r = client.get(f"{API}/reports/paperwork", params={"format": "csv"}, headers=center)
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert table[0][:3] == ["单位代码", "单位名称", "通讯录完整"]
    by_code = {row[0]: row for row in table[1:]}
    assert by_code[missing.code][1] == missing.name_zh and by_code[missing.code][2] == "否"

    r = client.get(f"{API}/reports/paperwork", params={"format": "xlsx"}, headers=center)
    assert r.status_code == 200
    ws = load_workbook(io.BytesIO(r.content)).active
    assert ws is not None and ws["A1"].value == "单位代码"
    assert len(ws._charts) == 1  # a native chart, not a picture
    assert {ws.cell(row=i, column=1).value for i in range(2, ws.max_row + 1)} >= {done.code, missing.code}

    # A unit's user sees its own row only; another unit's id answers 404.
    own = client.get(f"{API}/reports/paperwork", headers=unit_user).json()["units"]
    assert [r["unit_code"] for r in own] == [missing.code]
    assert (
        client.get(f"{API}/reports/paperwork", params={"unit_id": done.id}, headers=unit_user).status_code
        == 404
    )
    assert client.get(f"{API}/reports/paperwork", params={"format": "pdf"}, headers=center).status_code == 422


def test_committee_summary_is_one_page_with_the_units(
    client: TestClient, factory: Factory, tmp_path: Any
) -> None:
    import subprocess

    done, short = factory.unit(), factory.unit(paperwork=False)
    center = factory.login(client, factory.user("center_admin"))
    r = client.get(f"{API}/reports/summary.pdf", headers=center)
    assert r.status_code == 200 and r.content.startswith(b"%PDF-")
    path = tmp_path / "s.pdf"
    path.write_bytes(r.content)
    info = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True, text=True).stdout
    assert re.search(r"^Pages:\s+1$", info, re.M), info
    text = subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True).stdout
    assert "网络安全综合治理材料报送情况汇总" in text
    assert done.name_zh in text and short.name_zh in text
    assert "材料齐全" in text
