"""Submission: a unit admin requests a VM for their own unit.

Decided by the policy layer: ``purpose``, ``paperwork`` and ``quota`` combined, deny wins, a denial
answers 403 with the rule and both messages. The quota counts the unit's VMs, every request of it
still to be delivered and the new one, under the unit's quota lock. The request carries its due
time (``provisioning_deadline``: 7 days from the later of submission and the agreement's filing).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from sqlmodel import Session

from hypervisors.base import HypervisorError
from policies import combine
from policies.base import Decision
from policies.deadline import due_at
from policies.paperwork import check_paperwork
from policies.purpose import PurposeFacts, check_purpose
from policies.quota import Resources, check_quota
from policies.roles import ROLE_NAMES_EN, ROLE_NAMES_ZH, Actor, Role
from vmportal.audit.service import Who, record
from vmportal.connection import service as connections
from vmportal.connection.models import HypervisorConnection
from vmportal.kit import db, errors
from vmportal.kit.db import utcnow
from vmportal.request import mails
from vmportal.request.lifecycle import PENDING_STATES
from vmportal.request.models import RequestState, VMRequest
from vmportal.request.schemas import RequestIn
from vmportal.request.service.checks import connection_for, find_unit, invalid, pool_for_request, quota_facts
from vmportal.unit import service as units

log = logging.getLogger(__name__)


def snapshot(req: VMRequest) -> dict[str, Any]:
    """What the audit log keeps of a request."""
    return {
        "state": req.state,
        "unit_id": req.unit_id,
        "system_id": req.system_id,
        "system_name": req.system_name,
        "purpose": req.purpose,
        "beneficiary": req.beneficiary,
        "hostname": req.hostname,
        "connection_id": req.connection_id,
        "template_ref": req.template_ref,
        "vcpus": req.vcpus,
        "memory_gib": req.memory_gib,
        "disk_gib": req.disk_gib,
        "pool_id": req.pool_id,
        "due_at": req.due_at,
    }


def _template_name(session: Session, conn: HypervisorConnection, ref: str, disk_gib: int) -> str:
    """Check the template against the hypervisor; its name, or "" when the hypervisor cannot be
    asked right now (provisioning will then report a missing template as the failure)."""
    # Nothing is written yet: release the database before the network call (see end_read_transaction).
    connections.end_read_transaction(session)
    try:
        template = connections.find_template(conn, ref)
    except HypervisorError as exc:
        log.warning("templates of connection %s unavailable at submission: %s", conn.name, exc.message)
        return ""
    if template is None:
        raise invalid(
            "template_ref",
            "exists",
            f"connection '{conn.name}' has no template '{ref}' (see GET /templates)",
            f"连接“{conn.name}”没有模板“{ref}”（可选模板见 GET /templates）",
        )
    if disk_gib < math.ceil(template.disk_gib):
        raise invalid(
            "disk_gib",
            "template_disk",
            f"must be at least the template's disk of {template.disk_gib:g} GiB (disks only grow)",
            f"不能小于模板磁盘 {template.disk_gib:g} GiB（磁盘只能扩大）",
        )
    return template.name


def _record_refusal(
    who: Who, unit_id: int, body: RequestIn, purpose: str, system_name: str, decision: Decision
) -> None:
    """Keep a request the rules refused in the audit log, like a refused power operation. The
    caller's transaction is rolled back by the 403 about to be raised, so the row is written in a
    transaction of its own; no request exists, so the target id is empty and the row keeps what was
    asked and the deciding rules. The caller has rolled its own transaction back first."""
    with db.transaction() as s:
        record(
            s,
            who,
            "request.submit",
            "vm_request",
            "",
            after={
                "purpose": purpose,
                "beneficiary": body.beneficiary.value,
                "system_id": body.system_id,
                "system_name": system_name,
                "hostname": body.hostname.lower(),
                "connection_id": body.connection_id,
                "vcpus": body.vcpus,
                "memory_gib": body.memory_gib,
                "disk_gib": body.disk_gib,
                "rules": [d.rule for d in decision.denials],
            },
            result="denied",
            detail=" ".join(f"[{d.rule}] {d.message_en}" for d in decision.denials),
            unit_id=unit_id,
        )


def submit(session: Session, actor: Actor, who: Who, body: RequestIn) -> VMRequest:
    """A unit admin requests a VM for their own unit."""
    if actor.role is not Role.UNIT_ADMIN or actor.unit_id is None:
        raise errors.Forbidden(
            f"only a unit's security administrator requests VMs, not a {ROLE_NAMES_EN[actor.role]}",
            message_zh=f"只有单位网络安全管理员可以申请虚拟机，{ROLE_NAMES_ZH[actor.role]}不能申请",
            role=actor.role.value,
        )
    unit_id = actor.unit_id
    unit = find_unit(session, unit_id)
    if unit is None or not unit.active:
        raise errors.Forbidden(
            "your unit is not active; it cannot request VMs", message_zh="本单位已停用，不能申请虚拟机"
        )

    domains: tuple[str, ...] = ()
    if body.system_id is not None:
        if body.system_name is not None:
            raise invalid(
                "system_name",
                "exclusive",
                "give either system_id or system_name, not both",
                "system_id 与 system_name 只能填写一个",
            )
        system = units.get_system(session, unit_id, body.system_id)  # another unit's: 404
        purpose, system_name = system.purpose, system.name
        description = body.description or system.description
        domains = tuple(system.domains or ())
    else:
        if body.system_name is None or not body.system_name.strip():
            raise invalid(
                "system_name",
                "required",
                "give system_id (a registered information system) or system_name with purpose",
                "请填写 system_id（已登记的信息系统），或填写 system_name 和 purpose",
            )
        if body.purpose is None:
            raise invalid(
                "purpose",
                "required",
                "the purpose (teaching, research or management) is required with system_name",
                "填写 system_name 时须注明用途（教学、科研或管理）",
            )
        purpose, system_name, description = body.purpose.value, body.system_name.strip(), body.description

    conn = connection_for(session, body.connection_id)
    if body.pool_id is not None:
        pool_for_request(session, body.pool_id, body.connection_id)
    template_name = _template_name(session, conn, body.template_ref, body.disk_gib)

    requested = Resources(vms=1, vcpus=body.vcpus, memory_gib=body.memory_gib, disk_gib=body.disk_gib)
    facts = quota_facts(session, unit_id, requested, PENDING_STATES)
    decision = combine(
        check_purpose(
            PurposeFacts(
                purpose=purpose,
                beneficiary=body.beneficiary.value,
                system_name=system_name,
                description=description,
                domains=domains,
            )
        ),
        check_paperwork(units.paperwork_facts(session, unit_id)),
        check_quota(facts, actor.role, None),
    )
    if not decision.allowed:
        # Nothing is written yet; giving back the quota lock first lets the audit row's own
        # transaction take SQLite's write lock instead of waiting for this one.
        session.rollback()
        _record_refusal(who, unit_id, body, purpose, system_name, decision)
        raise errors.PolicyDenied(decision)

    now = utcnow()
    filed = units.agreement_filed_at(session, unit_id) or now
    req = VMRequest(
        unit_id=unit_id,
        system_id=body.system_id,
        requested_by=actor.user_id,
        state=RequestState.SUBMITTED,
        purpose=purpose,
        beneficiary=body.beneficiary.value,
        system_name=system_name,
        description=description,
        hostname=body.hostname.lower(),
        connection_id=body.connection_id,
        template_ref=body.template_ref,
        template_name=template_name,
        vcpus=body.vcpus,
        memory_gib=body.memory_gib,
        disk_gib=body.disk_gib,
        pool_id=body.pool_id,
        submitted_at=now,
        due_at=due_at(now, filed),
        updated_at=now,
    )
    session.add(req)
    session.flush()
    record(session, who, "request.submit", "vm_request", req.id, after=snapshot(req), unit_id=unit_id)
    mails.after_move(session, req)
    return req
