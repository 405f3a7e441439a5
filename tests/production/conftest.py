"""Fixtures of the production-path tests (issue 5): real PostgreSQL, a private Redis, ``celery worker`` and
``celery beat`` subprocesses, the API under uvicorn, and vcsim as the hypervisor.

* ``stack``: a fresh PostgreSQL database (copied from a migrated template: fast), a redis-server of the
  test's own on a free port, and :class:`~tests.production.harness.Stack` to start workers, beat and
  API processes against them. Everything is stopped and the database dropped afterwards; the logs
  of every process are printed when the test fails.
* ``prod_vcsim``: a vcsim of the test's own (20 VMs in one cluster; it starts in a tenth of a second),
  so one test's clones, power states and isolated NICs never meet another's. Request ids start at a
  random offset in every test database all the same (markers ``vmportal:request:<id>`` stay unique).
* ``portal``: the people and the configuration a request needs, made through the API: a center admin
  and two operators, a unit with complete paperwork and its admin, the vcsim connection and a pool.

The test process reads and arranges the database directly (assertions, bulk rows) but never dispatches
a task itself: everything a user does goes through the API subprocess.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from hypervisors import create
from tests.conftest import TEST_KEY
from tests.factories import Factory
from tests.production.harness import (
    Api,
    PrivateRedis,
    Stack,
    create_database,
    drop_database,
    unique_name,
)
from tests.support.vcsim import LINUX_TEMPLATE, Topology, VcsimServer, start_vcsim
from vmportal.app import migrate as migrations
from vmportal.identity import service as identity_service
from vmportal.identity.models import AuthToken, User
from vmportal.jobs import outbox
from vmportal.kit import crypto, db
from vmportal.kit.settings import Settings, use_settings
from vmportal.vm.models import VM

API = "/api/v1"

#: The production tests' vcsim: one cluster of two hosts with 20 VMs (the power test's fleet).
PROD_TOPOLOGY = Topology(clusters=1, hosts_per_cluster=2, standalone_hosts=0, vms=20)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # One xdist worker runs them one after another (`--dist loadgroup`): each starts several
    # processes, and on a 2-CPU CI machine two such tests at once only make each other slow.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.xdist_group("production"))
            item.add_marker(pytest.mark.postgres)
            item.add_marker(pytest.mark.vcsim)
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database migrated once per session; each test's database is a copy of it."""
    name = unique_name("vmportal_prodtpl")
    url = create_database(name)
    crypto.configure([TEST_KEY])
    migrations.upgrade(url)
    yield name
    drop_database(name)


@pytest.fixture
def prod_vcsim() -> Iterator[VcsimServer]:
    server = start_vcsim(PROD_TOPOLOGY)
    try:
        yield server
    finally:
        server.stop_all()


def _no_dispatch_here(rows: list[Any]) -> None:
    raise AssertionError(f"the test process must not dispatch tasks itself (it tried {rows!r})")


@pytest.fixture
def stack(
    tmp_path: Path, pg_template: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stack]:
    name = unique_name("vmportal_prod")
    url = create_database(name, template=pg_template)
    redis = PrivateRedis(tmp_path / "redis").start()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        broker_url=redis.url,
        encryption_key=TEST_KEY,  # type: ignore[arg-type]
        task_mode="celery",
        demo=False,
    )
    use_settings(settings)
    crypto.configure([TEST_KEY])
    engine = db.init(settings)
    monkeypatch.setattr(outbox, "dispatch", _no_dispatch_here)
    with engine.begin() as conn:
        # Request ids (hence provisioning markers and VM names) unique across the session's tests.
        conn.exec_driver_sql(
            f"ALTER SEQUENCE vm_request_id_seq RESTART WITH {secrets.randbelow(10**6) * 1000 + 1000}"
        )
    stack = Stack(
        workdir=tmp_path,
        database_url=url,
        redis=redis,
        encryption_key=TEST_KEY,
        # Short enough for a test to see a re-drive; the beat interval follows it (periodic.py).
        extra_env={"VMPORTAL_OUTBOX_REDRIVE_SECONDS": "3"},
    )
    try:
        yield stack
    finally:
        stack.stop_all()
        redis.stop()
        failed = any(
            getattr(getattr(request.node, f"report_{when}", None), "failed", False)
            for when in ("setup", "call")
        )
        if failed:
            print(stack.logs())
        use_settings(None)
        engine.dispose()
        drop_database(name)


# ------------------------------------------------------------------------------------------------
# The portal's people and configuration
# ------------------------------------------------------------------------------------------------


@dataclass
class Portal:
    """Logins and ids a production test needs, with helpers speaking to the API subprocess."""

    api: Api
    http: httpx.Client
    factory: Factory
    heads: dict[str, dict[str, str]]
    unit_id: int
    connection_id: int
    pool_id: int
    template_ref: str
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, who: str, path: str, **params: Any) -> Any:
        r = self.http.get(f"{API}{path}", headers=self.heads[who], params=params or None)
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, who: str, path: str, body: Any = None) -> httpx.Response:
        return self.http.post(f"{API}{path}", json=body, headers=self.heads[who])

    def submit(self, hostname: str, **overrides: Any) -> dict[str, Any]:
        body = {
            "system_name": "课程实验平台",
            "purpose": "teaching",
            "description": "本科课程实验环境",
            "hostname": hostname,
            "connection_id": self.connection_id,
            "template_ref": self.template_ref,
            "vcpus": 1,
            "memory_gib": 1,
            "disk_gib": 20,
            **overrides,
        }
        r = self.post("admin", "/requests", body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def request_state(self, request_id: int) -> str:
        return str(self.get("admin", f"/requests/{request_id}")["state"])


def bearer(user: User) -> dict[str, str]:
    """A live token for ``user``, written straight into the database as a log-in would write it (the
    API process would otherwise spend half a second of argon2 per log-in re-hashing the tests'
    cheap password hash; log-in itself is tested in tests/api)."""
    token = secrets.token_urlsafe(32)
    assert user.id is not None
    with db.transaction() as s:
        s.add(
            AuthToken(
                token_sha256=identity_service.token_digest(token),
                user_id=user.id,
                expires_at=db.utcnow() + timedelta(hours=2),
            )
        )
    return {"Authorization": f"Bearer {token}"}


def make_portal(stack: Stack, api: Api, vcsim: VcsimServer) -> Portal:
    assert stack.database_url
    factory = Factory(Settings(database_url=stack.database_url, encryption_key=TEST_KEY))  # type: ignore[arg-type]
    unit = factory.unit(quota=(200, 800, 4096, 100000))
    users = {
        "center_admin": factory.user("center_admin"),
        "operator": factory.user("center_operator"),
        "operator2": factory.user("center_operator"),
        "admin": factory.user("unit_admin", unit),
        "auditor": factory.user("auditor"),
    }
    http = api.client()
    heads = {who: bearer(u) for who, u in users.items()}
    r = http.post(
        f"{API}/connections",
        json={
            "kind": "vsphere",
            "name": "vcsim",
            "url": vcsim.url,
            "username": vcsim.username,
            "secret": vcsim.password,
        },
        headers=heads["center_admin"],
    )
    assert r.status_code == 201, r.text
    connection_id = int(r.json()["id"])
    r = http.post(
        f"{API}/pools",
        json={
            "name": "campus-servers",
            "cidr": "10.30.0.0/22",
            "gateway": "10.30.0.1",
            "dns": ["10.30.0.2"],
            "excluded": ["10.30.0.1-10.30.0.20"],
            "connection_id": connection_id,
        },
        headers=heads["center_admin"],
    )
    assert r.status_code == 201, r.text
    assert unit.id is not None
    return Portal(
        api=api,
        http=http,
        factory=factory,
        heads=heads,
        unit_id=unit.id,
        connection_id=connection_id,
        pool_id=int(r.json()["id"]),
        template_ref=vcsim.template_refs[LINUX_TEMPLATE],
    )


def register_fleet(portal: Portal, vcsim: VcsimServer, *, first: int, count: int) -> list[VM]:
    """Put vcsim's model VMs ``first`` … ``first + count - 1`` (in name order) in the portal as the
    unit's VMs, with addresses 10.30.2.<index + 10> (as if assigned by an inventory sync)."""
    found = sorted(
        (v for v in create(vcsim.config()).list_vms() if not v.is_template and v.name.startswith("DC0_")),
        key=lambda v: (len(v.name), v.name),
    )[first : first + count]
    assert len(found) == count, f"vcsim has {len(found)} VMs from index {first}, {count} wanted"
    rows = [
        VM(
            unit_id=portal.unit_id,
            connection_id=portal.connection_id,
            hypervisor_ref=v.ref,
            name=v.name,
            hostname=v.name.lower().replace("_", "-"),
            vcpus=v.vcpus,
            memory_gib=1,
            disk_gib=1,
            power_state=str(v.power_state),
            network_connected=True,
            ip_address=f"10.30.2.{first + i + 10}",
            ips=[f"10.30.2.{first + i + 10}"],
        )
        for i, v in enumerate(found)
    ]
    with db.transaction() as s:
        for row in rows:
            s.add(row)
        s.flush()
        for row in rows:
            s.refresh(row)
    return rows


def vms_of_request(request_id: int) -> list[VM]:
    with db.transaction() as s:
        return list(s.exec(select(VM).where(VM.request_id == request_id)))
