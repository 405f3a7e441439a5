""" "List VMs" and "get one VM" answer the same through the SQL read path as through the ORM.

On PostgreSQL (``VMPORTAL_TEST_DB=postgres``, which ``make test`` runs for tests/api) the API answers
these two from vmportal/vm/repository/sql.py, so there the comparisons below are SQL path against
ORM path; on SQLite only the ORM path exists (no stored documents), so there they check the routes
against the repository and the schema. Either way each answer here is
compared with the ORM's own answer (vmportal.vm.service + schemas), built in the test, over a data
set with the awkward values: NULLs, unregistered VMs, microseconds and none, wildcard characters in
names, Chinese names, every sort and filter, pages past the end, each role.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from hypervisors.base import PowerState
from policies.power import SecurityState
from policies.roles import Actor, Role
from tests.conftest import _use_postgres
from tests.factories import Factory
from vmportal.identity.models import AuthToken, User
from vmportal.identity.service import token_digest
from vmportal.kit import db
from vmportal.kit.settings import Settings
from vmportal.unit.models import Unit
from vmportal.vm import service
from vmportal.vm.api import vm_out
from vmportal.vm.models import VM
from vmportal.vm.schemas import LifecycleFilter, VMList, VMSort

API = "/api/v1"
T0 = datetime(2026, 11, 2, 8, 30, 0, tzinfo=UTC)


def orm_list(actor: Actor, filters: service.VMFilters) -> dict[str, Any]:
    with db.new_session() as session:
        rows, total = service.list_vms(session, actor, filters)
        page = VMList(
            items=[vm_out(r) for r in rows], total=total, limit=filters.limit, offset=filters.offset
        )
        return page.model_dump(mode="json")


def orm_get(actor: Actor, vm_id: int) -> dict[str, Any] | None:
    with db.new_session() as session:
        try:
            return vm_out(service.get_vm(session, actor, vm_id)).model_dump(mode="json")
        except Exception:
            return None


@pytest.fixture
def estate(client: TestClient, factory: Factory) -> dict[str, Any]:
    """Two units and unregistered VMs with every kind of value; one login per role."""
    a, b = factory.unit("CS"), factory.unit("LAW")
    conn = factory.connection()
    vms: list[VM] = []
    names = [
        "web-01",
        "web_02",
        "db%03",
        "数据库-04",
        "Web-05",
        "mail-06",
        "lab-07",
        "lab-08",
        "x\\9",
        "z-10",
    ]
    for i, name in enumerate(names):
        unit = (a, b, None)[i % 3]
        vms.append(
            VM(
                unit_id=unit.id if unit else None,
                registered=unit is not None,
                connection_id=conn.id,  # type: ignore[arg-type]
                hypervisor_ref=f"ref-{i}",
                name=name,
                hostname=name.lower() if i % 2 else "",
                template_name="debian-12" if i % 4 else "",
                vcpus=i + 1,
                memory_gib=2 * i,
                disk_gib=40 + i,
                ip_address=None if i % 5 == 4 else f"10.1.{i}.{200 - i}",
                ips=[f"10.1.{i}.{200 - i}", f"2001:db8::{i}"] if i % 2 else [],
                macs=[f"00:50:56:00:00:{i:02x}"],
                power_state=["running", "stopped", "suspended", "unknown"][i % 4],
                network_connected=i % 3 != 1,
                security_state=["normal", "suspended", "normal", "rectification_submitted"][i % 4],
                lifecycle=["active", "active", "decommissioned", "missing", "provisioning"][i % 5],
                created_at=T0 + timedelta(hours=i, microseconds=0 if i % 2 else 120_000 + i),
                synced_at=None if i % 3 == 0 else T0 + timedelta(days=1, microseconds=i),
                decommissioned_at=T0 + timedelta(days=2) if i % 5 == 2 else None,
                version=i,
            )
        )
    with db.transaction() as session:
        session.add_all(vms)
    logins = {
        "unit_admin": factory.login(client, factory.user("unit_admin", a)),
        "unit_lead": factory.login(client, factory.user("unit_lead", b)),
        "center_operator": factory.login(client, factory.user("center_operator")),
        "auditor": factory.login(client, factory.user("auditor")),
    }
    return {"units": (a, b), "vm_ids": [v.id for v in vms], "logins": logins}


def actor_for(headers: dict[str, str]) -> Actor:
    digest = token_digest(headers["Authorization"].split()[1])
    with db.new_session() as session:
        token = session.exec(select(AuthToken).where(AuthToken.token_sha256 == digest)).one()
        user = session.get(User, token.user_id)
        assert user is not None and user.id is not None
        return Actor(user_id=user.id, role=Role(user.role), unit_id=user.unit_id)


def _answered(client: TestClient) -> int:
    """How many answers the SQL read path has given (0 on SQLite, where there is none)."""
    reader = client.app.state.vm_reader  # type: ignore[attr-defined]
    return 0 if reader is None else int(reader.answered)


filters_strategy = st.builds(
    service.VMFilters,
    unit_id=st.sampled_from([None, "a", "b", 999]),
    power_state=st.none() | st.sampled_from(list(PowerState)),
    security_state=st.none() | st.sampled_from(list(SecurityState)),
    lifecycle=st.sampled_from(list(LifecycleFilter)),
    q=st.none() | st.sampled_from(["web", "WEB", "_", "%", "\\", "数据", "10.1.", " lab ", "2001:db8"]),
    sort=st.sampled_from(list(VMSort)),
    limit=st.sampled_from([1, 3, 50]),
    offset=st.sampled_from([0, 2, 9, 40]),
)


def _params(f: service.VMFilters) -> dict[str, Any]:
    out: dict[str, Any] = {
        "lifecycle": f.lifecycle.value,
        "sort": f.sort.value,
        "limit": f.limit,
        "offset": f.offset,
    }
    for name in ("unit_id", "power_state", "security_state", "q"):
        value = getattr(f, name)
        if value is not None:
            out[name] = getattr(value, "value", value)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(role=st.sampled_from(["unit_admin", "unit_lead", "center_operator", "auditor"]), f=filters_strategy)
def test_list_answers_like_the_orm(
    client: TestClient, estate: dict[str, Any], role: str, f: service.VMFilters
) -> None:
    a, b = estate["units"]
    if f.unit_id in ("a", "b"):
        f = service.VMFilters(**{**f.__dict__, "unit_id": (a if f.unit_id == "a" else b).id})
    headers = estate["logins"][role]
    before = _answered(client)
    r = client.get(f"{API}/vms", params=_params(f), headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    # on PostgreSQL the answer compared is the SQL path's own, not the ORM's fallback
    assert _answered(client) - before == (1 if _use_postgres() else 0)
    assert r.json() == orm_list(actor_for(headers), f)


@pytest.mark.parametrize("role", ["unit_admin", "unit_lead", "center_operator", "auditor"])
def test_get_answers_like_the_orm(client: TestClient, estate: dict[str, Any], role: str) -> None:
    headers = estate["logins"][role]
    actor = actor_for(headers)
    seen = 0
    for vm_id in [*estate["vm_ids"], 10**6]:
        r = client.get(f"{API}/vms/{vm_id}", headers=headers)
        expected = orm_get(actor, vm_id)
        if expected is None:  # missing, or another unit's: the same 404
            assert r.status_code == 404, r.text
            assert r.json()["error"]["code"] == "not_found"
        else:
            before = _answered(client)
            r = client.get(f"{API}/vms/{vm_id}", headers=headers)
            assert r.status_code == 200, r.text
            assert _answered(client) - before == (1 if _use_postgres() else 0)
            assert r.json() == expected
            seen += 1
    assert seen == (
        len(estate["vm_ids"]) if role in ("center_operator", "auditor") else 3 + (role == "unit_admin")
    )


def test_the_sql_path_answers_on_postgresql_only(client: TestClient, estate: dict[str, Any]) -> None:
    reader = client.app.state.vm_reader  # type: ignore[attr-defined]
    assert (reader is not None) == _use_postgres()
    headers = estate["logins"]["auditor"]
    before = reader.statements if reader else 0
    assert client.get(f"{API}/vms", headers=headers).status_code == 200
    assert client.get(f"{API}/vms/{estate['vm_ids'][0]}", headers=headers).status_code == 200
    if reader is not None:
        assert reader.statements - before == 2


@pytest.mark.parametrize("path", ["/vms", "/vms/1"])
def test_bad_tokens_get_the_orm_paths_401(client: TestClient, factory: Factory, path: str) -> None:
    """Missing, unknown, revoked and disabled: the same 401 bodies whichever path is in use."""
    user = factory.user("auditor")
    headers = factory.login(client, user)
    assert client.get(f"{API}{path}").status_code == 401
    bad = client.get(f"{API}{path}", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    assert bad.json()["error"]["message"] == "missing, expired or revoked token"
    with db.transaction() as session:
        row = session.get(User, user.id)
        assert row is not None
        row.active = False
    disabled = client.get(f"{API}{path}", headers=headers)
    assert disabled.status_code == 401 and disabled.json()["error"]["message"] == "account disabled"
    with db.transaction() as session:
        row = session.get(User, user.id)
        assert row is not None
        row.active = True
    assert client.get(f"{API}{path}", headers=headers).status_code in (200, 404)
    assert client.post(f"{API}/auth/logout", headers=headers).status_code in (200, 204)
    assert client.get(f"{API}{path}", headers=headers).status_code == 401


def test_documents_follow_every_change(client: TestClient, estate: dict[str, Any]) -> None:
    """A VM's power state, a unit's code and name: the next answer shows them (on PostgreSQL the
    stored documents are rewritten by the database's triggers)."""
    a, _b = estate["units"]
    headers = estate["logins"]["unit_admin"]
    vm_id = estate["vm_ids"][0]
    with db.transaction() as session:
        vm = session.get(VM, vm_id)
        unit = session.get(Unit, a.id)
        assert vm is not None and unit is not None
        vm.power_state, vm.version = "stopped", vm.version + 1
        unit.code, unit.name_zh = "CS2", "计算机与信息学院"
    got = client.get(f"{API}/vms/{vm_id}", headers=headers).json()
    assert (got["power_state"], got["unit_code"], got["unit_name"]) == ("stopped", "CS2", "计算机与信息学院")
    listed = client.get(f"{API}/vms", params={"lifecycle": "all"}, headers=headers).json()
    assert {item["unit_code"] for item in listed["items"]} == {"CS2"}
    assert listed == orm_list(actor_for(headers), service.VMFilters(lifecycle=LifecycleFilter.ALL))


def test_a_vm_without_its_document_is_still_answered(client: TestClient, estate: dict[str, Any]) -> None:
    """Only a restore that bypassed triggers leaves a VM without its stored document; the ORM then
    answers, so nothing is silently missing from a page."""
    headers = estate["logins"]["auditor"]
    vm_id = estate["vm_ids"][1]
    if _use_postgres():
        with db.engine().begin() as conn:
            conn.exec_driver_sql("ALTER TABLE vm DISABLE TRIGGER vm_api_json")
            conn.exec_driver_sql("UPDATE vm SET api_json = NULL WHERE id = %(id)s", {"id": vm_id})
            conn.exec_driver_sql("ALTER TABLE vm ENABLE TRIGGER vm_api_json")
    actor = actor_for(headers)
    f = service.VMFilters(lifecycle=LifecycleFilter.ALL)
    assert client.get(f"{API}/vms", params={"lifecycle": "all"}, headers=headers).json() == orm_list(actor, f)
    assert client.get(f"{API}/vms/{vm_id}", headers=headers).json() == orm_get(actor, vm_id)


def test_the_list_query_is_documented_in_openapi(client: TestClient) -> None:
    """The list validates its query itself (one pydantic pass); /docs still lists every parameter."""
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/vms"]["get"]
    params = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert set(params) == {
        "unit_id",
        "power_state",
        "security_state",
        "lifecycle",
        "q",
        "sort",
        "limit",
        "offset",
    }
    assert params["sort"]["schema"]["enum"] == [s.value for s in VMSort]
    assert params["limit"]["schema"]["maximum"] == 500
    assert "$ref" not in str(params)
    r = client.get(
        f"{API}/vms", params={"limit": 501, "sort": "password"}, headers={"Authorization": "Bearer x"}
    )
    assert r.status_code == 422
    assert {f["field"] for f in r.json()["error"]["fields"]} == {"limit", "sort"}


def test_both_reads_declare_the_bearer_token_in_openapi(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/vms", "/api/v1/vms/{vm_id}"):
        assert paths[path]["get"]["security"] == [{"HTTPBearer": []}]


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "bearer", "Token abc"])
def test_other_authorization_schemes_are_401(client: TestClient, header: str) -> None:
    for path in ("/vms", "/vms/1"):
        r = client.get(f"{API}{path}", headers={"Authorization": header})
        assert r.status_code == 401 and r.json()["error"]["message"] == "a bearer token is required"


def test_each_stored_document_is_the_schemas_vm_out(client: TestClient, estate: dict[str, Any]) -> None:
    """The public VM shape is stated once (vmportal.vm.schemas.VMOut / vm_out). On PostgreSQL the
    document the SQL path forwards (``vm.api_json``, migration 0004's trigger) must be exactly that
    shape, key for key and value for value, for every VM; on SQLite there is no SQL path and the
    column stays NULL (never written from Python)."""
    import json

    from vmportal.vm import schemas

    with db.new_session() as session:
        rows = session.exec(select(VM, Unit).outerjoin(Unit, Unit.id == VM.unit_id)).all()  # type: ignore[arg-type]
        assert len(rows) >= len(estate["vm_ids"])
        for vm, unit in rows:
            expected = schemas.vm_out(vm, unit.code if unit else None, unit.name_zh if unit else None)
            if _use_postgres():
                assert vm.api_json is not None
                assert json.loads(vm.api_json) == expected.model_dump(mode="json"), vm.id
                assert set(json.loads(vm.api_json)) == set(schemas.VMOut.model_fields)
            else:
                assert vm.api_json is None


def test_a_connection_the_database_dropped_is_replaced(client: TestClient, estate: dict[str, Any]) -> None:
    """The read path's connections killed by the server (a restart, an administrator's
    ``pg_terminate_backend``): the request that finds one dead is still answered (by the ORM path),
    and the next ones by the SQL path again on a new connection."""
    if not _use_postgres():
        pytest.skip("the SQL read path exists on PostgreSQL only")
    reader = client.app.state.vm_reader  # type: ignore[attr-defined]
    headers = estate["logins"]["unit_admin"]
    expected = orm_list(actor_for(headers), service.VMFilters())
    assert client.get(f"{API}/vms", headers=headers).json() == expected
    pids = [conn.info.backend_pid for conn in reader._pool._idle]
    assert pids
    with db.engine().begin() as conn:
        for pid in pids:
            conn.exec_driver_sql("SELECT pg_terminate_backend(%(pid)s, 5000)", {"pid": pid})
    for _ in range(len(pids) + 1):
        r = client.get(f"{API}/vms", headers=headers)
        assert r.status_code == 200 and r.json() == expected
    before = _answered(client)
    assert client.get(f"{API}/vms", headers=headers).json() == expected
    assert _answered(client) - before == 1


def test_requests_beyond_the_connections_wait_their_turn(settings: Settings) -> None:
    """More simultaneous reads than connections: each waits for one, none is lost, a request given
    up while waiting (its client gone) leaves nothing held, and no more than the set number of
    connections is ever open."""
    if not _use_postgres():
        pytest.skip("the SQL read path exists on PostgreSQL only")
    import asyncio

    from vmportal.vm.repository import sql as reads

    async def scenario() -> None:
        pool = reads._Connections(reads.conninfo(settings.sqlalchemy_url), 3, timeout=10)
        await pool.open()
        most = 0

        async def one(pause: float) -> int:
            nonlocal most
            conn = await pool.acquire()
            most = max(most, pool._count)
            try:
                cur = await conn.execute("SELECT pg_sleep(%(s)s), 1", {"s": pause})
                row = await cur.fetchone()
                assert row is not None
                return int(row[1])
            finally:
                pool.release(conn)

        results = await asyncio.gather(*(one(0.01) for _ in range(30)))
        assert results == [1] * 30
        waiting = [asyncio.ensure_future(one(0.2)) for _ in range(8)]
        await asyncio.sleep(0.05)
        for task in waiting[3:]:  # given up while waiting for a connection
            task.cancel()
        done = await asyncio.gather(*waiting, return_exceptions=True)
        assert done[:3] == [1, 1, 1]
        assert all(isinstance(x, asyncio.CancelledError) for x in done[3:])
        assert await asyncio.gather(*(one(0) for _ in range(10))) == [1] * 10
        assert most <= 3 and pool._count <= 3 and not pool._waiters
        await pool.close()

    asyncio.run(scenario())
