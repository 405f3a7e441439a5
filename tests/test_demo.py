"""The embedded default's demo data: complete, idempotent, and usable through the API."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import SQLModel, func, select

from hypervisors import ConnectionConfig, HypervisorKind, create
from hypervisors.base import PowerState
from policies.paperwork import check_paperwork
from vmportal.app import demo
from vmportal.audit.models import AuditEntry
from vmportal.audit.service import verify
from vmportal.kit import db
from vmportal.kit.settings import Settings
from vmportal.network.models import IPAllocation
from vmportal.unit.models import Document, Unit
from vmportal.unit.service import document_path, paperwork_facts
from vmportal.vm.models import VM

API = "/api/v1"


def counts() -> dict[str, int]:
    import vmportal.app.models  # noqa: F401  (every table on the metadata)

    with db.transaction() as s:
        return {
            table.name: int(s.exec(select(func.count()).select_from(table)).one())
            for table in SQLModel.metadata.sorted_tables
            if table.name not in ("audit_head", "alembic_version")
        }


@pytest.fixture
def seeded(client: TestClient, settings: Settings) -> demo.DemoInfo:
    return demo.seed(settings)


def login(client: TestClient, username: str, password: str) -> dict[str, str]:
    r = client.post(f"{API}/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, (username, r.text)
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_seeding_twice_adds_nothing(seeded: demo.DemoInfo, settings: Settings) -> None:
    assert seeded.created > 0
    first = counts()
    assert first["unit"] == 3 and first["user"] == 9 and first["vm"] == 2 and first["ip_pool"] == 2
    assert first["contact"] == 6 and first["document"] == 5 and first["information_system"] == 4

    again = demo.seed(settings)
    assert again.created == 0
    assert counts() == first
    assert again.unit_ids == seeded.unit_ids and again.vm_ids == seeded.vm_ids

    with db.transaction() as s:
        assert verify(s).ok
        actors = set(s.exec(select(AuditEntry.actor)).all())
    assert actors == {"demo"}


def test_every_demo_login_works(client: TestClient, seeded: demo.DemoInfo) -> None:
    roles = {}
    for item in seeded.logins:
        me = client.get(f"{API}/auth/me", headers=login(client, item.username, item.password)).json()
        roles[item.username] = me["role"]
        assert me["role"] == item.role
        assert (me["unit_id"] is None) == (item.unit_code is None)
    assert roles == {
        "center-admin": "center_admin",
        "operator": "center_operator",
        "auditor": "auditor",
        "cs-admin": "unit_admin",
        "cs-lead": "unit_lead",
        "me-admin": "unit_admin",
        "me-lead": "unit_lead",
        "lib-admin": "unit_admin",
        "lib-lead": "unit_lead",
    }
    banner = seeded.banner()
    assert seeded.base_url in banner
    assert all(item.username in banner and item.password in banner for item in seeded.logins)


def test_demo_passwords_are_fixed_and_strong(seeded: demo.DemoInfo) -> None:
    from vmportal.identity.service import check_password_strength

    for item in seeded.logins:
        assert item.password.startswith("Demo-2026!")
        check_password_strength(item.password, username=item.username)
    assert demo.logins() == seeded.logins  # printable without a database


def test_paperwork_complete_except_the_library(seeded: demo.DemoInfo, settings: Settings) -> None:
    with db.transaction() as s:
        verdicts = {
            code: check_paperwork(paperwork_facts(s, unit_id)) for code, unit_id in seeded.unit_ids.items()
        }
        documents = list(s.exec(select(Document)))
    assert verdicts["CS"].allowed and verdicts["ME"].allowed
    assert not verdicts["LIB"].allowed
    assert verdicts["LIB"].rule == "paperwork"
    assert getattr(verdicts["LIB"], "field", None) == "vm_agreement"

    # The placeholder files are on disk, are PDFs, and match the recorded SHA-256 and size.
    for doc in documents:
        content = document_path(doc, settings).read_bytes()
        assert content.startswith(b"%PDF-") and content.rstrip().endswith(b"%%EOF")
        assert hashlib.sha256(content).hexdigest() == doc.sha256
        assert len(content) == doc.size


def test_the_unit_without_agreement_is_refused_a_request(client: TestClient, seeded: demo.DemoInfo) -> None:
    headers = login(client, "lib-admin", demo.PASSWORDS[demo.Role.UNIT_ADMIN])
    with db.transaction() as s:
        connection_id = s.exec(select(VM.connection_id)).first()
    body: dict[str, Any] = {
        "system_name": "图书馆座位预约系统",
        "purpose": "management",
        "hostname": "seat",
        "connection_id": connection_id,
        "template_ref": "tpl-rocky-9",
        "vcpus": 2,
        "memory_gib": 4,
        "disk_gib": 40,
    }
    r = client.post(f"{API}/requests", json=body, headers=headers)
    assert r.status_code == 403, r.text
    assert "paperwork" in r.json()["error"]["rules"]

    # The same request from a unit with its papers in order goes through.
    cs = login(client, "cs-admin", demo.PASSWORDS[demo.Role.UNIT_ADMIN])
    r = client.post(
        f"{API}/requests",
        json={**body, "system_name": "计算机学院课程实验平台", "purpose": "teaching", "hostname": "lab2"},
        headers=cs,
    )
    assert r.status_code == 201, r.text


def test_demo_vms_are_listed_and_live_on_the_simulator(
    client: TestClient, seeded: demo.DemoInfo, settings: Settings
) -> None:
    cs = login(client, "cs-admin", demo.PASSWORDS[demo.Role.UNIT_ADMIN])
    listed = client.get(f"{API}/vms", headers=cs).json()
    assert listed["total"] == 2
    by_name = {v["name"]: v for v in listed["items"]}
    assert set(by_name) == {"cs-lab-web", "cs-research-db"}
    assert by_name["cs-lab-web"]["power_state"] == "running"
    assert by_name["cs-research-db"]["power_state"] == "stopped"
    assert all(v["unit_code"] == "CS" and v["system_id"] for v in by_name.values())

    me = login(client, "me-admin", demo.PASSWORDS[demo.Role.UNIT_ADMIN])
    assert client.get(f"{API}/vms", headers=me).json()["total"] == 0

    adapter = create(ConnectionConfig(kind=HypervisorKind.SIMULATOR, url=settings.simulator_state_url))
    with db.transaction() as s:
        vms = list(s.exec(select(VM)))
        allocations = {a.vm_id: a for a in s.exec(select(IPAllocation))}
    for vm in vms:
        info = adapter.get_vm(vm.hypervisor_ref)
        assert info.marker == f"vmportal:demo:{vm.name}"
        assert str(info.power_state) == vm.power_state
        assert allocations[vm.id].address == vm.ip_address and allocations[vm.id].released_at is None
        assert vm.ip_address in info.ips

    # The unit admin can start the stopped one.
    stopped = by_name["cs-research-db"]
    r = client.post(f"{API}/vms/{stopped['id']}/power", json={"action": "start"}, headers=cs)
    assert r.status_code == 202, r.text
    assert client.get(r.json()["links"]["self"], headers=cs).json()["state"] == "succeeded"
    with db.transaction() as s:
        ref = s.get(VM, stopped["id"]).hypervisor_ref  # type: ignore[union-attr]
    assert adapter.get_vm(ref).power_state is PowerState.RUNNING


def test_national_ids_are_not_in_the_database_file(seeded: demo.DemoInfo, settings: Settings) -> None:
    with db.transaction() as s:
        s.exec(select(Unit)).all()
        stored = s.execute(sa.text("SELECT national_id, mobile, name FROM contact")).all()
    db.engine().dispose()  # checkpoint the WAL into the main file
    if settings.database_url:  # PostgreSQL: the stored column values themselves
        raw = "\n".join("|".join(str(v) for v in row) for row in stored).encode()
    else:  # SQLite: every byte of the database file and its WAL
        raw = b"".join(p.read_bytes() for p in settings.data_dir.glob("vmportal.sqlite3*"))
    for unit in demo._UNITS:
        assert unit.admin.national_id.encode() not in raw
        assert unit.admin.mobile.encode() not in raw
        assert unit.admin.name.encode() in raw  # names are not secret; proves we read the right file
