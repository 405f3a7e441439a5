"""Center settings through the HTTP API: typed known keys, center_admin only, audited."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from tests.factories import Factory
from vmportal.audit.models import AuditEntry
from vmportal.audit.service import Who
from vmportal.center import service
from vmportal.kit import db, errors
from vmportal.kit.settings import Settings

API = "/api/v1"


def test_endorsement_setting_round_trip(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    admin = factory.login(client, factory.user("center_admin"))
    lead = factory.login(client, factory.user("unit_lead", unit))
    assert client.get(f"{API}/settings", headers=lead).json() == {
        "endorsement_required": False,
        "unmatched_alert_mail": "digest",
        "maintenance_notice_hours": 72,
    }
    r = client.put(f"{API}/settings", json={"endorsement_required": True}, headers=admin)
    assert r.status_code == 200
    assert r.json() == {
        "endorsement_required": True,
        "unmatched_alert_mail": "digest",
        "maintenance_notice_hours": 72,
    }
    assert client.get(f"{API}/settings", headers=lead).json() == {
        "endorsement_required": True,
        "unmatched_alert_mail": "digest",
        "maintenance_notice_hours": 72,
    }
    with db.transaction() as s:
        row = s.exec(select(AuditEntry).where(AuditEntry.action == "setting.update")).one()
        assert (row.target_id, row.before, row.after) == (
            "endorsement_required",
            {"endorsement_required": False},
            {"endorsement_required": True},
        )
        assert service.endorsement_required(s) is True


def test_only_center_admin_changes_settings(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    for role, member in (
        ("center_operator", None),
        ("auditor", None),
        ("unit_admin", unit),
        ("unit_lead", unit),
    ):
        headers = factory.login(client, factory.user(role, member))
        assert (
            client.put(f"{API}/settings", json={"endorsement_required": True}, headers=headers).status_code
            == 403
        )
    assert client.get(f"{API}/settings").status_code == 401


def test_settings_bad_input(client: TestClient, factory: Factory) -> None:
    admin = factory.login(client, factory.user("center_admin"))
    r = client.put(f"{API}/settings", json={"approval_by_fax": True}, headers=admin)
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "approval_by_fax"
    r = client.put(f"{API}/settings", json={"endorsement_required": "yes"}, headers=admin)
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "endorsement_required"
    r = client.put(f"{API}/settings", json={"unmatched_alert_mail": "hourly"}, headers=admin)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["fields"][0] == {
        "field": "unmatched_alert_mail",
        "rule": "one_of",
        "message": "must be one of: each, digest, off",
    }
    assert "只能取以下值之一：each, digest, off" in error["message_zh"]
    r = client.put(f"{API}/settings", content=b"{", headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 400
    # Nothing of the refused puts was written.
    assert client.get(f"{API}/settings", headers=admin).json() == {
        "endorsement_required": False,
        "unmatched_alert_mail": "digest",
        "maintenance_notice_hours": 72,
    }


def test_initial_value_comes_from_settings(client: TestClient, factory: Factory, settings: Settings) -> None:
    settings.endorsement_required = True
    admin = factory.login(client, factory.user("center_admin"))
    assert client.get(f"{API}/settings", headers=admin).json() == {
        "endorsement_required": True,
        "unmatched_alert_mail": "digest",
        "maintenance_notice_hours": 72,
    }


def test_service_functions(settings: Settings) -> None:
    who = Who.system("test")
    with db.transaction() as s:
        assert service.get_setting(s, "endorsement_required") is False
        assert service.get_setting(s, "endorsement_required", "fallback") == "fallback"
        assert service.get_setting(s, "no_such_key", 7) == 7
        with pytest.raises(errors.InvalidField):
            service.get_setting(s, "no_such_key")
        with pytest.raises(errors.InvalidField) as bad_key:
            service.set_setting(s, who, "no_such_key", True)
        assert bad_key.value.extra["fields"][0]["rule"] == "unknown_setting"
        with pytest.raises(errors.InvalidField) as bad_type:
            service.set_setting(s, who, "endorsement_required", 1)
        assert bad_type.value.extra["fields"][0]["rule"] == "type"
        assert service.set_setting(s, who, "endorsement_required", True) is True
        assert service.get_setting(s, "endorsement_required", False) is True
