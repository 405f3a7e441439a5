"""Shared pieces of the notices, findings, scans and e-mail tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import select

from tests.factories import Factory
from vmportal.kit import db
from vmportal.unit.models import Contact, Unit
from vmportal.vm.models import VM

NMAP_SAMPLE = (Path(__file__).parent.parent / "alerts" / "data" / "nmap_sample.xml").read_bytes()
#: The sample's one host; the tests give it to a VM.
SAMPLE_HOST = "127.0.0.1"
#: The sample without its open 25/tcp (Postfix): the port falls back into the closed <extraports>.
NMAP_WITHOUT_MAIL = b"\n".join(
    line for line in NMAP_SAMPLE.split(b"\n") if b'portid="25"' not in line or b"<port " not in line
)


def contacts(unit: Unit) -> dict[str, str]:
    """The unit's registry e-mails by role (security_admin, security_lead)."""
    with db.transaction() as s:
        return {c.role: c.email for c in s.exec(select(Contact).where(Contact.unit_id == unit.id))}


def set_vm(vm: VM, **values: Any) -> VM:
    """Change a VM row (an address the tests need, a system), as the inventory would have it."""
    with db.transaction() as s:
        row = s.get(VM, vm.id)
        assert row is not None
        for key, value in values.items():
            setattr(row, key, value)
        s.add(row)
        s.flush()
        s.refresh(row)
        return row


def vm_at(factory: Factory, unit: Unit, ip: str, **values: Any) -> VM:
    return set_vm(factory.vm(unit), ip_address=ip, **values)


def upload(client: TestClient, headers: dict[str, str], data: bytes, name: str = "scan.xml") -> Any:
    return client.post("/api/v1/scans", files={"file": (name, data, "application/xml")}, headers=headers)
