"""The VM domain's queries: every select, lock and count over VMs, their credentials and power
operations lives here (the SQL read path of the VM list in :mod:`vmportal.vm.repository.sql`)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select, update

from vmportal.vm.models import VM, DeliveryCredential, Lifecycle


def get(session: Session, vm_id: int) -> VM | None:
    """The VM with this id, whatever its lifecycle (None when there is none)."""
    return session.get(VM, vm_id)


def placeholders(session: Session, request_id: int) -> list[VM]:
    """The VM rows written for a request before its clone (lifecycle ``provisioning``), oldest first:
    a retried provisioning task resumes the first instead of cloning again."""
    statement = (
        select(VM).where(VM.request_id == request_id, VM.lifecycle == Lifecycle.PROVISIONING).order_by(VM.id)  # type: ignore[arg-type]
    )
    return list(session.exec(statement).all())


def credential(session: Session, vm_id: int) -> DeliveryCredential | None:
    """The VM's one-time delivery credential (rule credentials_once), None when it has none."""
    return session.get(DeliveryCredential, vm_id)


def by_ref(session: Session, connection_id: int, ref: str, *, other_than: int | None = None) -> VM | None:
    """The VM a connection knows by this hypervisor reference (unique per connection), leaving out
    the VM ``other_than`` (the placeholder about to take the reference)."""
    statement = select(VM).where(VM.connection_id == connection_id, VM.hypervisor_ref == ref)
    if other_than is not None:
        statement = statement.where(VM.id != other_than)
    return session.exec(statement).first()


def erase_credential(session: Session, vm_id: int, *, fetched_by: int | None, at: datetime) -> bool:
    """Erase the waiting password and record the fetch, by compare-and-set on ``fetched_at IS NULL``:
    of two simultaneous fetches one gets True, the other False (the password is given once)."""
    result = session.exec(
        update(DeliveryCredential)
        .where(col(DeliveryCredential.vm_id) == vm_id, col(DeliveryCredential.fetched_at).is_(None))
        .values(password=None, fetched_at=at, fetched_by=fetched_by)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)
