"""Alert sources: the center_admin registers them, their credentials are shown once and kept encrypted,
and every change is audited."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import select

from tests.factories import Factory
from tests.security.helpers import center_admin, post, register, suricata_c2
from vmportal.audit.models import AuditEntry
from vmportal.kit import db


def test_credentials_are_shown_once_and_encrypted_at_rest(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    r = client.post(
        "/api/v1/alert-sources",
        json={
            "name": "campus-ids",
            "kind": "suricata",
            "auth": "both",
            "allowed_cidrs": ["10.0.5.7", "2001:db8::/48"],
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    created = r.json()
    assert created["secret"].startswith("whsec_") and len(created["token"]) >= 40
    assert created["allowed_cidrs"] == ["10.0.5.7/32", "2001:db8::/48"]
    assert created["endpoint"] == "/api/v1/alerts/campus-ids" and created["auth"] == "both"

    shown = client.get(f"/api/v1/alert-sources/{created['id']}", headers=h).json()
    assert "secret" not in shown and "token" not in shown
    assert shown["has_secret"] and shown["has_token"]
    listed = client.get("/api/v1/alert-sources", headers=h).text
    assert created["secret"] not in listed and created["token"] not in listed

    raw = b"".join(p.read_bytes() for p in Path(factory.settings.data_dir).glob("vmportal.sqlite3*"))
    assert created["secret"].encode() not in raw and created["token"].encode() not in raw
    with db.transaction() as s:
        audit = s.exec(select(AuditEntry).where(AuditEntry.action == "security.alert_source.create")).one()
        assert audit.after is not None and audit.after["auth"] == "both"
        assert created["secret"] not in str(audit.after) and created["token"] not in str(audit.after)


def test_rotation_replaces_the_credentials(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata", auth="hmac")
    r = client.post(f"/api/v1/alert-sources/{source['id']}/rotate", json={}, headers=h)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    rotated = r.json()
    assert rotated["secret"] != source["secret"] and rotated["credentials_rotated_at"]
    assert post(client, source, suricata_c2(vm.ip_address)).status_code == 401  # the old secret
    assert post(client, rotated, suricata_c2(vm.ip_address)).status_code == 202
    to_token = client.post(f"/api/v1/alert-sources/{source['id']}/rotate", json={"auth": "bearer"}, headers=h)
    assert to_token.json()["secret"] is None and to_token.json()["token"]


def test_who_may_manage_sources_and_bad_input(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    operator = factory.login(client, factory.user("center_operator"))
    auditor = factory.login(client, factory.user("auditor"))
    unit_admin = factory.login(client, factory.user("unit_admin", factory.unit()))
    body = {"name": "wazuh-main", "kind": "wazuh"}
    assert client.post("/api/v1/alert-sources", json=body, headers=operator).status_code == 403
    assert client.get("/api/v1/alert-sources", headers=unit_admin).status_code == 403
    assert client.get("/api/v1/alert-sources", headers=auditor).status_code == 200
    created = client.post("/api/v1/alert-sources", json=body, headers=h)
    assert created.status_code == 201 and created.json()["auth"] == "bearer"
    duplicate = client.post("/api/v1/alert-sources", json=body, headers=h)
    assert duplicate.status_code == 409 and duplicate.json()["error"]["field"] == "name"

    def field_of(payload: dict[str, object]) -> str:
        r = client.post("/api/v1/alert-sources", json=payload, headers=h)
        assert r.status_code == 422, r.text
        return str(r.json()["error"]["fields"][0]["field"])

    assert field_of({"name": "Bad Name!", "kind": "wazuh"}) == "name"
    assert field_of({"name": "x", "kind": "snort"}) == "kind"
    assert field_of({"name": "x", "kind": "zeek", "allowed_cidrs": ["10.0.0.0/33"]}) == "allowed_cidrs[0]"
    assert field_of({"name": "x", "kind": "zeek", "secret": "mine"}) == "secret"

    am = client.post("/api/v1/alert-sources", json={"name": "prom", "kind": "alertmanager"}, headers=h).json()
    assert am["auth"] == "bearer" and am["secret"] is None

    patched = client.patch(
        f"/api/v1/alert-sources/{am['id']}",
        json={"description": "Prometheus on the NOC", "kind": "generic"},
        headers=h,
    )
    assert patched.status_code == 200 and patched.json()["kind"] == "generic"
    assert (
        client.patch(f"/api/v1/alert-sources/{am['id']}", json={"token": "x"}, headers=h).status_code == 422
    )


def test_a_source_with_records_is_deactivated_not_deleted(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    used = register(client, h, "suricata")
    unused = register(client, h, "zeek")
    post(client, used, suricata_c2(vm.ip_address))
    refused = client.delete(f"/api/v1/alert-sources/{used['id']}", headers=h)
    assert refused.status_code == 409 and "deactivate" in refused.json()["error"]["message"]
    assert client.delete(f"/api/v1/alert-sources/{unused['id']}", headers=h).status_code == 204
    assert client.get(f"/api/v1/alert-sources/{unused['id']}", headers=h).status_code == 404
