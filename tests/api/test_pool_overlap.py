"""No address handed out twice (issue 11, point 4): pools may not overlap, wherever they are bound
(422 on ``cidr`` naming the other pool), two overlapping pools created at the same moment cannot
both succeed, and the database refuses a second live allocation of an address in any pool, on
SQLite and on PostgreSQL, with real concurrent sessions. Migration 0014 refuses a database that
already holds an address twice, saying which allocations to resolve."""

from __future__ import annotations

import ipaddress
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from tests.api.test_requests import API, Portal, make_portal
from tests.factories import Factory
from tests.production.harness import PG_BASE, create_database, drop_database, unique_name
from vmportal.app import migrate
from vmportal.audit.service import Who
from vmportal.kit import db, errors
from vmportal.network import repository, service
from vmportal.network.models import IPAllocation, IPPool
from vmportal.request.models import VMRequest

ON_POSTGRES = os.environ.get("VMPORTAL_TEST_DB", "sqlite") == "postgres"
WHO = Who.system("test")
LATIN = re.compile(r"[A-Za-z]{3,}")


@pytest.fixture
def admin(client: TestClient, factory: Factory) -> dict[str, str]:
    return factory.login(client, factory.user("center_admin"))


def _body(name: str, cidr: str, **overrides: Any) -> dict[str, Any]:
    net = ipaddress.ip_network(cidr)
    return {"name": name, "cidr": cidr, "gateway": str(net.network_address + 1), **overrides}


def _create(client: TestClient, h: dict[str, str], name: str, cidr: str, **overrides: Any) -> httpx.Response:
    return client.post(f"{API}/pools", json=_body(name, cidr, **overrides), headers=h)


def _pool_count() -> int:
    with db.transaction() as s:
        return int(s.exec(select(func.count()).select_from(IPPool)).one())


def _live() -> list[str]:
    with db.transaction() as s:
        return list(s.exec(select(IPAllocation.address).where(col(IPAllocation.released_at).is_(None))).all())


def _assert_overlap_refusal(r: httpx.Response, other: dict[str, Any]) -> None:
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    [field] = error["fields"]
    assert (field["field"], field["rule"]) == ("cidr", "no_overlap")
    assert (
        field["other_pool"]
        == error["other_pool"]
        == {
            "id": other["id"],
            "name": other["name"],
            "cidr": other["cidr"],
        }
    )
    # Both messages name the other pool by id and name; the Chinese one is Chinese apart from them.
    for message in (error["message"], error["message_zh"]):
        assert str(other["id"]) in message and other["name"] in message
    assert error["message_zh"].startswith("地址段：")
    assert not LATIN.findall(error["message_zh"].replace(other["name"], "")), error["message_zh"]


# ---- the rule at the API ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cidr", "bound"),
    [
        ("10.99.0.0/24", "same"),  # the case: the same CIDR twice
        ("10.99.0.128/25", "same"),  # inside the other
        ("10.99.0.0/16", "same"),  # around the other
        ("10.99.0.0/24", "other network"),  # another port group of the same connection
        ("10.99.0.0/24", "unbound"),  # bound to no connection (serves requests on any)
    ],
)
def test_an_overlapping_pool_is_refused_naming_the_other_pool(
    client: TestClient, factory: Factory, admin: dict[str, str], cidr: str, bound: str
) -> None:
    conn = factory.connection()
    first = _create(client, admin, "campus-a", "10.99.0.0/24", connection_id=conn.id, network="VM Network")
    assert first.status_code == 201, first.text
    where: dict[str, Any] = {
        "same": {"connection_id": conn.id, "network": "VM Network"},
        "other network": {"connection_id": conn.id, "network": "DMZ"},
        "unbound": {},
    }[bound]
    r = _create(client, admin, "campus-b", cidr, **where)
    _assert_overlap_refusal(r, first.json())
    assert _pool_count() == 1


def test_neighbouring_and_other_family_pools_are_accepted(client: TestClient, admin: dict[str, str]) -> None:
    for name, cidr in (
        ("a", "10.99.0.0/25"),
        ("b", "10.99.0.128/25"),  # adjacent, not overlapping
        ("c", "10.99.1.0/24"),
        ("d", "2001:db8:99::/120"),  # IPv6 never overlaps IPv4
    ):
        r = _create(client, admin, name, cidr)
        assert r.status_code == 201, (name, r.text)
    r = _create(client, admin, "e", "2001:db8:99::80/121")
    assert r.status_code == 422
    assert r.json()["error"]["other_pool"]["name"] == "d"


def test_changing_a_cidr_onto_another_pool_is_refused(client: TestClient, admin: dict[str, str]) -> None:
    a = _create(client, admin, "campus-a", "10.99.0.0/24").json()
    b = _create(client, admin, "campus-b", "10.99.1.0/24").json()
    r = client.patch(
        f"{API}/pools/{b['id']}", json={"cidr": "10.99.0.0/23", "gateway": "10.99.0.1"}, headers=admin
    )
    _assert_overlap_refusal(r, a)
    assert client.get(f"{API}/pools/{b['id']}", headers=admin).json()["cidr"] == "10.99.1.0/24"
    # The pool's own network is no obstacle: narrowing it, or changing anything else, is fine.
    r = client.patch(f"{API}/pools/{b['id']}", json={"cidr": "10.99.1.0/25"}, headers=admin)
    assert r.status_code == 200, r.text
    r = client.patch(f"{API}/pools/{a['id']}", json={"name": "campus-servers"}, headers=admin)
    assert r.status_code == 200, r.text


def _post_at_once(
    client: TestClient, h: dict[str, str], bodies: list[dict[str, Any]]
) -> list[httpx.Response]:
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(len(bodies))

    def post(body: dict[str, Any]) -> None:
        barrier.wait()
        answers.append(client.post(f"{API}/pools", json=body, headers=h))

    threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_overlapping_pools_posted_at_once_give_one_pool(client: TestClient, admin: dict[str, str]) -> None:
    bodies = [_body(f"race-{i}", "10.99.0.0/24" if i % 2 else "10.99.0.0/23") for i in range(6)]
    answers = _post_at_once(client, admin, bodies)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 422, 422, 422, 422, 422], [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 201).json()
    for refused in (a for a in answers if a.status_code == 422):
        assert refused.json()["error"]["other_pool"]["id"] == winner["id"]
    assert _pool_count() == 1


@pytest.fixture
def waiting_for_lock(settings: object, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], bool]:
    """Whether the thread of this name waits for the writers' lock. PostgreSQL: a session waits
    for the ``ip_pool`` table lock (``pg_locks``). SQLite: the thread is inside ``lock_pools``,
    made here to begin the transaction (``BEGIN IMMEDIATE``, which returns once the database's
    write lock is free); a thread inside it cannot pass before the holder of the lock commits."""
    inside: set[str] = set()
    original = repository.lock_pools

    def lock_pools(session: Session) -> None:
        me = threading.current_thread().name
        inside.add(me)
        try:
            original(session)
            session.execute(sa.text("SELECT 1"))  # SQLite: the write lock is taken here
        finally:
            inside.discard(me)

    monkeypatch.setattr(repository, "lock_pools", lock_pools)

    def waiting(name: str) -> bool:
        if not ON_POSTGRES:
            return name in inside
        with db.engine().connect() as conn:
            query = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'ip_pool'::regclass"
            return int(conn.execute(sa.text(query)).scalar_one()) > 0

    return waiting


def test_the_overlap_check_and_the_insert_are_one_step(
    waiting_for_lock: Callable[[str], bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sessions each create an overlapping pool; each waits, just before its overlap check,
    until the other has reached the same point or waits for the writers' lock. Without the lock
    both would check a table without the other's pool and both insert; with it the second checks
    after the first committed, and is refused."""
    original = service._check_overlap
    arrived = {name: threading.Event() for name in ("a", "b")}

    def rendezvous(session: Session, cidr: str, pool_id: int | None = None) -> None:
        me = threading.current_thread().name
        other = "b" if me == "a" else "a"
        arrived[me].set()
        deadline = time.monotonic() + 60
        while not arrived[other].is_set() and not waiting_for_lock(other):
            assert time.monotonic() < deadline, "the other session neither arrived nor waited for the lock"
            time.sleep(0.01)
        original(session, cidr, pool_id)

    monkeypatch.setattr(service, "_check_overlap", rendezvous)
    outcome: dict[str, str] = {}

    def create(name: str, cidr: str) -> None:
        try:
            with db.transaction() as s:
                service.create_pool(s, WHO, name=name, cidr=cidr, gateway="10.99.0.1", dns=[], excluded=[])
            outcome[name] = "created"
        except errors.InvalidField as exc:
            outcome[name] = exc.extra["fields"][0]["rule"]

    threads = [
        threading.Thread(target=create, name="a", args=("a", "10.99.0.0/24")),
        threading.Thread(target=create, name="b", args=("b", "10.99.0.0/23")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcome.values()) == ["created", "no_overlap"], outcome
    assert _pool_count() == 1


# ---- the database's own guard -----------------------------------------------------------------------
# Pools made by the factory bypass the service's check: they stand for pools that overlapped before
# the rule (a database from an older release).


def test_the_database_refuses_one_address_live_in_two_pools(factory: Factory) -> None:
    a, b = factory.pool(cidr="10.99.0.0/24"), factory.pool(cidr="10.99.0.0/24")
    with db.transaction() as s:
        s.add(IPAllocation(pool_id=a.id or 0, address="10.99.0.2"))
    with pytest.raises(IntegrityError), db.transaction() as s:
        s.add(IPAllocation(pool_id=b.id or 0, address="10.99.0.2"))
        s.flush()
    with db.transaction() as s:
        row = s.exec(select(IPAllocation).where(IPAllocation.address == "10.99.0.2")).one()
        row.released_at = db.utcnow()
        s.add(row)
    with db.transaction() as s:  # released in one pool, the address may be live in the other
        s.add(IPAllocation(pool_id=b.id or 0, address="10.99.0.2"))
    assert _live() == ["10.99.0.2"]


def test_overlapping_pools_of_an_older_database_never_give_one_address_twice(portal: Portal) -> None:
    """The issue's case end to end: two pools with the same CIDR, one request on each; the two
    VMs get different addresses."""
    pools = [portal.factory.pool(cidr="10.99.0.0/24", name=f"same-{i}") for i in range(2)]
    addresses = []
    for i, pool in enumerate(pools):
        req = portal.submitted(hostname=f"twin-{i}", pool_id=pool.id)
        assert portal.act("operator", req["id"], "approve").status_code == 200
        done = portal.get("admin", f"/requests/{req['id']}").json()
        assert done["state"] == "delivered", done
        addresses.append(portal.get("admin", f"/vms/{done['vm_id']}").json()["ip_address"])
    assert addresses == ["10.99.0.11", "10.99.0.12"]  # .1–.10 are excluded in the factory's pools
    assert sorted(_live()) == addresses


def _allocate_at_once(pools: list[IPPool], per_thread: int) -> tuple[list[str], list[str]]:
    """One thread per pool, each in its own sessions, allocating ``per_thread`` addresses one
    transaction at a time."""
    got: list[str] = []
    failures: list[str] = []
    barrier = threading.Barrier(len(pools))

    def work(pool_id: int) -> None:
        barrier.wait()
        for _ in range(per_thread):
            try:
                with db.transaction() as s:
                    pool = s.get(IPPool, pool_id)
                    assert pool is not None
                    got.append(service.allocate(s, pool, request_id=None).address)
            except Exception as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=work, args=(p.id,)) for p in pools]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got, failures


@pytest.fixture
def all_read_first(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    """On PostgreSQL, make ``n`` allocators read their candidates before any of them inserts, so
    they all pick the same first address and race on the unique index. (On SQLite a writer holds
    the write lock from its first read: the others cannot read meanwhile, there is no race.)"""
    original = service._candidates
    state: dict[str, threading.Barrier | None] = {"barrier": None}

    def candidates(session: Session, pool: IPPool, layout: service.Layout) -> Iterator[int]:
        values = list(original(session, pool, layout))
        barrier = state["barrier"]
        if barrier is not None:
            barrier.wait(timeout=60)  # the first round only: later rounds go alone
            state["barrier"] = None
        return iter(values)

    def arm(n: int) -> None:
        if ON_POSTGRES:
            state["barrier"] = threading.Barrier(n)

    monkeypatch.setattr(service, "_candidates", candidates)
    yield arm


def test_concurrent_allocators_on_overlapping_pools_take_different_addresses(
    factory: Factory, all_read_first: Callable[[int], None]
) -> None:
    pools = [factory.pool(cidr="10.99.0.0/24", name=f"twin-{i}") for i in range(4)]
    all_read_first(len(pools))
    got, failures = _allocate_at_once(pools, per_thread=5)
    assert failures == []
    assert len(got) == 20 and len(set(got)) == 20, got
    assert sorted(_live()) == sorted(got)


def test_concurrent_allocators_on_one_pool_take_different_addresses(
    factory: Factory, all_read_first: Callable[[int], None]
) -> None:
    pool = factory.pool(cidr="10.99.0.0/24")
    all_read_first(6)
    got, failures = _allocate_at_once([pool] * 6, per_thread=3)
    assert failures == []
    assert len(got) == 18 and len(set(got)) == 18, got


def test_an_allocator_that_keeps_losing_answers_409_and_provisioning_retries(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = portal.factory.pool(cidr="10.99.0.0/24")
    with db.transaction() as s:
        s.add(IPAllocation(pool_id=pool.id or 0, address="10.99.0.11"))
    taken = int(ipaddress.ip_address("10.99.0.11"))
    original = service._candidates
    # Every candidate it tries was taken under its feet (the read saw none of them live).
    monkeypatch.setattr(service, "_candidates", lambda *_: iter([taken] * service.MAX_ALLOCATION_RACES))
    with pytest.raises(service.AllocationContended) as caught, db.transaction() as s:
        p = s.get(IPPool, pool.id)
        assert p is not None
        service.allocate(s, p, request_id=None)
    error = caught.value
    assert (error.status, error.body()["code"], error.body()["pool_id"]) == (
        409,
        "allocation_contended",
        pool.id,
    )
    assert not LATIN.findall(error.message_zh.replace(pool.name, ""))

    # A delivery that meets it is tried again (a moment later) instead of failing.
    rounds: list[int] = []

    def contended_once(session: Session, p: IPPool, layout: service.Layout) -> Iterator[int]:
        rounds.append(1)
        if len(rounds) == 1:
            return iter([taken] * service.MAX_ALLOCATION_RACES)
        return original(session, p, layout)

    monkeypatch.setattr(service, "_candidates", contended_once)
    req = portal.submitted(pool_id=pool.id)
    assert portal.act("operator", req["id"], "approve").status_code == 200
    done = portal.get("admin", f"/requests/{req['id']}").json()
    assert done["state"] == "delivered", done
    assert len(rounds) == 2
    assert portal.get("admin", f"/vms/{done['vm_id']}").json()["ip_address"] == "10.99.0.12"
    with db.transaction() as s:
        assert s.get(VMRequest, req["id"]).provisioning_attempts == 1  # type: ignore[union-attr]


@pytest.fixture
def portal(client: TestClient, factory: Factory) -> Portal:
    return make_portal(client, factory, quota=(50, 200, 512, 10000))


# ---- migration 0014 on a database that already holds an address twice ---------------------------------


@pytest.fixture
def scratch_url(tmp_path: Path) -> Iterator[str]:
    if not ON_POSTGRES:
        yield f"sqlite:///{tmp_path}/m.sqlite3"
        return
    name = unique_name("vmportal_m0014")
    create_database(name)
    try:
        yield f"{PG_BASE}/{name}"
    finally:
        drop_database(name)


def test_migration_0014_refuses_addresses_held_twice_and_says_what_to_do(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, "0013")
    engine = sa.create_engine(scratch_url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        for name in ("old-a", "old-b"):
            conn.execute(
                sa.text(
                    "INSERT INTO ip_pool (name, cidr, gateway, dns, excluded, network, created_at) "
                    "VALUES (:name, '10.99.0.0/24', '10.99.0.1', '[]', '[]', '', CURRENT_TIMESTAMP)"
                ),
                {"name": name},
            )
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM ip_pool ORDER BY id"))]
        for pool_id, address in ((ids[0], "10.99.0.2"), (ids[1], "10.99.0.2"), (ids[1], "10.99.0.3")):
            conn.execute(
                sa.text(
                    "INSERT INTO ip_allocation (pool_id, address, allocated_at) "
                    "VALUES (:pool, :address, CURRENT_TIMESTAMP)"
                ),
                {"pool": pool_id, "address": address},
            )
    with pytest.raises(Exception, match="migration 0014 refused") as caught:
        migrate.upgrade(scratch_url)
    text = str(caught.value)
    assert (
        "10.99.0.2: allocation 1 (pool 1 'old-a'" in text
        and "10.99.0.2: allocation 2 (pool 2 'old-b'" in text
    )
    assert "10.99.0.3" not in text  # held once: not in question
    assert "迁移 0014 未执行" in text and "UPDATE ip_allocation SET released_at" in text
    with engine.connect() as conn:  # nothing changed: still at 0013, the old index in place
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0013"
    assert "uq_ip_allocation_live" in {i["name"] for i in sa.inspect(engine).get_indexes("ip_allocation")}

    # The center resolves it as the message says; the upgrade then goes through.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE ip_allocation SET released_at = CURRENT_TIMESTAMP WHERE id = 2"))
    migrate.upgrade(scratch_url)
    indexes = {i["name"] for i in sa.inspect(engine).get_indexes("ip_allocation")}
    assert "uq_ip_allocation_live_address" in indexes and "uq_ip_allocation_live" not in indexes
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ip_allocation (pool_id, address, allocated_at) VALUES (1, '10.99.0.3', CURRENT_TIMESTAMP)"
            )
        )
    command.downgrade(migrate.alembic_config(scratch_url), "0013")
    assert "uq_ip_allocation_live" in {i["name"] for i in sa.inspect(engine).get_indexes("ip_allocation")}
    engine.dispose()
