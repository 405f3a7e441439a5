"""The paper round trip (issue 14, point 2): the 承诺书 and 虚拟机服务协议书 generated as PDF with the
unit's name and the seed's wording, read back with pdftotext, rasterised to check the CJK glyphs are
drawn, and the signed scan filed against the generated document's id or hash completing the paperwork."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import Factory
from vmportal.kit.clock import beijing_today
from vmportal.paperwork import wording

API = "/api/v1"
SEED = Path("/work/shared/seed/campus-network-security-plan.zh.txt")
UNIT_NAME = "计算机科学与技术学院"
# A stand-in for a scanner's output: a different PDF than the one the portal produced.
SCAN = b"%PDF-1.4\n% scanned with signature and stamp\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True).stdout
    return re.sub(r"\s+", "", out)  # lines wrap anywhere in Chinese: compare without whitespace


def _dark_share(pdf: bytes, tmp_path: Path) -> float:
    """The share of non-white pixels on page 1 rendered at 30 dpi (grey PGM from pdftoppm)."""
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-r", "30", "-gray", "-f", "1", "-l", "1", str(path), str(tmp_path / "p")], check=True
    )
    raw = next(tmp_path.glob("p*.pgm")).read_bytes()
    # P5 header: magic, width height, maxval, then one byte a pixel.
    parts = raw.split(b"\n", 3)
    pixels = parts[3]
    return sum(1 for b in pixels if b < 200) / len(pixels)


@pytest.fixture
def setup(client: TestClient, factory: Factory) -> dict[str, Any]:
    unit = factory.unit(paperwork=False)
    unit_other = factory.unit()
    with factory.session() as s:
        from vmportal.unit.models import Unit

        row = s.get(Unit, unit.id)
        assert row is not None
        row.name_zh = UNIT_NAME
        s.add(row)
        s.commit()
    return {
        "unit": unit,
        "other": unit_other,
        "lead": factory.login(client, factory.user("unit_lead", unit)),
        "admin": factory.login(client, factory.user("unit_admin", unit)),
        "other_lead": factory.login(client, factory.user("unit_lead", unit_other)),
    }


@pytest.mark.parametrize(
    ("kind", "title", "preamble", "clauses"),
    [
        (
            "commitment_letter",
            wording.COMMITMENT_TITLE,
            wording.COMMITMENT_PREAMBLE,
            wording.COMMITMENT_CLAUSES,
        ),
        ("vm_agreement", wording.AGREEMENT_TITLE, wording.AGREEMENT_PREAMBLE, wording.AGREEMENT_CLAUSES),
    ],
    ids=["commitment_letter", "vm_agreement"],
)
def test_generated_pdf_says_what_the_seed_says_with_the_unit_name_and_date(
    client: TestClient,
    setup: dict[str, Any],
    tmp_path: Path,
    kind: str,
    title: str,
    preamble: str,
    clauses: Any,
) -> None:
    unit_id = setup["unit"].id
    r = client.post(f"{API}/units/{unit_id}/papers", json={"kind": kind}, headers=setup["admin"])
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-")
    assert r.headers["x-document-sha256"] == hashlib.sha256(r.content).hexdigest()
    assert "filename*=UTF-8''" in r.headers["content-disposition"]
    text = _text(r.content, tmp_path)
    seed = re.sub(r"\s+", "", SEED.read_text(encoding="utf-8"))
    # Every sentence of the paper is in the seed as printed, and in the PDF.
    for sentence in (title, preamble, *(c.number + c.text for c in clauses)):
        assert sentence in seed, sentence
        assert sentence in text, sentence
    assert UNIT_NAME in text
    today = beijing_today()
    assert f"{today.year}年{today.month}月{today.day}日" in text
    assert "主要负责人（签字）" in text and "单位盖章" in text
    assert r.headers["x-document-id"] in text  # the footer carries the id the scan is filed against
    # Glyphs are drawn (a missing CJK font renders blank boxes or nothing): a page of text is not white.
    assert _dark_share(r.content, tmp_path) > 0.01


def test_signed_scan_links_to_the_original_and_completes_the_paperwork(
    client: TestClient, setup: dict[str, Any], factory: Factory
) -> None:
    unit_id = setup["unit"].id
    lead = setup["lead"]
    status = client.get(f"{API}/units/{unit_id}/paperwork", headers=lead).json()
    assert "commitment_letter" in status["missing"] and "vm_agreement" in status["missing"]

    letter = client.post(f"{API}/units/{unit_id}/papers", json={"kind": "commitment_letter"}, headers=lead)
    agreement = client.post(f"{API}/units/{unit_id}/papers", json={"kind": "vm_agreement"}, headers=lead)
    # The original again, byte for byte, by its id and by its hash.
    doc_id, sha = agreement.headers["x-document-id"], agreement.headers["x-document-sha256"]
    assert client.get(f"{API}/units/{unit_id}/papers/{doc_id}", headers=lead).content == agreement.content
    assert client.get(f"{API}/units/{unit_id}/papers/{sha}", headers=lead).content == agreement.content

    form = {"signer": "张院长", "signed_on": beijing_today().isoformat()}
    # The unsigned original itself is not a signed paper.
    r = client.post(
        f"{API}/units/{unit_id}/papers/{doc_id}/signed",
        data=form,
        files={"file": ("协议书.pdf", agreement.content, "application/pdf")},
        headers=lead,
    )
    assert r.status_code == 422, r.text
    assert "签字盖章" in r.json()["error"]["message_zh"]
    assert client.get(f"{API}/units/{unit_id}/documents", headers=lead).json() == []  # nothing half-filed

    # Filed by the original's hash (the letter) and by its footer id (the agreement).
    r = client.post(
        f"{API}/units/{unit_id}/papers/{letter.headers['x-document-sha256']}/signed",
        data=form,
        files={"file": ("承诺书扫描.pdf", SCAN + b"1", "application/pdf")},
        headers=lead,
    )
    assert r.status_code == 201, r.text
    r = client.post(
        f"{API}/units/{unit_id}/papers/{doc_id}/signed",
        data=form,
        files={"file": ("协议书扫描.pdf", SCAN + b"2", "application/pdf")},
        headers=lead,
    )
    assert r.status_code == 201, r.text
    linked = r.json()
    assert linked["sha256"] == sha and linked["signed_document_id"] is not None
    docs = {d["id"]: d for d in client.get(f"{API}/units/{unit_id}/documents", headers=lead).json()}
    assert docs[linked["signed_document_id"]]["kind"] == "vm_agreement"
    assert docs[linked["signed_document_id"]]["sha256"] == hashlib.sha256(SCAN + b"2").hexdigest()

    status = client.get(f"{API}/units/{unit_id}/paperwork", headers=lead).json()
    assert "commitment_letter" not in status["missing"] and "vm_agreement" not in status["missing"]
    listed = client.get(f"{API}/units/{unit_id}/papers", headers=lead).json()
    assert {p["kind"]: p["signed_document_id"] is not None for p in listed} == {
        "commitment_letter": True,
        "vm_agreement": True,
    }


def test_refusals_are_clear_and_never_5xx(client: TestClient, setup: dict[str, Any]) -> None:
    unit_id = setup["unit"].id
    # Another unit cannot learn the unit or its papers exist.
    r = client.post(
        f"{API}/units/{unit_id}/papers", json={"kind": "vm_agreement"}, headers=setup["other_lead"]
    )
    assert r.status_code == 404
    r = client.post(f"{API}/units/{unit_id}/papers", json={"kind": "quota_letter"}, headers=setup["admin"])
    assert r.status_code == 422
    assert client.get(f"{API}/units/{unit_id}/papers/NO-SUCH-ID", headers=setup["admin"]).status_code == 404
    paper = client.post(
        f"{API}/units/{unit_id}/papers", json={"kind": "vm_agreement"}, headers=setup["admin"]
    )
    doc_id = paper.headers["x-document-id"]
    # Filing the signed paper is the lead's (主要负责人) or the center's, as for a hand-filed one.
    r = client.post(
        f"{API}/units/{unit_id}/papers/{doc_id}/signed",
        data={"signer": "张院长", "signed_on": beijing_today().isoformat()},
        files={"file": ("s.pdf", SCAN, "application/pdf")},
        headers=setup["admin"],
    )
    assert r.status_code == 403 and r.json()["error"]["message_zh"]
    for data, files in (
        ({"signer": "张院长"}, {"file": ("s.pdf", SCAN, "application/pdf")}),
        ({"signer": "张院长", "signed_on": beijing_today().isoformat()}, None),
        (
            {"signer": "张院长", "signed_on": beijing_today().isoformat()},
            {"file": ("s.exe", b"MZ\x90\x00" * 10, "application/pdf")},
        ),
    ):
        r = client.post(
            f"{API}/units/{unit_id}/papers/{doc_id}/signed", data=data, files=files, headers=setup["lead"]
        )
        assert 400 <= r.status_code < 500, r.text
        assert r.json()["error"]["message_zh"]
