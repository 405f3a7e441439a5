"""IP pools through the HTTP API (issue 2, point 6): the center defines them, delivery takes
addresses from them, and the database refuses an address given twice."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select

from tests.factories import Factory
from vmportal.audit.models import AuditEntry
from vmportal.kit import db
from vmportal.network import service
from vmportal.network.models import IPAllocation, IPPool

API = "/api/v1"


@pytest.fixture
def heads(client: TestClient, factory: Factory) -> dict[str, dict[str, str]]:
    unit = factory.unit()
    return {
        "admin": factory.login(client, factory.user("center_admin")),
        "operator": factory.login(client, factory.user("center_operator")),
        "auditor": factory.login(client, factory.user("auditor")),
        "unit_admin": factory.login(client, factory.user("unit_admin", unit)),
    }


def _pool_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "name": "campus-servers",
        "cidr": "10.30.0.0/28",
        "gateway": "10.30.0.1",
        "dns": ["10.0.0.53", "10.0.1.53"],
        "excluded": ["10.30.0.2", "10.30.0.3-10.30.0.4"],
        "network": "VM Network",
    }
    return {**body, **overrides}


def _count(model: type[Any]) -> int:
    with db.transaction() as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


def test_center_admin_creates_a_pool_and_everyone_reads_its_counts(
    client: TestClient, factory: Factory, heads: dict[str, dict[str, str]]
) -> None:
    conn = factory.connection()
    r = client.post(f"{API}/pools", json=_pool_body(connection_id=conn.id), headers=heads["admin"])
    assert r.status_code == 201, r.text
    pool = r.json()
    # /28: 16 addresses, 14 hosts, minus the gateway and three exclusions
    assert pool["counts"] == {"size": 10, "used": 0, "free": 10}
    assert pool["prefix_length"] == 28
    assert pool["connection_id"] == conn.id

    for who in ("operator", "auditor", "unit_admin"):
        r = client.get(f"{API}/pools/{pool['id']}", headers=heads[who])
        assert r.status_code == 200, who
        assert r.json()["counts"]["size"] == 10
    listed = client.get(f"{API}/pools", headers=heads["operator"]).json()
    assert [p["name"] for p in listed] == ["campus-servers"]

    with db.transaction() as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "pool.create")).one()
        assert entry.after is not None and entry.after["cidr"] == "10.30.0.0/28"


def test_only_a_center_admin_changes_pools(client: TestClient, heads: dict[str, dict[str, str]]) -> None:
    for who in ("operator", "auditor", "unit_admin"):
        r = client.post(f"{API}/pools", json=_pool_body(), headers=heads[who])
        assert r.status_code == 403, who
    assert _count(IPPool) == 0


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"cidr": "10.30.0.5/28"}, "cidr", "cidr"),  # host bits set
        ({"cidr": "not-a-network"}, "cidr", "cidr"),
        ({"cidr": "10.0.0.0/8"}, "cidr", "max_size"),
        ({"gateway": "10.31.0.1"}, "gateway", "inside_cidr"),
        ({"gateway": "10.30.0.0"}, "gateway", "host_address"),
        ({"gateway": "ten"}, "gateway", "ip_address"),
        ({"dns": ["10.0.0.53", "nope"]}, "dns.1", "ip_address"),
        ({"excluded": ["10.30.0.2", "10.30.1.9"]}, "excluded.1", "inside_cidr"),
        ({"excluded": ["10.30.0.9-10.30.0.5"]}, "excluded.0", "range_order"),
        ({"connection_id": 999}, "connection_id", "exists"),
    ],
)
def test_a_wrong_pool_is_refused_naming_the_field(
    client: TestClient,
    heads: dict[str, dict[str, str]],
    overrides: dict[str, Any],
    field: str,
    rule: str,
) -> None:
    r = client.post(f"{API}/pools", json=_pool_body(**overrides), headers=heads["admin"])
    assert r.status_code == 422, r.text
    fields = r.json()["error"]["fields"]
    assert fields[0]["field"] == field
    assert fields[0]["rule"] == rule
    assert _count(IPPool) == 0


def test_schema_limits_and_duplicate_names(client: TestClient, heads: dict[str, dict[str, str]]) -> None:
    r = client.post(f"{API}/pools", json=_pool_body(name="x" * 101), headers=heads["admin"])
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "name"
    r = client.post(f"{API}/pools", json=_pool_body(colour="blue"), headers=heads["admin"])
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["field"] == "colour"
    assert client.post(f"{API}/pools", json=_pool_body(), headers=heads["admin"]).status_code == 201
    r = client.post(
        f"{API}/pools",
        json=_pool_body(cidr="10.40.0.0/24", gateway="10.40.0.1", excluded=[]),
        headers=heads["admin"],
    )
    assert r.status_code == 409
    assert r.json()["error"]["field"] == "name"


def test_addresses_skip_gateway_and_exclusions_and_recently_released_go_last(factory: Factory) -> None:
    pool = factory.pool(cidr="10.50.0.0/29")  # hosts .1–.6; gateway .1, excluded .1–.10
    with db.transaction() as s:
        p = s.get(IPPool, pool.id)
        assert p is not None
        p.excluded = ["10.50.0.3"]
        s.add(p)
    with db.transaction() as s:
        p = s.get(IPPool, pool.id)
        assert p is not None
        got = [service.allocate(s, p, request_id=None).address for _ in range(4)]
    assert got == ["10.50.0.2", "10.50.0.4", "10.50.0.5", "10.50.0.6"]

    with db.transaction() as s:
        p = s.get(IPPool, pool.id)
        assert p is not None
        with pytest.raises(service.PoolExhausted):
            service.allocate(s, p, request_id=None)
        # Release .5 first, then .2: the one released longest ago comes back first.
        for address, ago in (("10.50.0.5", 2), ("10.50.0.2", 1)):
            row = s.exec(select(IPAllocation).where(IPAllocation.address == address)).one()
            row.released_at = db.utcnow() - timedelta(hours=ago)
            s.add(row)
    with db.transaction() as s:
        p = s.get(IPPool, pool.id)
        assert p is not None
        assert service.allocate(s, p, request_id=None).address == "10.50.0.5"
        assert service.allocate(s, p, request_id=None).address == "10.50.0.2"


def test_the_database_refuses_a_second_live_allocation_of_an_address(factory: Factory) -> None:
    pool = factory.pool()
    with db.transaction() as s:
        s.add(IPAllocation(pool_id=pool.id or 0, address="10.20.0.50"))
    with pytest.raises(IntegrityError), db.transaction() as s:
        s.add(IPAllocation(pool_id=pool.id or 0, address="10.20.0.50"))
        s.flush()
    # Once released, the address may be given again: the index covers live rows only.
    with db.transaction() as s:
        row = s.exec(select(IPAllocation).where(IPAllocation.address == "10.20.0.50")).one()
        row.released_at = db.utcnow()
        s.add(row)
    with db.transaction() as s:
        s.add(IPAllocation(pool_id=pool.id or 0, address="10.20.0.50"))
    with db.transaction() as s:
        assert s.exec(select(func.count()).select_from(IPAllocation)).one() == 2


def test_allocation_survives_a_concurrent_winner(factory: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL two allocators may pick the same free address: the loser's insert hits the
    unique index inside a savepoint, and it takes the next candidate in the same transaction."""
    pool = factory.pool(cidr="10.60.0.0/24")
    with db.transaction() as other:  # the winner, committed between our read and our insert
        other.add(IPAllocation(pool_id=pool.id or 0, address="10.60.0.11"))
    taken, spare = int(ipaddress.ip_address("10.60.0.11")), int(ipaddress.ip_address("10.60.0.12"))
    monkeypatch.setattr(service, "_candidates", lambda *_: iter([taken, spare]))
    with db.transaction() as s:
        p = s.get(IPPool, pool.id)
        assert p is not None
        row = service.allocate(s, p, request_id=None)
        assert row.address == "10.60.0.12"
    with db.transaction() as s:
        live = s.exec(select(IPAllocation.address).where(col(IPAllocation.released_at).is_(None))).all()
        assert sorted(live) == ["10.60.0.11", "10.60.0.12"]


def test_delete_and_cidr_change_wait_for_live_addresses(
    client: TestClient, factory: Factory, heads: dict[str, dict[str, str]]
) -> None:
    pool = client.post(f"{API}/pools", json=_pool_body(), headers=heads["admin"]).json()
    vm = factory.vm(factory.unit())
    with db.transaction() as s:
        p = s.get(IPPool, pool["id"])
        assert p is not None
        allocation = service.allocate(s, p, request_id=None, vm_id=vm.id)
        assert allocation.address == "10.30.0.5"

    r = client.get(f"{API}/pools/{pool['id']}", headers=heads["admin"])
    assert r.json()["counts"] == {"size": 10, "used": 1, "free": 9}
    r = client.delete(f"{API}/pools/{pool['id']}", headers=heads["admin"])
    assert r.status_code == 409
    assert r.json()["error"]["live_allocations"] == 1
    r = client.patch(
        f"{API}/pools/{pool['id']}",
        json={"cidr": "10.30.1.0/28", "gateway": "10.30.1.1", "excluded": []},
        headers=heads["admin"],
    )
    assert r.status_code == 409
    assert r.json()["error"]["field"] == "cidr"
    r = client.patch(f"{API}/pools/{pool['id']}", json={"gateway": "10.30.0.5"}, headers=heads["admin"])
    assert r.status_code == 409
    assert r.json()["error"]["field"] == "gateway"
    r = client.patch(f"{API}/pools/{pool['id']}", json={"dns": ["10.0.0.54"]}, headers=heads["admin"])
    assert r.status_code == 200
    assert r.json()["dns"] == ["10.0.0.54"]

    # Decommission gives the address back (the VM team calls this).
    with db.transaction() as s:
        assert service.release_for_vm(s, vm.id or 0) == 1
        assert service.release_for_vm(s, vm.id or 0) == 0
    r = client.get(f"{API}/pools/{pool['id']}/allocations?released=true", headers=heads["auditor"])
    assert [a["address"] for a in r.json()] == ["10.30.0.5"]
    assert r.json()[0]["released_at"] is not None
    r = client.delete(f"{API}/pools/{pool['id']}", headers=heads["operator"])
    assert r.status_code == 403
    r = client.delete(f"{API}/pools/{pool['id']}", headers=heads["admin"])
    assert r.status_code == 204
    assert client.get(f"{API}/pools/{pool['id']}", headers=heads["admin"]).status_code == 404
    assert _count(IPAllocation) == 0


def test_default_pool_is_the_lowest_bound_to_the_connection(factory: Factory) -> None:
    conn = factory.connection()
    first, second = factory.pool(cidr="10.70.0.0/24"), factory.pool(cidr="10.71.0.0/24")
    with db.transaction() as s:
        pool = service.default_pool(s, conn.id or 0)
        assert pool is not None and pool.id == first.id != second.id
        assert service.default_pool(s, 9999) is None
        assert [p.id for p in service.list_pools(s, conn.id)] == [first.id, second.id]
