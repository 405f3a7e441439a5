"""The center's "protected" mark (never contained automatically) is part of the VM as the API shows
it: the list and the VM's own answer, on SQLite (the ORM) and PostgreSQL (the document the database
keeps, migration 0013), set and cleared through the security API with a reason."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.factories import Factory


def test_the_protected_mark_shows_on_the_vm(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    vm = factory.vm(unit)
    admin = factory.login(client, factory.user("center_admin"))
    unit_admin = factory.login(client, factory.user("unit_admin", unit))
    assert client.get(f"/api/v1/vms/{vm.id}", headers=admin).json()["protected"] is False

    r = client.put(
        f"/api/v1/security/protected-vms/{vm.id}",
        json={"protected": True, "reason": "学校统一身份认证的 CAS 服务器"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert client.get(f"/api/v1/vms/{vm.id}", headers=admin).json()["protected"] is True
    [row] = [v for v in client.get("/api/v1/vms", headers=unit_admin).json()["items"] if v["id"] == vm.id]
    assert row["protected"] is True  # the unit reads it too: its VM is handled by a human

    client.put(
        f"/api/v1/security/protected-vms/{vm.id}", json={"protected": False, "reason": "迁出"}, headers=admin
    )
    assert client.get(f"/api/v1/vms/{vm.id}", headers=unit_admin).json()["protected"] is False
