"""Listing and reading VMs through the HTTP API: unit scoping, filters, paging, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from tests.factories import Factory
from vmportal.kit import db
from vmportal.unit.models import Unit
from vmportal.vm.models import VM

API = "/api/v1"


def set_vm(vm_id: int | None, **fields: Any) -> None:
    with db.transaction() as s:
        vm = s.get(VM, vm_id)
        assert vm is not None
        for key, value in fields.items():
            setattr(vm, key, value)
        s.add(vm)


def ids(answer: Any) -> list[int]:
    return [v["id"] for v in answer.json()["items"]]


@contextmanager
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engine = db.engine()
    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


@pytest.fixture
def two_units(client: TestClient, factory: Factory) -> tuple[Unit, Unit, list[VM], list[VM]]:
    a, b = factory.unit(), factory.unit()
    vms_a = [factory.vm(a, name=f"cs-web-{i:02d}") for i in range(3)]
    vms_b = [factory.vm(b, name=f"me-lab-{i:02d}", power_state="stopped") for i in range(2)]
    return a, b, vms_a, vms_b


def test_unit_users_see_only_their_units_vms(
    client: TestClient, factory: Factory, two_units: tuple[Unit, Unit, list[VM], list[VM]]
) -> None:
    a, b, vms_a, vms_b = two_units
    for role in ("unit_admin", "unit_lead"):
        headers = factory.login(client, factory.user(role, a))
        r = client.get(f"{API}/vms", headers=headers)
        assert r.status_code == 200, r.text
        assert ids(r) == [v.id for v in vms_a]
        assert r.json()["total"] == 3
        # Asking for another unit by id yields nothing, not their VMs.
        assert client.get(f"{API}/vms", params={"unit_id": b.id}, headers=headers).json()["items"] == []
        for vm in vms_b:
            r = client.get(f"{API}/vms/{vm.id}", headers=headers)
            assert r.status_code == 404
            assert r.json()["error"]["code"] == "not_found"
            assert client.get(f"{API}/vms/{vm.id}/operations", headers=headers).status_code == 404
        assert client.get(f"{API}/vms/{vms_a[0].id}", headers=headers).status_code == 200


@pytest.mark.parametrize("role", ["center_admin", "center_operator", "auditor"])
def test_center_and_auditor_see_every_vm(
    client: TestClient, factory: Factory, two_units: tuple[Unit, Unit, list[VM], list[VM]], role: str
) -> None:
    _a, b, vms_a, vms_b = two_units
    headers = factory.login(client, factory.user(role))
    r = client.get(f"{API}/vms", headers=headers)
    assert ids(r) == [v.id for v in vms_a + vms_b]
    assert client.get(f"{API}/vms", params={"unit_id": b.id}, headers=headers).json()["total"] == 2
    got = client.get(f"{API}/vms/{vms_b[0].id}", headers=headers).json()
    assert got["unit_id"] == b.id
    assert got["unit_code"] == b.code
    assert got["unit_name"] == b.name_zh
    assert got["name"] == "me-lab-00"
    assert got["power_state"] == "stopped"
    assert got["security_state"] == "normal"
    assert got["lifecycle"] == "active"
    assert got["links"] == {
        "self": f"{API}/vms/{vms_b[0].id}",
        "vm": None,
        "operations": f"{API}/vms/{vms_b[0].id}/operations",
    }


def test_filters(
    client: TestClient, factory: Factory, two_units: tuple[Unit, Unit, list[VM], list[VM]]
) -> None:
    a, _b, vms_a, vms_b = two_units
    set_vm(vms_a[1].id, security_state="suspended", ip_address="10.99.1.7")
    set_vm(vms_a[2].id, lifecycle="decommissioned")
    headers = factory.login(client, factory.user("center_operator"))

    def listed(**params: Any) -> list[int]:
        r = client.get(f"{API}/vms", params=params, headers=headers)
        assert r.status_code == 200, r.text
        return ids(r)

    assert listed() == [vms_a[0].id, vms_a[1].id, vms_b[0].id, vms_b[1].id]  # lifecycle defaults to active
    assert listed(lifecycle="decommissioned") == [vms_a[2].id]
    assert listed(lifecycle="all") == [v.id for v in vms_a + vms_b]
    assert listed(power_state="stopped") == [v.id for v in vms_b]
    assert listed(power_state="running", unit_id=a.id) == [vms_a[0].id, vms_a[1].id]
    assert listed(security_state="suspended") == [vms_a[1].id]
    assert listed(q="ME-LAB") == [v.id for v in vms_b]  # name, case-insensitive
    assert listed(q="lab-01") == [vms_b[1].id]
    assert listed(q="10.99.1.") == [vms_a[1].id]  # address
    assert listed(q="%") == []  # wildcards are literal
    assert listed(q="_") == []
    assert listed(sort="-name") == [vms_b[1].id, vms_b[0].id, vms_a[1].id, vms_a[0].id]


def test_paging_is_stable_and_counts(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    vms = [factory.vm(unit, name=f"node-{i:02d}") for i in range(7)]
    headers = factory.login(client, factory.user("unit_admin", unit))
    pages = []
    for offset in (0, 3, 6):
        r = client.get(f"{API}/vms", params={"limit": 3, "offset": offset}, headers=headers)
        body = r.json()
        assert (body["total"], body["limit"], body["offset"]) == (7, 3, offset)
        pages.append(ids(r))
    assert pages == [[v.id for v in vms[:3]], [v.id for v in vms[3:6]], [vms[6].id]]
    past_the_end = client.get(f"{API}/vms", params={"limit": 3, "offset": 30}, headers=headers).json()
    assert past_the_end["items"] == [] and past_the_end["total"] == 7
    by_name_desc = client.get(f"{API}/vms", params={"sort": "-name", "limit": 2}, headers=headers)
    assert ids(by_name_desc) == [vms[6].id, vms[5].id]


def test_listing_is_one_query(client: TestClient, factory: Factory) -> None:
    unit = factory.unit()
    for i in range(25):
        factory.vm(unit, name=f"bulk-{i:02d}")
    headers = factory.login(client, factory.user("unit_admin", unit))
    reader = client.app.state.vm_reader  # type: ignore[attr-defined]
    before = reader.statements if reader else 0
    with statements() as seen:
        r = client.get(f"{API}/vms", params={"limit": 20}, headers=headers)
    assert r.status_code == 200
    assert len(r.json()["items"]) == 20 and r.json()["total"] == 25
    vm_queries = [s for s in seen if "FROM vm" in s]
    if reader is not None:  # PostgreSQL: the SQL read path answers, token check included
        assert reader.statements - before == 1 and seen == []
    else:
        assert len(vm_queries) == 1, vm_queries


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"power_state": "exploded"}, "power_state"),
        ({"security_state": "hacked"}, "security_state"),
        ({"lifecycle": "zombie"}, "lifecycle"),
        ({"sort": "password"}, "sort"),
        ({"q": "x" * 101}, "q"),
        ({"unit_id": "abc"}, "unit_id"),
    ],
)
def test_bad_list_parameters_are_422_naming_the_field(
    client: TestClient, factory: Factory, params: dict[str, Any], field: str
) -> None:
    headers = factory.login(client, factory.user("auditor"))
    r = client.get(f"{API}/vms", params=params, headers=headers)
    assert r.status_code == 422, r.text
    assert [f["field"] for f in r.json()["error"]["fields"]] == [field]


def test_unknown_vm_and_operation_are_404(client: TestClient, factory: Factory) -> None:
    headers = factory.login(client, factory.user("center_admin"))
    assert client.get(f"{API}/vms/424242", headers=headers).status_code == 404
    assert client.get(f"{API}/operations/424242", headers=headers).status_code == 404
    assert client.get(f"{API}/vms/abc", headers=headers).status_code == 422


def test_listing_needs_a_login(client: TestClient) -> None:
    assert client.get(f"{API}/vms").status_code == 401


def test_operation_of_another_unit_is_404(
    client: TestClient, factory: Factory, two_units: tuple[Unit, Unit, list[VM], list[VM]]
) -> None:
    a, b, vms_a, _ = two_units
    admin_a = factory.login(client, factory.user("unit_admin", a))
    r = client.post(f"{API}/vms/{vms_a[0].id}/power", json={"action": "reboot"}, headers=admin_a)
    assert r.status_code == 202
    op = r.json()["links"]["self"]
    assert client.get(op, headers=admin_a).json()["state"] == "succeeded"
    admin_b = factory.login(client, factory.user("unit_admin", b))
    assert client.get(op, headers=admin_b).status_code == 404
    lead_a = factory.login(client, factory.user("unit_lead", a))
    assert client.get(op, headers=lead_a).status_code == 200
