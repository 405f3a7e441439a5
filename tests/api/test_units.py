"""Units, the contact registry, signed documents, information systems, paperwork and quota through the
HTTP API (issue 2, points 2 and 3): scoping, masking, encryption at rest, upload limits, bad input."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import SQLModel, select

from tests.factories import Factory
from vmportal.audit.models import AuditEntry
from vmportal.kit import db
from vmportal.kit.settings import Settings
from vmportal.unit import service
from vmportal.unit.models import Document, Unit

API = "/api/v1"
NATIONAL_ID = "11010519491231002X"  # the example number of GB 11643 itself, with a valid check digit
MOBILE = "13912345678"
ADMIN_CONTACT = {
    "name": "李管理",
    "title": "网络工程师",
    "office_phone": "0516-83590001",
    "mobile": MOBILE,
    "email": "li.gl@example.edu.cn",
    "qq": "12345678",
    "staff_no": "T12345",
    "national_id": NATIONAL_ID,
}
LEAD_CONTACT = {
    "name": "王负责",
    "title": "副院长",
    "office_phone": "0516-83590000",
    "mobile": "13812345678",
    "email": "wang.fz@example.edu.cn",
}
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
EXE = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 200


def _field(r: Any) -> tuple[str, str]:
    first = r.json()["error"]["fields"][0]
    return first["field"], first["rule"]


def _upload(
    client: TestClient,
    unit_id: int,
    headers: dict[str, str],
    *,
    kind: str = "vm_agreement",
    content: bytes = PDF,
    filename: str = "协议书.pdf",
    content_type: str = "application/pdf",
    signed_on: str | None = None,
    signer: str = "张院长",
) -> Any:
    return client.post(
        f"{API}/units/{unit_id}/documents",
        data={"kind": kind, "signer": signer, "signed_on": signed_on or date.today().isoformat()},
        files={"file": (filename, content, content_type)},
        headers=headers,
    )


class People(dict[str, Any]):
    """Units "a" and "b" and one user per role; a user logs in (argon2: slow) on first use only."""

    def __init__(self, client: TestClient, factory: Factory) -> None:
        unit_a, unit_b = factory.unit(), factory.unit()
        super().__init__(a=unit_a, b=unit_b)
        self._client, self._factory = client, factory
        self._users = {
            "center_admin": factory.user("center_admin"),
            "operator": factory.user("center_operator"),
            "auditor": factory.user("auditor"),
            "a_admin": factory.user("unit_admin", unit_a),
            "a_lead": factory.user("unit_lead", unit_a),
            "b_admin": factory.user("unit_admin", unit_b),
            "b_lead": factory.user("unit_lead", unit_b),
        }

    def __missing__(self, key: str) -> dict[str, str]:
        headers = self._factory.login(self._client, self._users[key])
        self[key] = headers
        return headers


@pytest.fixture
def people(client: TestClient, factory: Factory) -> People:
    return People(client, factory)


# ---- units -------------------------------------------------------------------------------------------


def test_units_crud_and_scope(client: TestClient, people: dict[str, Any]) -> None:
    admin = people["center_admin"]
    r = client.post(
        f"{API}/units",
        json={"code": "CS", "name_zh": "计算机科学与技术学院", "name_en": "School of Computer Science"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    unit_id = r.json()["id"]
    quota = client.get(f"{API}/units/{unit_id}/quota", headers=admin).json()
    assert (quota["max_vms"], quota["max_vcpus"]) == (0, 0)  # nothing until the center grants a quota
    assert (
        client.post(f"{API}/units", json={"code": "CS", "name_zh": "重复"}, headers=admin).status_code == 409
    )
    for who in ("operator", "auditor", "a_admin", "a_lead"):
        r = client.post(f"{API}/units", json={"code": f"X{who}", "name_zh": "某单位"}, headers=people[who])
        assert r.status_code == 403, who
    r = client.patch(
        f"{API}/units/{unit_id}", json={"name_en": "Computer Science", "active": False}, headers=admin
    )
    assert r.status_code == 200
    assert r.json()["active"] is False
    assert (
        client.patch(f"{API}/units/{unit_id}", json={"name_zh": "x"}, headers=people["operator"]).status_code
        == 403
    )

    everyone = {u["id"] for u in client.get(f"{API}/units", headers=people["auditor"]).json()}
    assert {people["a"].id, people["b"].id, unit_id} <= everyone
    own = client.get(f"{API}/units", headers=people["a_admin"]).json()
    assert [u["id"] for u in own] == [people["a"].id]
    assert client.get(f"{API}/units/{people['a'].id}", headers=people["a_lead"]).status_code == 200
    r = client.get(f"{API}/units/{people['a'].id}", headers=people["b_admin"])
    assert r.status_code == 404  # unit scoping answers 404: another unit's records do not exist for you
    assert r.json()["error"]["code"] == "not_found"


def test_unit_bad_input(client: TestClient, people: dict[str, Any]) -> None:
    admin = people["center_admin"]
    r = client.post(
        f"{API}/units", content=b"{not json", headers={**admin, "Content-Type": "application/json"}
    )
    assert r.status_code == 400
    r = client.post(f"{API}/units", json={"code": "a b", "name_zh": "x"}, headers=admin)
    assert (r.status_code, _field(r)) == (422, ("code", "format"))
    r = client.post(f"{API}/units", json={"code": "OK", "name_zh": "长" * 201}, headers=admin)
    assert (r.status_code, _field(r)) == (422, ("name_zh", "string_too_long"))
    r = client.post(f"{API}/units", json={"code": "OK", "name_zh": "x", "dean": "y"}, headers=admin)
    assert (r.status_code, _field(r)) == (422, ("dean", "extra_forbidden"))


# ---- contact registry ----------------------------------------------------------------------------------


def test_contacts_masked_for_everyone_but_center_admin(client: TestClient, people: dict[str, Any]) -> None:
    unit_id = people["a"].id
    r = client.put(
        f"{API}/units/{unit_id}/contacts/security_admin", json=ADMIN_CONTACT, headers=people["center_admin"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["national_id"] == NATIONAL_ID
    assert r.json()["masked"] is False
    shown = {
        c["role"]: c
        for c in client.get(f"{API}/units/{unit_id}/contacts", headers=people["center_admin"]).json()
    }
    assert shown["security_admin"]["national_id"] == NATIONAL_ID
    assert shown["security_admin"]["mobile"] == MOBILE
    for who in ("operator", "auditor", "a_admin", "a_lead"):
        rows = {
            c["role"]: c for c in client.get(f"{API}/units/{unit_id}/contacts", headers=people[who]).json()
        }
        admin_row = rows["security_admin"]
        assert admin_row["masked"] is True, who
        assert admin_row["national_id"] == "110*************2X", who
        assert admin_row["mobile"] == "139****5678", who
        assert rows["security_lead"]["mobile"] == "138****0000", who
        assert admin_row["name"] == "李管理"
    assert client.get(f"{API}/units/{unit_id}/contacts", headers=people["b_admin"]).status_code == 404


def _raw_database(settings: Settings) -> bytes:
    """What someone holding the database sees: on SQLite every file (main file and write-ahead log)
    as raw bytes; on PostgreSQL every row of every table as the server's own text."""
    if db.engine().dialect.name == "sqlite":
        raw = b"".join(p.read_bytes() for p in Path(settings.data_dir).glob("vmportal.sqlite3*"))
        assert raw, "the SQLite database file was not found"
        return raw
    with db.engine().connect() as conn:
        return "".join(
            str(row[0])
            for table in SQLModel.metadata.sorted_tables
            for row in conn.execute(sa.text(f'SELECT t::text FROM "{table.name}" t'))  # noqa: S608 - our own table names
        ).encode()


def test_national_id_is_never_in_clear_in_the_database_file_nor_the_log(
    client: TestClient, people: dict[str, Any], settings: Settings
) -> None:
    unit_id = people["a"].id
    r = client.put(
        f"{API}/units/{unit_id}/contacts/security_admin", json=ADMIN_CONTACT, headers=people["center_admin"]
    )
    assert r.status_code == 200
    changed = {**ADMIN_CONTACT, "title": "高级工程师"}
    assert (
        client.put(
            f"{API}/units/{unit_id}/contacts/security_admin", json=changed, headers=people["center_admin"]
        ).status_code
        == 200
    )
    raw = _raw_database(settings)
    for secret in (NATIONAL_ID, MOBILE):
        assert secret.encode() not in raw
        assert secret.encode("utf-16-le") not in raw
    with db.transaction() as s:
        rows = s.exec(select(AuditEntry).where(AuditEntry.target_type == "contact")).all()
        assert [r.action for r in rows] == ["contact.update", "contact.update"]  # the factory created it
        dumped = json.dumps([[r.before, r.after, r.detail] for r in rows], ensure_ascii=False)
        assert NATIONAL_ID not in dumped and MOBILE not in dumped
        assert rows[-1].after is not None and rows[-1].after["national_id"] == "110*************2X"


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"national_id": "110105194912310021"}, "national_id", "checksum"),
        ({"national_id": "11010519491231002"}, "national_id", "format"),
        ({"national_id": "110105194913310026"}, "national_id", "birth_date"),
        ({"mobile": "12345678901"}, "mobile", "format"),
        ({"mobile": "1391234567"}, "mobile", "format"),
        ({"qq": "1234"}, "qq", "format"),
        ({"qq": "12345abc"}, "qq", "format"),
        ({"email": "li@"}, "email", "format"),
        ({"office_phone": "call me"}, "office_phone", "format"),
        ({"name": ""}, "name", "string_too_short"),
        ({"name": "李" * 101}, "name", "string_too_long"),
        ({"staff_no": "T 1"}, "staff_no", "format"),
        ({"qq": None}, "qq", "required"),
        ({"national_id": None}, "national_id", "required"),
        ({"title": "  "}, "title", "required"),
    ],
)
def test_contact_rules(
    client: TestClient, people: dict[str, Any], changes: dict[str, Any], field: str, rule: str
) -> None:
    body = {**ADMIN_CONTACT, **changes}
    r = client.put(
        f"{API}/units/{people['a'].id}/contacts/security_admin", json=body, headers=people["operator"]
    )
    assert r.status_code == 422, r.text
    assert _field(r) == (field, rule)
    assert NATIONAL_ID not in r.text  # a refused ID number is not echoed back either


def test_contact_formats_are_normalised(client: TestClient, people: dict[str, Any]) -> None:
    body = {
        **ADMIN_CONTACT,
        "mobile": "+86 139-1234-5678",
        "national_id": NATIONAL_ID.lower(),
        "email": "Li.GL@Example.EDU.cn",
    }
    r = client.put(
        f"{API}/units/{people['a'].id}/contacts/security_admin", json=body, headers=people["center_admin"]
    )
    assert r.status_code == 200, r.text
    assert (r.json()["mobile"], r.json()["national_id"], r.json()["email"]) == (
        MOBILE,
        NATIONAL_ID,
        "Li.GL@example.edu.cn",
    )


def test_lead_row_collects_no_id_number(client: TestClient, people: dict[str, Any]) -> None:
    url = f"{API}/units/{people['a'].id}/contacts/security_lead"
    r = client.put(url, json={**LEAD_CONTACT, "national_id": NATIONAL_ID}, headers=people["center_admin"])
    assert (r.status_code, _field(r)) == (422, ("national_id", "not_collected"))
    r = client.put(
        url, json={k: v for k, v in LEAD_CONTACT.items() if k != "email"}, headers=people["center_admin"]
    )
    assert (r.status_code, _field(r)) == (422, ("email", "required"))
    r = client.put(
        f"{API}/units/{people['a'].id}/contacts/dean", json=LEAD_CONTACT, headers=people["center_admin"]
    )
    assert (r.status_code, _field(r)[0]) == (422, "role")


def test_who_may_edit_contacts(client: TestClient, people: dict[str, Any]) -> None:
    url = f"{API}/units/{people['a'].id}/contacts/security_lead"
    assert client.put(url, json=LEAD_CONTACT, headers=people["a_lead"]).status_code == 200
    assert client.put(url, json=LEAD_CONTACT, headers=people["operator"]).status_code == 200
    assert client.put(url, json=LEAD_CONTACT, headers=people["a_admin"]).status_code == 403
    assert client.put(url, json=LEAD_CONTACT, headers=people["auditor"]).status_code == 403
    assert client.put(url, json=LEAD_CONTACT, headers=people["b_lead"]).status_code == 404


# ---- documents ---------------------------------------------------------------------------------------------


def test_document_upload_download_and_supersede(
    client: TestClient, people: dict[str, Any], settings: Settings
) -> None:
    unit_id = people["a"].id
    r = _upload(client, unit_id, people["a_lead"])
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert (doc["size"], doc["content_type"], doc["filename"], doc["current"]) == (
        len(PDF),
        "application/pdf",
        "协议书.pdf",
        True,
    )
    assert (settings.upload_dir / doc["sha256"]).read_bytes() == PDF
    assert not list(settings.upload_dir.glob(".upload-*"))  # no temporary file left behind
    got = client.get(f"{API}/units/{unit_id}/documents/{doc['id']}/file", headers=people["auditor"])
    assert got.status_code == 200
    assert got.content == PDF
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["x-content-sha256"] == doc["sha256"]

    r = _upload(
        client, unit_id, people["operator"], content=PNG, filename="scan.png", content_type="image/png"
    )
    assert r.status_code == 201, r.text
    newer = r.json()
    listed = {
        d["id"]: d for d in client.get(f"{API}/units/{unit_id}/documents", headers=people["a_admin"]).json()
    }
    assert listed[doc["id"]]["current"] is False
    assert listed[doc["id"]]["superseded_at"] is not None
    assert listed[newer["id"]]["current"] is True
    current = client.get(
        f"{API}/units/{unit_id}/documents", params={"current": True}, headers=people["a_admin"]
    ).json()
    assert newer["id"] in {d["id"] for d in current}
    assert doc["id"] not in {d["id"] for d in current}
    with db.transaction() as s:
        row = s.exec(select(AuditEntry).where(AuditEntry.action == "document.file")).all()[-1]
        assert row.after is not None and row.after["sha256"] == newer["sha256"]
        assert row.before is not None and row.before["sha256"] == doc["sha256"]

    assert (
        client.get(f"{API}/units/{unit_id}/documents/{doc['id']}/file", headers=people["b_admin"]).status_code
        == 404
    )
    assert (
        client.get(
            f"{API}/units/{people['b'].id}/documents/{doc['id']}/file", headers=people["b_admin"]
        ).status_code
        == 404
    )
    assert client.get(f"{API}/units/{unit_id}/documents", headers=people["b_lead"]).status_code == 404


def _documents(unit_id: int) -> int:
    with db.transaction() as s:
        return len(s.exec(select(Document).where(Document.unit_id == unit_id)).all())


def test_document_too_large_is_413(client: TestClient, people: dict[str, Any], settings: Settings) -> None:
    unit_id = people["a"].id
    before = _documents(unit_id)
    settings.upload_max_bytes = 1024
    r = _upload(client, unit_id, people["center_admin"], content=PDF + b"0" * 2000)
    assert r.status_code == 413
    assert r.json()["error"]["field"] == "file"
    # Announced far over the limit: refused before the body is read.
    r = _upload(client, unit_id, people["center_admin"], content=PDF + b"0" * 200_000)
    assert r.status_code == 413
    assert _documents(unit_id) == before
    assert not list(settings.upload_dir.glob(".upload-*"))


def test_document_of_the_wrong_type_is_415(client: TestClient, people: dict[str, Any]) -> None:
    unit_id = people["a"].id
    before = _documents(unit_id)
    r = _upload(client, unit_id, people["center_admin"], content=EXE, filename="agreement.pdf")
    assert r.status_code == 415  # an .exe renamed .pdf: the declared type is fine, its bytes are not
    assert (r.json()["error"]["field"], r.json()["error"]["rule"]) == ("file", "magic_bytes")
    r = _upload(
        client,
        unit_id,
        people["center_admin"],
        content=EXE,
        filename="setup.exe",
        content_type="application/x-msdownload",
    )
    assert r.status_code == 415
    assert (r.json()["error"]["field"], r.json()["error"]["rule"]) == ("file", "content_type")
    r = _upload(client, unit_id, people["center_admin"], content=PNG, content_type="application/pdf")
    assert r.status_code == 415  # a PNG declared as PDF
    assert _documents(unit_id) == before


def test_document_form_rules(client: TestClient, people: dict[str, Any]) -> None:
    unit_id = people["a"].id
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    r = _upload(client, unit_id, people["center_admin"], signed_on=tomorrow)
    assert (r.status_code, _field(r)) == (422, ("signed_on", "not_future"))
    r = _upload(client, unit_id, people["center_admin"], signed_on="1990-01-01")
    assert (r.status_code, _field(r)) == (422, ("signed_on", "too_old"))
    r = _upload(client, unit_id, people["center_admin"], signed_on="yesterday")
    assert (r.status_code, _field(r)[0]) == (422, "signed_on")
    r = _upload(client, unit_id, people["center_admin"], kind="resignation_letter")
    assert (r.status_code, _field(r)) == (422, ("kind", "enum"))
    r = _upload(client, unit_id, people["center_admin"], signer="x" * 101)
    assert (r.status_code, _field(r)) == (422, ("signer", "string_too_long"))
    r = _upload(client, unit_id, people["center_admin"], content=b"", filename="empty.pdf")
    assert (r.status_code, _field(r)) == (422, ("file", "empty"))
    r = client.post(
        f"{API}/units/{unit_id}/documents",
        data={"kind": "vm_agreement", "signer": "x", "signed_on": date.today().isoformat()},
        headers=people["center_admin"],
    )
    assert (r.status_code, _field(r)) == (422, ("file", "required"))


def test_who_may_file_documents(client: TestClient, people: dict[str, Any]) -> None:
    unit_id = people["a"].id
    assert _upload(client, unit_id, people["a_admin"]).status_code == 403
    assert _upload(client, unit_id, people["auditor"]).status_code == 403
    assert _upload(client, unit_id, people["b_lead"]).status_code == 404
    assert _upload(client, unit_id, people["a_lead"]).status_code == 201


# ---- paperwork --------------------------------------------------------------------------------------------


def test_paperwork_status(client: TestClient, factory: Factory, people: dict[str, Any]) -> None:
    admin = people["center_admin"]
    done = client.get(f"{API}/units/{people['a'].id}/paperwork", headers=people["a_admin"]).json()
    assert done["complete"] is True
    assert done["missing"] == []
    assert done["agreement_filed_at"] is not None

    bare = factory.unit(paperwork=False)
    assert bare.id is not None
    r = client.get(f"{API}/units/{bare.id}/paperwork", headers=admin).json()
    assert r["complete"] is False
    assert {"security_admin.national_id", "security_lead.name", "commitment_letter", "vm_agreement"} <= set(
        r["missing"]
    )
    assert r["agreement_filed_at"] is None
    assert "身份证号" in r["message_zh"]

    # Filling the registry and filing both papers through the API completes it.
    assert (
        client.put(
            f"{API}/units/{bare.id}/contacts/security_admin", json=ADMIN_CONTACT, headers=admin
        ).status_code
        == 200
    )
    assert (
        client.put(
            f"{API}/units/{bare.id}/contacts/security_lead", json=LEAD_CONTACT, headers=admin
        ).status_code
        == 200
    )
    assert _upload(client, bare.id, admin, kind="commitment_letter").status_code == 201
    r = client.get(f"{API}/units/{bare.id}/paperwork", headers=admin).json()
    assert r["missing"] == ["vm_agreement"]
    filed = _upload(client, bare.id, admin, kind="vm_agreement").json()
    r = client.get(f"{API}/units/{bare.id}/paperwork", headers=admin).json()
    assert (r["complete"], r["missing"]) == (True, [])
    assert r["agreement_filed_at"] == filed["filed_at"]

    no_agreement = factory.unit(agreement=False)
    r = client.get(f"{API}/units/{no_agreement.id}/paperwork", headers=admin).json()
    assert r["missing"] == ["vm_agreement"]
    assert (
        client.get(f"{API}/units/{no_agreement.id}/paperwork", headers=people["b_admin"]).status_code == 404
    )


def test_paperwork_service_functions(factory: Factory) -> None:
    complete, without = factory.unit(), factory.unit(agreement=False)
    with db.transaction() as s:
        assert complete.id is not None and without.id is not None
        facts = service.paperwork_facts(s, complete.id)
        assert facts.vm_agreement_on_file and facts.commitment_letter_on_file
        assert facts.security_admin is not None and facts.security_admin.national_id
        assert service.agreement_filed_at(s, complete.id) is not None
        assert service.paperwork_facts(s, without.id).vm_agreement_on_file is False
        assert service.agreement_filed_at(s, without.id) is None
        unit = s.get(Unit, complete.id)
        assert unit is not None


# ---- information systems ---------------------------------------------------------------------------------

SYSTEM = {
    "name": "课程实验平台",
    "purpose": "teaching",
    "description": "本科课程实验",
    "domains": ["Lab.Example.EDU.cn.", "lab.example.edu.cn"],
    "responsible_person": "张老师",
    "responsible_phone": "0516-83591234",
}


def test_systems_crud_and_scope(client: TestClient, factory: Factory, people: dict[str, Any]) -> None:
    unit_id = people["a"].id
    url = f"{API}/units/{unit_id}/systems"
    r = client.post(url, json=SYSTEM, headers=people["a_admin"])
    assert r.status_code == 201, r.text
    system = r.json()
    assert system["domains"] == ["lab.example.edu.cn"]  # normalised and de-duplicated
    assert client.post(url, json=SYSTEM, headers=people["a_lead"]).status_code == 201
    assert client.post(url, json=SYSTEM, headers=people["operator"]).status_code == 201
    assert client.post(url, json=SYSTEM, headers=people["auditor"]).status_code == 403
    assert client.post(url, json=SYSTEM, headers=people["b_admin"]).status_code == 404
    assert len(client.get(url, headers=people["auditor"]).json()) == 3
    assert client.get(f"{url}/{system['id']}", headers=people["b_admin"]).status_code == 404
    assert (
        client.get(
            f"{API}/units/{people['b'].id}/systems/{system['id']}", headers=people["b_admin"]
        ).status_code
        == 404
    )
    r = client.patch(
        f"{url}/{system['id']}", json={"purpose": "research", "domains": []}, headers=people["a_lead"]
    )
    assert r.status_code == 200
    assert (r.json()["purpose"], r.json()["domains"], r.json()["name"]) == ("research", [], "课程实验平台")
    assert (
        client.patch(f"{url}/{system['id']}", json={"name": "x"}, headers=people["auditor"]).status_code
        == 403
    )
    assert client.delete(f"{url}/{system['id']}", headers=people["b_lead"]).status_code == 404
    assert client.delete(f"{url}/{system['id']}", headers=people["a_admin"]).status_code == 204
    assert client.get(f"{url}/{system['id']}", headers=people["a_admin"]).status_code == 404
    with db.transaction() as s:
        actions = [
            r.action for r in s.exec(select(AuditEntry).where(AuditEntry.target_type == "information_system"))
        ]
    assert actions == ["system.create"] * 3 + ["system.update", "system.delete"]


def test_system_in_use_cannot_be_deleted(
    client: TestClient, factory: Factory, people: dict[str, Any]
) -> None:
    unit = people["a"]
    system = factory.system(unit)
    factory.vm(unit, system_id=system.id)
    r = client.delete(f"{API}/units/{unit.id}/systems/{system.id}", headers=people["center_admin"])
    assert r.status_code == 409


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"purpose": "news"}, "purpose", "enum"),
        ({"domains": ["bad_domain.example.cn"]}, "domains.0", "hostname"),
        ({"domains": ["10.0.0.1"]}, "domains.0", "hostname"),
        ({"domains": ["localhost"]}, "domains.0", "hostname"),
        ({"domains": [f"d{i}.example.cn" for i in range(21)]}, "domains", "too_long"),
        ({"name": "系" * 201}, "name", "string_too_long"),
        ({"description": "x" * 2001}, "description", "string_too_long"),
        ({"responsible_person": ""}, "responsible_person", "string_too_short"),
        ({"responsible_phone": "phone"}, "responsible_phone", "format"),
    ],
)
def test_system_rules(
    client: TestClient, people: dict[str, Any], changes: dict[str, Any], field: str, rule: str
) -> None:
    r = client.post(
        f"{API}/units/{people['a'].id}/systems", json={**SYSTEM, **changes}, headers=people["a_admin"]
    )
    assert r.status_code == 422, r.text
    assert _field(r) == (field, rule)


# ---- quota ------------------------------------------------------------------------------------------------

QUOTA = {"max_vms": 5, "max_vcpus": 20, "max_memory_gib": 64, "max_disk_gib": 1000}


def test_quota_set_by_center_admin_only(client: TestClient, people: dict[str, Any]) -> None:
    url = f"{API}/units/{people['a'].id}/quota"
    r = client.put(url, json=QUOTA, headers=people["center_admin"])
    assert r.status_code == 200
    assert {k: r.json()[k] for k in QUOTA} == QUOTA
    assert {k: client.get(url, headers=people["a_lead"]).json()[k] for k in QUOTA} == QUOTA
    for who in ("operator", "auditor", "a_admin", "a_lead"):
        assert client.put(url, json=QUOTA, headers=people[who]).status_code == 403, who
    assert client.get(url, headers=people["b_admin"]).status_code == 404
    with db.transaction() as s:
        row = s.exec(select(AuditEntry).where(AuditEntry.action == "quota.update")).one()
        assert row.after == QUOTA
        assert row.before == {"max_vms": 10, "max_vcpus": 40, "max_memory_gib": 128, "max_disk_gib": 2000}


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"max_vms": -1}, "max_vms", "greater_than_equal"),
        ({"max_memory_gib": 10 * 1024 * 1024}, "max_memory_gib", "less_than_equal"),  # 10 TiB per unit
        ({"max_vcpus": "many"}, "max_vcpus", "int_parsing"),
        ({"max_disk_gib": None}, "max_disk_gib", "int_type"),
    ],
)
def test_quota_rules(
    client: TestClient, people: dict[str, Any], changes: dict[str, Any], field: str, rule: str
) -> None:
    r = client.put(
        f"{API}/units/{people['a'].id}/quota", json={**QUOTA, **changes}, headers=people["center_admin"]
    )
    assert r.status_code == 422
    assert _field(r) == (field, rule)


# ---- accounts follow the registry (issue 13) ---------------------------------------------------------


def test_replacing_the_security_admin_hands_the_account_over(client: TestClient, factory: Factory) -> None:
    """The unit records a new 网络安全管理员: the old person's account is deactivated and every session
    of it ends, the new person's account is made from the new row, and the log names both."""
    unit = factory.unit()
    center = factory.login(client, factory.user("center_admin"))
    url = f"{API}/units/{unit.id}/contacts/security_admin"
    assert client.put(url, json=ADMIN_CONTACT, headers=center).status_code == 200
    made = client.post(
        f"{API}/units/{unit.id}/accounts", json={"accounts": [{"contact": "security_admin"}]}, headers=center
    )
    assert made.status_code == 201, made.text
    old = made.json()["accounts"][0]
    login = client.post(
        f"{API}/auth/login", json={"username": old["user"]["username"], "password": old["initial_password"]}
    )
    old_session = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert client.get(f"{API}/units/{unit.id}", headers=old_session).status_code == 200

    # A change of title is the same person: nothing happens to the account.
    same = {**ADMIN_CONTACT, "title": "高级工程师"}
    assert client.put(url, json=same, headers=center).status_code == 200
    assert client.get(f"{API}/auth/me", headers=old_session).status_code == 200

    newcomer = {**ADMIN_CONTACT, "name": "赵六", "staff_no": "T67890", "email": "zhaoliu@example.edu.cn"}
    r = client.put(url, json=newcomer, headers=center)
    assert r.status_code == 200, r.text
    assert client.get(f"{API}/auth/me", headers=old_session).status_code == 401  # out at once
    relog = client.post(
        f"{API}/auth/login", json={"username": old["user"]["username"], "password": old["initial_password"]}
    )
    assert relog.status_code == 401
    users = client.get(f"{API}/users", params={"unit_id": unit.id}, headers=center).json()
    by_name = {u["username"]: u for u in users}
    assert by_name[old["user"]["username"]]["active"] is False
    new = by_name["t67890"]
    assert (new["active"], new["role"], new["display_name"], new["contact_id"]) == (
        True,
        "unit_admin",
        "赵六",
        old["user"]["contact_id"],
    )
    with db.transaction() as s:
        rows = s.exec(select(AuditEntry).where(AuditEntry.action == "account.replace")).all()
    assert len(rows) == 1
    assert rows[0].before == {"user_id": old["user"]["id"], "username": old["user"]["username"]}
    assert rows[0].after == {"user_id": new["id"], "username": "t67890"}
    assert rows[0].unit_id == unit.id
