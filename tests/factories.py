"""Test data factories: units with or without complete paperwork, users of every role, the
simulator connection, IP pools, requests and VMs. Rows are built directly through the models so
tests stay fast; the services under test are exercised through the API.

Use the ``factory`` fixture::

    unit = factory.unit()                       # complete paperwork, quota 10/40/128/2000
    admin = factory.user("unit_admin", unit)    # password factory.PASSWORD
    headers = factory.login(client, admin)      # {"Authorization": "Bearer …"}
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from vmportal.connection.models import HypervisorConnection
from vmportal.identity.models import User
from vmportal.identity.service import hash_password
from vmportal.kit import db
from vmportal.kit.settings import Settings
from vmportal.network.models import IPPool
from vmportal.unit.models import Contact, Document, InformationSystem, Quota, Unit
from vmportal.vm.models import VM

PASSWORD = "Str0ng-Passw0rd!"
_HASH: dict[str, str] = {}
_seq = itertools.count(1)


def _password_hash() -> str:
    # argon2 is slow on purpose; hash the shared test password once per process.
    if PASSWORD not in _HASH:
        _HASH[PASSWORD] = hash_password(PASSWORD)
    return _HASH[PASSWORD]


@dataclass
class Factory:
    settings: Settings
    PASSWORD: str = PASSWORD

    def _save(self, *rows: Any) -> None:
        with db.transaction() as s:
            for row in rows:
                s.add(row)
            s.flush()
            for row in rows:
                s.refresh(row)

    # ---- units and paperwork ------------------------------------------------------------------
    def unit(
        self,
        code: str | None = None,
        *,
        paperwork: bool = True,
        agreement: bool = True,
        quota: tuple[int, int, int, int] = (10, 40, 128, 2000),
        agreement_filed_days_ago: int = 30,
    ) -> Unit:
        n = next(_seq)
        unit = Unit(code=code or f"U{n:03d}", name_zh=f"测试学院{n}", name_en=f"Test College {n}")
        self._save(unit)
        assert unit.id is not None
        rows: list[Any] = [
            Quota(
                unit_id=unit.id,
                max_vms=quota[0],
                max_vcpus=quota[1],
                max_memory_gib=quota[2],
                max_disk_gib=quota[3],
            )
        ]
        if paperwork:
            rows += [
                Contact(
                    unit_id=unit.id,
                    role="security_lead",
                    name=f"负责人{n}",
                    title="副院长",
                    office_phone="0516-83590000",
                    mobile="13800000000",
                    email=f"lead{n}@example.edu.cn",
                ),
                Contact(
                    unit_id=unit.id,
                    role="security_admin",
                    name=f"管理员{n}",
                    title="工程师",
                    office_phone="0516-83590001",
                    mobile="13900000001",
                    email=f"admin{n}@example.edu.cn",
                    qq="12345678",
                    staff_no=f"T{n:05d}",
                    national_id="320301199001011237",
                ),
                self.document_row(unit.id, "commitment_letter", agreement_filed_days_ago),
            ]
            if agreement:
                rows.append(self.document_row(unit.id, "vm_agreement", agreement_filed_days_ago))
        self._save(*rows)
        return unit

    def document_row(self, unit_id: int, kind: str, filed_days_ago: int = 30) -> Document:
        content = f"{kind}-{unit_id}".encode()
        return Document(
            unit_id=unit_id,
            kind=kind,
            signer="主要负责人",
            signed_on=date.today() - timedelta(days=filed_days_ago),
            filed_at=db.utcnow() - timedelta(days=filed_days_ago),
            filename=f"{kind}.pdf",
            content_type="application/pdf",
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
        )

    def system(
        self, unit: Unit, *, name: str = "课程实验平台", purpose: str = "teaching"
    ) -> InformationSystem:
        assert unit.id is not None
        row = InformationSystem(
            unit_id=unit.id,
            name=name,
            purpose=purpose,
            description="本科课程实验",
            domains=[f"lab{unit.id}.example.edu.cn"],
            responsible_person="张老师",
        )
        self._save(row)
        return row

    # ---- users --------------------------------------------------------------------------------
    def user(self, role: str, unit: Unit | None = None, *, username: str | None = None) -> User:
        n = next(_seq)
        user = User(
            username=username or f"{role}{n}",
            password_hash=_password_hash(),
            role=role,
            unit_id=unit.id if unit else None,
            display_name=f"{role} {n}",
        )
        self._save(user)
        return user

    def login(self, client: TestClient, user: User | str) -> dict[str, str]:
        username = user if isinstance(user, str) else user.username
        r = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    # ---- hypervisor and network ---------------------------------------------------------------
    def connection(self) -> HypervisorConnection:
        """The simulator connection the embedded portal registers at start-up."""
        with db.transaction() as s:
            row = s.exec(select(HypervisorConnection).where(HypervisorConnection.name == "simulator")).first()
            if row is None:
                row = HypervisorConnection(
                    name="simulator", kind="simulator", url=self.settings.simulator_state_url
                )
                s.add(row)
                s.flush()
                s.refresh(row)
            return row

    def pool(self, *, cidr: str = "10.20.0.0/24", name: str | None = None) -> IPPool:
        n = next(_seq)
        base = cidr.rsplit(".", 1)[0]
        row = IPPool(
            name=name or f"pool-{n}",
            cidr=cidr,
            gateway=f"{base}.1",
            dns=[f"{base}.2"],
            excluded=[f"{base}.1-{base}.10"],
            network="VM Network",
            connection_id=self.connection().id,
        )
        self._save(row)
        return row

    def vm(self, unit: Unit, *, name: str | None = None, power_state: str = "running", **fields: Any) -> VM:
        """A VM row that also exists on the simulator, so power operations reach a real adapter."""
        from hypervisors import CloneSpec, ConnectionConfig, HypervisorKind, create

        n = next(_seq)
        conn = self.connection()
        adapter = create(ConnectionConfig(kind=HypervisorKind.SIMULATOR, url=conn.url))
        template = adapter.list_templates()[0]
        info = adapter.clone(
            CloneSpec(
                name=name or f"vm-{n}",
                template_ref=template.ref,
                marker=f"factory:{n}",
                vcpus=2,
                memory_mib=4096,
            )
        )
        if power_state == "stopped":
            from hypervisors import PowerAction

            info = adapter.power(info.ref, PowerAction.STOP)
        assert conn.id is not None
        row = VM(
            unit_id=unit.id,
            connection_id=conn.id,
            hypervisor_ref=info.ref,
            name=info.name,
            hostname=info.name,
            vcpus=2,
            memory_gib=4,
            disk_gib=int(info.disk_gib),
            power_state=str(info.power_state),
            ip_address=f"10.20.0.{100 + n % 150}",
            **fields,
        )
        self._save(row)
        return row

    def session(self) -> Session:
        return db.new_session()


@pytest.fixture
def factory(settings: Settings) -> Factory:
    return Factory(settings)
