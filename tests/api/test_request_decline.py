"""The unit lead declines a request (POST /requests/{id}/decline), beside endorse: only where the
center requires endorsement, only a submitted request of the lead's own unit, only with a reason;
the request ends rejected, decided by the lead with the reason, audited as request.decline, and the
center can no longer approve it. Every refusal writes nothing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from tests.api.test_requests import API, Portal, counts, make_portal
from tests.factories import Factory
from vmportal.audit.models import AuditEntry
from vmportal.kit import db


@pytest.fixture
def portal(client: TestClient, factory: Factory) -> Portal:
    return make_portal(client, factory)


def _require_endorsement(portal: Portal, on: bool = True) -> None:
    r = portal.client.put(
        f"{API}/settings", json={"endorsement_required": on}, headers=portal.heads["center_admin"]
    )
    assert r.status_code == 200, r.text


def test_decline_only_where_the_center_requires_endorsement(portal: Portal) -> None:
    req = portal.submitted()
    before = counts()
    r = portal.act("lead", req["id"], "decline", {"reason": "用途不明确"})
    assert r.status_code == 409 and "does not require" in r.json()["error"]["message"]
    assert r.json()["error"]["message_zh"]
    assert counts() == before
    assert portal.get("admin", f"/requests/{req['id']}").json()["state"] == "submitted"


def test_the_lead_declines_with_a_reason(portal: Portal) -> None:
    _require_endorsement(portal)
    req, endorsed = portal.submitted(), portal.submitted(hostname="lab-two")
    assert portal.get("lead", f"/requests/{req['id']}").json()["actions"] == ["endorse", "decline"]
    assert portal.act("lead", endorsed["id"], "endorse").status_code == 200
    before = counts()

    # Refused, nothing written: no reason, a blank one, another unit's lead, other roles.
    r = portal.act("lead", req["id"], "decline", {"reason": "   "})
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["field"] == "reason"
    assert "不同意须说明理由" in r.json()["error"]["message_zh"]
    assert portal.act("lead", req["id"], "decline", {}).status_code == 422
    assert portal.act("lead", req["id"], "decline").status_code == 422
    assert portal.act("other_lead", req["id"], "decline", {"reason": "x"}).status_code == 404
    for who in ("admin", "operator", "center_admin", "auditor"):
        r = portal.act(who, req["id"], "decline", {"reason": "x"})
        assert r.status_code == 403, who
        assert "不同意" in r.json()["error"]["message_zh"]
    # Once endorsed it is the center's to decide.
    r = portal.act("lead", endorsed["id"], "decline", {"reason": "改主意了"})
    assert r.status_code == 409 and r.json()["error"]["state"] == "endorsed"
    assert counts() == before

    r = portal.act("lead", req["id"], "decline", {"reason": "本学期不开设该课程，暂不需要"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "rejected" and body["decision_reason"] == "本学期不开设该课程，暂不需要"
    assert body["decided_by"] is not None and body["actions"] == []
    seen = portal.get("admin", f"/requests/{req['id']}").json()
    assert seen["state"] == "rejected" and seen["decision_reason"] == "本学期不开设该课程，暂不需要"
    with db.transaction(read_only=True) as s:
        entry = s.exec(
            select(AuditEntry)
            .where(AuditEntry.action == "request.decline")
            .order_by(col(AuditEntry.id).desc())
        ).first()
        assert entry is not None and entry.target_id == str(req["id"]) and entry.result == "ok"
        assert entry.actor_role == "unit_lead" and entry.unit_id == portal.unit.id
        assert entry.before == {"state": "submitted"}
        assert entry.after == {"state": "rejected", "reason": "本学期不开设该课程，暂不需要"}

    # Final: neither the lead again nor the center.
    assert portal.act("lead", req["id"], "decline", {"reason": "x"}).status_code == 409
    r = portal.act("operator", req["id"], "approve")
    assert r.status_code == 409 and r.json()["error"]["state"] == "rejected"
