"""Accounts follow the contact registry on every path that writes it (issue 13 point 4): the XLSX
import of 附件1 hands a replaced 网络安全负责人's account over exactly as the API edit of the row does
(tests/api/test_units.py), and an import refused for a problem in its file changes no account."""

from __future__ import annotations

import io
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import select

from tests.factories import Factory
from tests.paperwork.test_contact_sheet import _fill, _post, _template
from vmportal.audit.models import AuditEntry
from vmportal.identity.models import AuthToken, User
from vmportal.kit import db

API = "/api/v1"


def _sheet_with_lead(client: TestClient, unit_id: int, headers: dict[str, str], **lead: str) -> bytes:
    """A fresh download of the unit's 附件1 with the lead's row (row 5) rewritten."""
    wb = _template(client, unit_id, headers)
    ws = wb["网络安全联络通讯录"]
    for cell, value in lead.items():
        ws[cell] = value
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _accounts(client: TestClient, unit_id: int, center: dict[str, str]) -> dict[str, Any]:
    made = client.post(
        f"{API}/units/{unit_id}/accounts",
        json={"accounts": [{"contact": "security_admin"}, {"contact": "security_lead"}]},
        headers=center,
    )
    assert made.status_code == 201, made.text
    return {a["contact"]: a for a in made.json()["accounts"]}


def _bearer(client: TestClient, account: dict[str, Any]) -> dict[str, str]:
    r = client.post(
        f"{API}/auth/login",
        json={"username": account["user"]["username"], "password": account["initial_password"]},
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_an_import_that_replaces_the_lead_hands_the_lead_account_over(
    client: TestClient, factory: Factory
) -> None:
    unit = factory.unit(paperwork=False)
    center = factory.login(client, factory.user("center_admin"))
    first = _fill(_template(client, unit.id, center))
    assert _post(client, center, [("附件1.xlsx", first)], commit=True).status_code == 200
    accounts = _accounts(client, unit.id, center)
    lead_session = _bearer(client, accounts["security_lead"])
    admin_session = _bearer(client, accounts["security_admin"])

    # The unit sends its registry again with another person as 网络安全负责人 (name and 工号).
    again = _sheet_with_lead(client, unit.id, center, B5="赵负责", H5="T55555", F5="zhao.fz@x.edu.cn")
    r = _post(client, center, [("附件1-更新.xlsx", again)], commit=True)
    assert r.status_code == 200, r.text

    assert client.get(f"{API}/auth/me", headers=lead_session).status_code == 401  # out at once
    assert client.get(f"{API}/auth/me", headers=admin_session).status_code == 200  # untouched
    with db.transaction() as s:
        old = s.get(User, accounts["security_lead"]["user"]["id"])
        assert old is not None and old.active is False
        assert all(
            t.revoked_at is not None for t in s.exec(select(AuthToken).where(AuthToken.user_id == old.id))
        )
        new = s.exec(select(User).where(User.username == "t55555")).one()
        assert (new.active, new.role, new.unit_id, new.display_name, new.contact_id) == (
            True,
            "unit_lead",
            unit.id,
            "赵负责",
            old.contact_id,
        )
        handover = s.exec(select(AuditEntry).where(AuditEntry.action == "account.replace")).one()
        assert handover.after == {"user_id": new.id, "username": "t55555"}
        assert handover.unit_id == unit.id
        # The hand-over was written in the import's own transaction, before its summary row.
        imported = s.exec(select(AuditEntry).where(AuditEntry.action == "paperwork.import_contacts")).all()
        assert imported[-1].id is not None and handover.id is not None and handover.id < imported[-1].id
        assert imported[-1].request_id == handover.request_id


def test_a_refused_import_changes_no_account(client: TestClient, factory: Factory) -> None:
    unit = factory.unit(paperwork=False)
    center = factory.login(client, factory.user("center_admin"))
    first = _fill(_template(client, unit.id, center))
    assert _post(client, center, [("附件1.xlsx", first)], commit=True).status_code == 200
    accounts = _accounts(client, unit.id, center)
    lead_session = _bearer(client, accounts["security_lead"])

    # A new lead, but the file also has a mistake (the lead's 职务 left empty): nothing is imported.
    bad = _sheet_with_lead(client, unit.id, center, B5="赵负责", H5="T55555", C5="")
    r = _post(client, center, [("附件1-更新.xlsx", bad)], commit=True)
    assert r.status_code == 422
    assert client.get(f"{API}/auth/me", headers=lead_session).status_code == 200
    with db.transaction() as s:
        assert s.exec(select(User).where(User.username == "t55555")).first() is None
        assert s.exec(select(AuditEntry).where(AuditEntry.action == "account.replace")).first() is None
