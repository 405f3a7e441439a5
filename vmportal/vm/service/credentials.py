"""The one-time hand-over of a delivered VM's address, admin account and initial password
(rule ``credentials_once``, agreement §4).

``POST /vms/{vm_id}/credentials``: POST, because the first call consumes them. Only the unit admins
of the VM's unit may fetch; in the same transaction the stored password is erased (set NULL) and
who fetched it when is recorded, so a second call answers 410 with the rule and its reasons. The
erasure is a compare-and-set (``… WHERE fetched_at IS NULL``): two simultaneous fetches give the
password once and one 410. The answer carries ``Cache-Control: no-store``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from policies import combine
from policies.base import Deny
from policies.credentials import check_credentials_once
from policies.roles import Actor, Role
from vmportal.audit.service import Who, record
from vmportal.kit import db, errors
from vmportal.kit.db import utcnow
from vmportal.kit.scope import can_see_unit
from vmportal.network import service as network
from vmportal.network.models import IPPool
from vmportal.vm import repository
from vmportal.vm.models import Lifecycle
from vmportal.vm.schemas import CredentialsOut


def _gone(denial: Deny) -> errors.Gone:
    return errors.Gone(
        denial.message_en,
        message_zh=denial.message_zh,
        rule=denial.rule,
        rules=[denial.rule],
        denials=[denial.as_dict()],
    )


def _record_refusal(session: Session, who: Who, vm_id: int, unit_id: int | None, detail: str) -> None:
    """Keep a refused fetch in the audit log: whoever reaches for a unit's password is worth knowing.
    The error about to be raised rolls the request's transaction back, and SQLite has one writer,
    so the request's (read-only) transaction ends first and the row gets a transaction of its own."""
    session.rollback()
    with db.transaction() as own:
        record(own, who, "vm.credentials_fetch", "vm", vm_id, result="denied", detail=detail, unit_id=unit_id)


class CredentialsStatus(enum.StrEnum):
    """Where a VM's one-time credentials are, as a page asks before offering the fetch."""

    AVAILABLE = "available"  # delivered, waiting for the one fetch
    FETCHED = "fetched"  # handed over (or erased): never again
    NOT_DELIVERED = "not_delivered"  # no credentials yet (provisioning, or a VM the portal did not deliver)
    INACTIVE = "inactive"  # waiting, but the VM is no longer active (decommissioned, missing)


@dataclass(frozen=True)
class CredentialsState:
    """The read-only answer of :func:`credentials_state`. ``refusal``: why this actor may not fetch
    them now (rule credentials_once, both languages), None when the fetch would be handed over."""

    vm_id: int
    status: CredentialsStatus
    fetched_at: datetime | None
    refusal: Deny | None

    @property
    def can_fetch(self) -> bool:
        return self.status is CredentialsStatus.AVAILABLE and self.refusal is None


def credentials_state(session: Session, actor: Actor, vm_id: int) -> CredentialsState:
    """Whether the VM's credentials can be fetched, without fetching them (nothing written, no
    password read out): 404 for a VM the actor may not see, else the status and, when the actor
    could not fetch them, the rule's refusal (the same verdict :func:`fetch_credentials` applies)."""
    vm = repository.get(session, vm_id)
    if vm is None or not can_see_unit(actor, vm.unit_id):
        raise errors.NotFound("vm", vm_id)
    credential = repository.credential(session, vm_id)
    if credential is None or vm.unit_id is None:
        return CredentialsState(vm_id, CredentialsStatus.NOT_DELIVERED, None, None)
    fetched = credential.fetched_at is not None or credential.password is None
    verdict = check_credentials_once(actor, vm.unit_id, already_fetched=fetched)
    refusal = verdict if isinstance(verdict, Deny) else None
    if fetched:
        return CredentialsState(vm_id, CredentialsStatus.FETCHED, credential.fetched_at, refusal)
    if vm.lifecycle != Lifecycle.ACTIVE:
        return CredentialsState(vm_id, CredentialsStatus.INACTIVE, None, refusal)
    return CredentialsState(vm_id, CredentialsStatus.AVAILABLE, None, refusal)


def fetch_credentials(session: Session, actor: Actor, who: Who, vm_id: int) -> CredentialsOut:
    """The one fetch of a delivered VM's initial password (rule credentials_once): scoping (404, the
    probe audited), lifecycle (409), the rule (410 for the unit's admin once fetched, 403 for anyone
    else); the password is erased by compare-and-set in the caller's transaction. The caller must
    keep the answer out of every cache (the route sends ``Cache-Control: no-store``)."""
    vm = repository.get(session, vm_id)
    if vm is None:
        raise errors.NotFound("vm", vm_id)
    if not can_see_unit(actor, vm.unit_id):
        # Answered like a missing VM; the center still sees someone reaching for a password.
        _record_refusal(session, who, vm_id, vm.unit_id, "VM of another unit (answered 404)")
        raise errors.NotFound("vm", vm_id)
    credential = repository.credential(session, vm_id)
    if credential is None or vm.unit_id is None:
        raise errors.NotFound("delivery credentials of vm", vm_id)
    if vm.lifecycle != Lifecycle.ACTIVE:
        raise errors.StateConflict("vm", vm.lifecycle, "fetch credentials")

    verdict = check_credentials_once(
        actor, vm.unit_id, already_fetched=credential.fetched_at is not None or credential.password is None
    )
    if isinstance(verdict, Deny):
        own_unit = actor.role is Role.UNIT_ADMIN and actor.unit_id == vm.unit_id
        _record_refusal(session, who, vm_id, vm.unit_id, f"[{verdict.rule}] {verdict.message_en}")
        if own_unit:
            raise _gone(verdict)  # the right person, too late: gone for good
        raise errors.PolicyDenied(combine(verdict))

    password, account = credential.password, credential.account
    now = utcnow()
    erased = repository.erase_credential(session, vm_id, fetched_by=actor.user_id, at=now)
    if not erased or password is None:
        # Another fetch committed between our read and our write.
        again = check_credentials_once(actor, vm.unit_id, already_fetched=True)
        assert isinstance(again, Deny)
        raise _gone(again)
    session.expire(credential)  # the row changed under the ORM's feet; never reuse the loaded password

    allocation = network.live_allocation_for_vm(session, vm_id)
    pool = session.get(IPPool, allocation.pool_id) if allocation is not None else None
    record(
        session,
        who,
        "vm.credentials_fetch",
        "vm",
        vm_id,
        after={"admin_account": account, "fetched_by": actor.user_id, "password_erased": True},
        unit_id=vm.unit_id,
    )
    return CredentialsOut(
        vm_id=vm_id,
        hostname=vm.hostname,
        ip_address=vm.ip_address,
        prefix_length=network.parse_cidr(pool.cidr).prefixlen if pool is not None else None,
        gateway=pool.gateway if pool is not None else None,
        dns=list(pool.dns or []) if pool is not None else [],
        admin_account=account,
        password=password,
        fetched_at=now,
    )
