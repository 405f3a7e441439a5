"""Exemptions: the center's approval (agreement §6: 经有关部门同意) of a service on a VM.

An exemption names the kind (mail, DNS, proxy, forum), optionally the protocol and port, the reason,
and optionally an expiry. While it is in force the service raises no violation, and granting it
closes the matching open violations (``exempted``). A revoked or expired exemption exempts nothing
more: the next scan raises the service again.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from policies.forbidden_services import ServiceKind
from policies.roles import Actor
from vmportal.audit.service import Who, record
from vmportal.compliance import repository
from vmportal.incidents.models import ServiceExemption, ServiceViolation, ViolationState
from vmportal.kit import db, errors


def exempts(exemption: ServiceExemption, kind: str, protocol: str, port: int) -> bool:
    """Whether ``exemption`` covers the service ``kind`` on ``protocol``/``port`` (its validity aside)."""
    return (
        exemption.service == kind
        and (exemption.protocol is None or exemption.protocol == protocol)
        and (exemption.port is None or exemption.port == port)
    )


def is_active(e: ServiceExemption, now: datetime) -> bool:
    return e.revoked_at is None and (e.expires_at is None or e.expires_at > now)


def grant_exemption(
    session: Session,
    actor: Actor,
    who: Who,
    *,
    vm_id: int,
    kind: ServiceKind,
    reason: str,
    port: int | None = None,
    protocol: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ServiceExemption, list[ServiceViolation]]:
    """The center approves a service on a VM; matching open violations close as ``exempted``."""
    vm = repository.vm(session, vm_id)
    if vm is None:
        raise errors.InvalidField("vm_id", "exists", f"VM {vm_id} does not exist", message_zh="虚拟机不存在")
    now = db.utcnow()
    if expires_at is not None and expires_at <= now:
        raise errors.InvalidField(
            "expires_at", "future", "the expiry must be in the future", message_zh="有效期须晚于当前时间"
        )
    if not reason.strip():
        raise errors.InvalidField(
            "reason", "required", "say who approved it and why", message_zh="请填写批准依据"
        )
    exemption = ServiceExemption(
        vm_id=vm_id,
        unit_id=vm.unit_id,
        service=kind.value,
        protocol=protocol,
        port=port,
        reason=reason.strip()[:1000],
        granted_by=actor.user_id,
        granted_at=now,
        expires_at=expires_at,
    )
    session.add(exemption)
    session.flush()
    closed = []
    for violation in repository.holding_violations(session, [vm_id], service=kind.value):
        if not exempts(exemption, violation.service, violation.protocol, violation.port):
            continue
        violation.state = ViolationState.EXEMPTED.value
        violation.open_key = None
        violation.resolved_at = now
        violation.decided_by = actor.user_id
        violation.note = f"exempted by exemption {exemption.id}: {exemption.reason}"[:1000]
        session.add(violation)
        closed.append(violation)
    record(
        session,
        who,
        "security.exemption.grant",
        "service_exemption",
        exemption.id,
        after={
            "vm_id": vm_id,
            "service": kind.value,
            "protocol": protocol,
            "port": port,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "closed_violations": [v.id for v in closed],
        },
        detail=exemption.reason,
        unit_id=vm.unit_id,
    )
    return exemption, closed


def revoke_exemption(session: Session, actor: Actor, who: Who, exemption_id: int) -> ServiceExemption:
    """The center withdraws an approval: the next scan raises the service again."""
    exemption = repository.exemption(session, exemption_id)
    if exemption.revoked_at is not None:
        raise errors.StateConflict(
            "exemption", "revoked", "revoke", message=f"exemption {exemption_id} is revoked already"
        )
    exemption.revoked_at = db.utcnow()
    exemption.revoked_by = actor.user_id
    session.add(exemption)
    record(
        session,
        who,
        "security.exemption.revoke",
        "service_exemption",
        exemption_id,
        before={"revoked_at": None},
        after={"revoked_at": exemption.revoked_at.isoformat()},
        unit_id=exemption.unit_id,
    )
    return exemption


def list_exemptions(
    session: Session, actor: Actor, *, vm_id: int | None = None, active: bool | None = None
) -> list[ServiceExemption]:
    """The exemptions ``actor`` sees (of one VM, or all), newest first; ``active``: in force or not."""
    rows = repository.exemptions(session, actor, vm_id=vm_id)
    if active is not None:
        # In force is a matter of the clock (expiry) as much as of the row: decided here, not in SQL.
        now = db.utcnow()
        rows = [e for e in rows if is_active(e, now) == active]
    return rows
