"""VM requests: submission under the agreement's rules, the center's decisions, and provisioning.

Submission (unit_admin, own unit) is decided by the policy layer: ``purpose``, ``paperwork`` and
``quota`` combined, deny wins, a denial answers 403 with the rule and both messages. The request
carries its due time (``provisioning_deadline``: 7 days from the later of submission and the
agreement's filing).

Approval re-checks the quota under a lock (see :mod:`vmportal.quota.service`); over quota only a
center_admin may approve, with a recorded reason. Approval enqueues the provisioning task through
the outbox, in the same transaction.

Provisioning (:mod:`vmportal.request.tasks`) runs in three short transactions around the hypervisor
call, so no database lock is held while the hypervisor works:

1. :func:`prepare_provisioning`: approved → provisioning (compare-and-set); take an address; create
   the VM row as a placeholder (lifecycle ``provisioning``, hidden from VM lists and power
   operations) together with its :class:`DeliveryCredential`, i.e. the generated password,
   encrypted. Persisting the password *before* the clone is what makes a retry safe: a task
   redelivered after a crash finds the placeholder, clones again with the same marker, the adapter
   returns the VM the first attempt made, and the password on file is the one that VM has.
2. ``adapter.clone(CloneSpec(marker="vmportal:request:<id>", …))``.
3. :func:`finish_provisioning` (the placeholder becomes the VM, the request delivered) or
   :func:`fail_provisioning` (the request failed with the adapter's message, the address released,
   the placeholder and its password removed).

The admin account: ``Administrator`` on Windows templates (Sysprep guest customization can only set
the built-in administrator's password), ``vmadmin`` everywhere else (cloud-init ``ciuser`` / Linux
customization creates it; a fixed non-``root`` name the unit can rename). The initial password: 20
characters from :mod:`secrets`, upper and lower case, digits and symbols, without look-alikes
(0/O/o, 1/l/I) and without characters that break shells, YAML or XML (quotes, ``$``, ``&``, ``<``,
``\\``). It is never logged or audited; it is erased when the unit's admin fetches it.
"""

from __future__ import annotations

import logging
import math
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, func, select, update

from hypervisors.base import CloneSpec, HypervisorError, IPSettings, VMInfo
from policies import combine
from policies.deadline import AT_RISK, DeadlineStatus, deadline_status, due_at
from policies.paperwork import check_paperwork
from policies.purpose import PurposeFacts, check_purpose
from policies.quota import Resources, check_quota, over_quota
from policies.roles import ROLE_NAMES_EN, ROLE_NAMES_ZH, UNIT_ROLES, Actor, Role
from vmportal.audit.service import Who, record
from vmportal.center import service as center
from vmportal.connection import service as connections
from vmportal.connection.models import HypervisorConnection
from vmportal.jobs import outbox
from vmportal.kit import errors
from vmportal.kit.db import utcnow
from vmportal.kit.scope import ensure_visible
from vmportal.network import service as network
from vmportal.network.models import IPAllocation, IPPool
from vmportal.quota import service as quota
from vmportal.request import lifecycle
from vmportal.request.lifecycle import Action
from vmportal.request.models import RequestState, VMRequest
from vmportal.request.schemas import RequestIn
from vmportal.unit import service as units
from vmportal.unit.models import Unit
from vmportal.vm.models import VM, DeliveryCredential, Lifecycle

log = logging.getLogger(__name__)

PROVISION_TASK = "vmportal.request.provision"

#: Lifecycle of a VM row while the hypervisor builds it (``vmportal.vm.models.Lifecycle`` lists the
#: others). Such a row is invisible to the VM list's default filter and refuses power operations.
PROVISIONING_LIFECYCLE = "provisioning"

#: Who the audit log names for what the provisioning task does.
PROVISIONER = Who.system("provisioning")

LINUX_ADMIN = "vmadmin"
WINDOWS_ADMIN = "Administrator"

PASSWORD_LENGTH = 20
_LOWER = "abcdefghijkmnpqrstuvwxyz"  # no l, o
_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, O
_DIGITS = "23456789"  # no 0, 1
_SYMBOLS = "@%+=_-"  # safe unquoted in shells, YAML, XML and Sysprep answer files
_CLASSES = (_LOWER, _UPPER, _DIGITS, _SYMBOLS)


def generate_initial_password(length: int = PASSWORD_LENGTH) -> str:
    """A random password with every character class, starting with a letter (some tools read a
    leading symbol as an option)."""
    if length < 16:
        raise ValueError("initial passwords have at least 16 characters")
    alphabet = "".join(_CLASSES)
    rng = secrets.SystemRandom()
    while True:
        chars = [secrets.choice(c) for c in _CLASSES]
        chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
        rng.shuffle(chars)
        if chars[0] in string.ascii_letters:
            return "".join(chars)


def admin_account_for(template_name: str, template_ref: str) -> str:
    text = f"{template_name} {template_ref}".casefold()
    return WINDOWS_ADMIN if "windows" in text or "win20" in text else LINUX_ADMIN


def marker_of(request_id: int) -> str:
    return f"vmportal:request:{request_id}"


# ---- reading -----------------------------------------------------------------------------------


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


def requested_of(req: VMRequest) -> Resources:
    return Resources(vms=1, vcpus=req.vcpus, memory_gib=req.memory_gib, disk_gib=req.disk_gib)


def deadline_of(req: VMRequest, now: datetime) -> DeadlineStatus | None:
    """Where the request stands against its due time; None once rejected or cancelled (no VM is owed)."""
    if req.state in (RequestState.REJECTED, RequestState.CANCELLED):
        return None
    delivered = req.delivered_at if req.state == RequestState.DELIVERED else None
    return deadline_status(req.due_at, now, delivered)


def get_request(session: Session, actor: Actor, request_id: int) -> VMRequest:
    req = session.get(VMRequest, request_id)
    if req is None:
        raise errors.NotFound("request", request_id)
    ensure_visible(actor, req.unit_id, "request", request_id)
    return req


def list_requests(
    session: Session,
    actor: Actor,
    *,
    state: RequestState | None = None,
    unit_id: int | None = None,
    at_risk: bool = False,
    overdue: bool = False,
    limit: int = 100,
    offset: int = 0,
    now: datetime | None = None,
) -> tuple[list[VMRequest], int]:
    """One page of requests, newest first, and how many match in all.

    Unit users see their unit's requests only. ``at_risk`` and ``overdue`` select open requests
    (not delivered, rejected or cancelled) less than 48 h before, or past, their due time; both
    together select either."""
    now = now or utcnow()
    query = select(VMRequest)
    if actor.role in UNIT_ROLES:
        query = query.where(VMRequest.unit_id == actor.unit_id)
    if unit_id is not None:
        query = query.where(VMRequest.unit_id == unit_id)
    if state is not None:
        query = query.where(VMRequest.state == state.value)
    is_open = col(VMRequest.state).in_([s.value for s in lifecycle.OPEN_STATES])
    due = col(VMRequest.due_at)
    windows = []
    if at_risk:
        windows.append(and_(is_open, due >= now, due <= now + AT_RISK))
    if overdue:
        windows.append(and_(is_open, due < now))
    if windows:
        query = query.where(or_(*windows))
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = list(session.exec(query.order_by(col(VMRequest.id).desc()).offset(offset).limit(limit)))
    return rows, int(total)


# ---- state changes -----------------------------------------------------------------------------


def _authorize(actor: Actor, action: Action) -> None:
    if not lifecycle.may(actor.role, action):
        allowed = ", ".join(sorted(r.value for r in lifecycle.TRANSITIONS[action].roles)) or "nobody"
        raise errors.Forbidden(
            f"a {ROLE_NAMES_EN[actor.role]} may not {action.value} a request (allowed: {allowed})",
            message_zh=f"{ROLE_NAMES_ZH[actor.role]}无权对申请执行“{action.value}”（允许：{allowed}）",
            role=actor.role.value,
            action=action.value,
        )


def transition(
    session: Session,
    req: VMRequest,
    action: Action,
    *,
    endorsement_required: bool = False,
    **values: Any,
) -> RequestState:
    """Move ``req`` by ``action`` (checked against the lifecycle table) with compare-and-set: the
    row changes only if it is still in the state this transaction read. Otherwise 409 naming the
    state it is in now. ``values`` are written in the same UPDATE."""
    assert req.id is not None
    target = lifecycle.check(action, req.state, endorsement_required=endorsement_required)
    expected = req.state
    values = {**values, "state": target.value, "updated_at": utcnow()}
    result = session.exec(
        update(VMRequest)
        .where(col(VMRequest.id) == req.id, col(VMRequest.state) == expected)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        current = session.exec(select(VMRequest.state).where(VMRequest.id == req.id)).first()
        raise errors.StateConflict("request", current or "deleted", action.value)
    for key, value in values.items():
        set_committed_value(req, key, value)  # the row is written; keep the object in step, unflushed
    return target


def _invalid(field: str, rule: str, message: str, message_zh: str) -> errors.InvalidField:
    return errors.InvalidField(field, rule, message, message_zh=message_zh)


def _connection_for(session: Session, connection_id: int) -> HypervisorConnection:
    conn = session.get(HypervisorConnection, connection_id)
    if conn is None:
        raise _invalid(
            "connection_id",
            "exists",
            f"hypervisor connection {connection_id} does not exist",
            f"虚拟化平台连接 {connection_id} 不存在",
        )
    if not conn.active:
        raise _invalid(
            "connection_id",
            "active",
            f"hypervisor connection '{conn.name}' is not in service",
            f"虚拟化平台连接“{conn.name}”已停用",
        )
    return conn


def _pool_for_request(session: Session, pool_id: int, connection_id: int) -> IPPool:
    pool = session.get(IPPool, pool_id)
    if pool is None:
        raise _invalid(
            "pool_id", "exists", f"IP pool {pool_id} does not exist", f"IP 地址池 {pool_id} 不存在"
        )
    if pool.connection_id not in (None, connection_id):
        raise _invalid(
            "pool_id",
            "same_connection",
            f"IP pool '{pool.name}' belongs to another hypervisor connection",
            f"IP 地址池“{pool.name}”属于其他虚拟化平台连接",
        )
    return pool


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
        raise _invalid(
            "template_ref",
            "exists",
            f"connection '{conn.name}' has no template '{ref}' (see GET /templates)",
            f"连接“{conn.name}”没有模板“{ref}”（可选模板见 GET /templates）",
        )
    if disk_gib < math.ceil(template.disk_gib):
        raise _invalid(
            "disk_gib",
            "template_disk",
            f"must be at least the template's disk of {template.disk_gib:g} GiB (disks only grow)",
            f"不能小于模板磁盘 {template.disk_gib:g} GiB（磁盘只能扩大）",
        )
    return template.name


def submit(session: Session, actor: Actor, who: Who, body: RequestIn) -> VMRequest:
    """A unit admin requests a VM for their own unit."""
    if actor.role is not Role.UNIT_ADMIN or actor.unit_id is None:
        raise errors.Forbidden(
            f"only a unit's security administrator requests VMs, not a {ROLE_NAMES_EN[actor.role]}",
            message_zh=f"只有单位网络安全管理员可以申请虚拟机，{ROLE_NAMES_ZH[actor.role]}不能申请",
            role=actor.role.value,
        )
    unit_id = actor.unit_id
    unit = session.get(Unit, unit_id)
    if unit is None or not unit.active:
        raise errors.Forbidden(
            "your unit is not active; it cannot request VMs", message_zh="本单位已停用，不能申请虚拟机"
        )

    domains: tuple[str, ...] = ()
    if body.system_id is not None:
        if body.system_name is not None:
            raise _invalid(
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
            raise _invalid(
                "system_name",
                "required",
                "give system_id (a registered information system) or system_name with purpose",
                "请填写 system_id（已登记的信息系统），或填写 system_name 和 purpose",
            )
        if body.purpose is None:
            raise _invalid(
                "purpose",
                "required",
                "the purpose (teaching, research or management) is required with system_name",
                "填写 system_name 时须注明用途（教学、科研或管理）",
            )
        purpose, system_name, description = body.purpose.value, body.system_name.strip(), body.description

    conn = _connection_for(session, body.connection_id)
    if body.pool_id is not None:
        _pool_for_request(session, body.pool_id, body.connection_id)
    template_name = _template_name(session, conn, body.template_ref, body.disk_gib)

    requested = Resources(vms=1, vcpus=body.vcpus, memory_gib=body.memory_gib, disk_gib=body.disk_gib)
    quota.lock(session, unit_id)
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
        check_quota(quota.facts(session, unit_id, requested), actor.role, None),
    )
    if not decision.allowed:
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
    return req


def endorse(session: Session, actor: Actor, who: Who, request_id: int) -> VMRequest:
    _authorize(actor, Action.ENDORSE)
    req = get_request(session, actor, request_id)
    before = req.state
    transition(
        session,
        req,
        Action.ENDORSE,
        endorsement_required=center.endorsement_required(session),
        endorsed_by=actor.user_id,
        endorsed_at=utcnow(),
    )
    record(
        session,
        who,
        "request.endorse",
        "vm_request",
        req.id,
        before={"state": before},
        after={"state": req.state},
        unit_id=req.unit_id,
    )
    return req


def _quota_check(
    session: Session, actor: Actor, req: VMRequest, override_reason: str | None
) -> tuple[bool, Any]:
    """Lock, count and decide at approval (and retry): (over quota?, the facts). 403 when refused."""
    quota.lock(session, req.unit_id)
    facts = quota.facts(
        session, req.unit_id, requested_of(req), states=quota.COMMITTED_STATES, exclude=req.id
    )
    verdict = check_quota(facts, actor.role, override_reason)
    if not verdict.allowed:
        raise errors.PolicyDenied(combine(verdict))
    return bool(over_quota(facts)), facts


def _quota_summary(facts: Any) -> dict[str, Any]:
    return {
        "limit": vars(facts.limit),
        "used": vars(facts.used),
        "committed": vars(facts.pending),
        "requested": vars(facts.requested),
    }


def approve(
    session: Session,
    actor: Actor,
    who: Who,
    request_id: int,
    *,
    override_reason: str | None = None,
    pool_id: int | None = None,
) -> VMRequest:
    _authorize(actor, Action.APPROVE)
    req = get_request(session, actor, request_id)
    endorsement = center.endorsement_required(session)
    lifecycle.check(Action.APPROVE, req.state, endorsement_required=endorsement)  # 409 before counting
    if pool_id is not None:
        _pool_for_request(session, pool_id, req.connection_id)
    reason = (override_reason or "").strip()
    overridden, facts = _quota_check(session, actor, req, reason or None)
    before = req.state
    values: dict[str, Any] = {
        "decided_by": actor.user_id,
        "decided_at": utcnow(),
        "override_reason": reason if overridden else "",
    }
    if pool_id is not None:
        values["pool_id"] = pool_id
    transition(session, req, Action.APPROVE, endorsement_required=endorsement, **values)
    record(
        session,
        who,
        "request.approve",
        "vm_request",
        req.id,
        before={"state": before},
        after={
            "state": req.state,
            "pool_id": req.pool_id,
            "quota_override": overridden,
            "override_reason": req.override_reason,
            "quota": _quota_summary(facts),
        },
        detail=f"quota override: {reason}" if overridden else "",
        unit_id=req.unit_id,
    )
    outbox.enqueue(session, PROVISION_TASK, vm_request_id=req.id)
    return req


def reject(session: Session, actor: Actor, who: Who, request_id: int, reason: str) -> VMRequest:
    _authorize(actor, Action.REJECT)
    reason = reason.strip()
    if not reason:
        raise _invalid("reason", "required", "a rejection needs a reason for the unit", "驳回须说明理由")
    req = get_request(session, actor, request_id)
    before = req.state
    transition(
        session, req, Action.REJECT, decided_by=actor.user_id, decided_at=utcnow(), decision_reason=reason
    )
    record(
        session,
        who,
        "request.reject",
        "vm_request",
        req.id,
        before={"state": before},
        after={"state": req.state, "reason": reason},
        unit_id=req.unit_id,
    )
    return req


def cancel(session: Session, actor: Actor, who: Who, request_id: int, reason: str = "") -> VMRequest:
    _authorize(actor, Action.CANCEL)
    req = get_request(session, actor, request_id)
    before = req.state
    transition(session, req, Action.CANCEL, decision_reason=reason.strip())
    record(
        session,
        who,
        "request.cancel",
        "vm_request",
        req.id,
        before={"state": before},
        after={"state": req.state, "reason": reason.strip()},
        unit_id=req.unit_id,
    )
    return req


def retry(
    session: Session, actor: Actor, who: Who, request_id: int, *, override_reason: str | None = None
) -> VMRequest:
    """The center provisions a failed request again. The quota is counted again (the request was
    not counted while failed); an override a center_admin gave at approval still stands."""
    _authorize(actor, Action.RETRY)
    req = get_request(session, actor, request_id)
    lifecycle.check(Action.RETRY, req.state)
    reason = (override_reason or "").strip()
    try:
        overridden, _facts = _quota_check(session, actor, req, reason or None)
    except errors.PolicyDenied:
        if reason or not req.override_reason:
            raise
        overridden, reason = True, req.override_reason
    before = req.state
    values: dict[str, Any] = {"provisioning_attempts": req.provisioning_attempts + 1, "failure_reason": ""}
    if overridden:
        values["override_reason"] = reason
    transition(session, req, Action.RETRY, **values)
    record(
        session,
        who,
        "request.retry",
        "vm_request",
        req.id,
        before={"state": before},
        after={"state": req.state, "attempt": req.provisioning_attempts},
        detail=f"quota override: {reason}" if overridden else "",
        unit_id=req.unit_id,
    )
    outbox.enqueue(session, PROVISION_TASK, vm_request_id=req.id)
    return req


# ---- provisioning (the task's three transactions) ----------------------------------------------


class ProvisioningFailed(Exception):
    """A failure no retry of the same task would cure (no pool, no free address, connection gone)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ProvisionPlan:
    request_id: int
    vm_id: int
    connection: HypervisorConnection
    spec: CloneSpec
    fresh: bool = True  # the placeholder was created by this run (no earlier attempt's VM to resume)
    attempt: int = 1

    def __repr__(self) -> str:  # the spec carries the password: never let it reach a log line
        return f"ProvisionPlan(request_id={self.request_id}, vm_id={self.vm_id}, attempt={self.attempt})"


def _pool_for_provisioning(session: Session, req: VMRequest) -> IPPool:
    if req.pool_id is not None:
        pool = session.get(IPPool, req.pool_id)
        if pool is not None:
            return pool
    pool = network.default_pool(session, req.connection_id)
    if pool is None:
        raise ProvisioningFailed(
            f"no IP pool for hypervisor connection {req.connection_id}: create one bound to the "
            "connection, or approve the request with a pool"
        )
    return pool


def _vm_name(req: VMRequest, unit: Unit | None) -> str:
    prefix = (unit.code if unit is not None else f"unit{req.unit_id}").lower()
    return f"{prefix}-{req.hostname}-{req.id}"[:80]


def _placeholders(session: Session, request_id: int) -> list[VM]:
    return list(
        session.exec(select(VM).where(VM.request_id == request_id, VM.lifecycle == PROVISIONING_LIFECYCLE))
    )


def prepare_provisioning(session: Session, request_id: int) -> ProvisionPlan | None:
    """Step 1. None when there is nothing to do (delivered already, or not approved)."""
    req = session.get(VMRequest, request_id)
    if req is None:
        log.warning("provisioning: request %s does not exist", request_id)
        return None
    if req.state == RequestState.APPROVED:
        transition(session, req, Action.START, provisioning_attempts=req.provisioning_attempts + 1)
        record(
            session,
            PROVISIONER,
            "request.provision",
            "vm_request",
            req.id,
            before={"state": RequestState.APPROVED.value},
            after={"state": req.state, "attempt": req.provisioning_attempts},
            unit_id=req.unit_id,
        )
    elif req.state != RequestState.PROVISIONING:
        log.info("provisioning: request %s is %s, nothing to do", request_id, req.state)
        return None

    conn = session.get(HypervisorConnection, req.connection_id)
    if conn is None or not conn.active:
        raise ProvisioningFailed(f"hypervisor connection {req.connection_id} is not in service")

    existing = _placeholders(session, request_id)
    if existing:
        vm = existing[0]
        assert vm.id is not None
        credential = session.get(DeliveryCredential, vm.id)
        allocation = network.live_allocation_for_vm(session, vm.id)
        pool = session.get(IPPool, allocation.pool_id) if allocation is not None else None
        if credential is None or not credential.password or allocation is None or pool is None:
            raise ProvisioningFailed(
                f"the provisioning record of VM {vm.id} is incomplete; retry the request"
            )
        fresh = False
    else:
        pool = _pool_for_provisioning(session, req)
        try:
            allocation = network.allocate(session, pool, request_id=req.id)
        except network.PoolExhausted as exc:
            raise ProvisioningFailed(exc.message) from exc
        account = admin_account_for(req.template_name, req.template_ref)
        vm = VM(
            unit_id=req.unit_id,
            system_id=req.system_id,
            request_id=req.id,
            connection_id=conn.id or 0,
            hypervisor_ref=f"pending:{marker_of(request_id)}",
            name=_vm_name(req, session.get(Unit, req.unit_id)),
            hostname=req.hostname,
            template_name=req.template_name,
            vcpus=req.vcpus,
            memory_gib=req.memory_gib,
            disk_gib=req.disk_gib,
            ip_address=allocation.address,
            ips=[allocation.address],
            admin_account=account,
            power_state="unknown",
            lifecycle=PROVISIONING_LIFECYCLE,
        )
        session.add(vm)
        session.flush()
        assert vm.id is not None
        allocation.vm_id = vm.id
        session.add(allocation)
        credential = DeliveryCredential(vm_id=vm.id, account=account, password=generate_initial_password())
        session.add(credential)
        session.flush()
        fresh = True

    assert vm.id is not None and credential.password is not None
    net = network.parse_cidr(pool.cidr)
    spec = CloneSpec(
        name=vm.name,
        template_ref=req.template_ref,
        marker=marker_of(request_id),
        vcpus=req.vcpus,
        memory_mib=req.memory_gib * 1024,
        disk_gib=req.disk_gib,
        network=pool.network or None,
        ip=IPSettings(
            address=allocation.address,
            prefix_length=net.prefixlen,
            gateway=pool.gateway,
            dns=tuple(pool.dns or ()),
        ),
        hostname=req.hostname,
        admin_user=credential.account,
        admin_password=credential.password,
        power_on=True,
    )
    return ProvisionPlan(
        request_id=request_id,
        vm_id=vm.id,
        connection=conn,
        spec=spec,
        fresh=fresh,
        attempt=req.provisioning_attempts,
    )


def finish_provisioning(session: Session, request_id: int, vm_id: int, info: VMInfo) -> bool:
    """Step 3 on success: the placeholder becomes the VM, the request is delivered. False when
    another delivery of the task got there first."""
    req = session.get(VMRequest, request_id)
    vm = session.get(VM, vm_id)
    if (
        req is None
        or vm is None
        or req.state != RequestState.PROVISIONING
        or vm.lifecycle != PROVISIONING_LIFECYCLE
    ):
        log.info("provisioning of request %s already concluded", request_id)
        return False
    # An inventory sync between the clone and now records the new VM as unregistered; that row is
    # this VM seen too early. Remove it so the placeholder can take the hypervisor's reference.
    duplicate = session.exec(
        select(VM).where(VM.connection_id == vm.connection_id, VM.hypervisor_ref == info.ref, VM.id != vm.id)
    ).first()
    if duplicate is not None:
        if duplicate.registered or duplicate.unit_id is not None:
            raise RuntimeError(
                f"hypervisor VM {info.ref} made for request {request_id} is already VM {duplicate.id}"
            )
        session.delete(duplicate)
        session.flush()
    now = utcnow()
    vm.hypervisor_ref = info.ref
    vm.name = info.name[:200]
    vm.power_state = str(info.power_state)
    vm.ips = list(info.ips) or list(vm.ips or [])
    vm.macs = [n.mac for n in info.nics if n.mac]
    vm.network_connected = info.network_connected if info.nics else True
    vm.lifecycle = Lifecycle.ACTIVE
    vm.created_at = now
    vm.synced_at = now
    session.add(vm)
    session.flush()
    transition(session, req, Action.DELIVER, delivered_at=now, vm_id=vm.id, failure_reason="")
    delivered = {
        "state": req.state,
        "vm_id": vm.id,
        "hypervisor_ref": vm.hypervisor_ref,
        "ip_address": vm.ip_address,
        "admin_account": vm.admin_account,
        "deadline": str(deadline_of(req, now)),
    }
    record(
        session,
        PROVISIONER,
        "request.deliver",
        "vm_request",
        req.id,
        before={"state": RequestState.PROVISIONING.value},
        after=delivered,
        unit_id=req.unit_id,
    )
    record(
        session,
        PROVISIONER,
        "vm.create",
        "vm",
        vm.id,
        after={
            "name": vm.name,
            "hostname": vm.hostname,
            "request_id": req.id,
            "connection_id": vm.connection_id,
            "hypervisor_ref": vm.hypervisor_ref,
            "ip_address": vm.ip_address,
            "vcpus": vm.vcpus,
            "memory_gib": vm.memory_gib,
            "disk_gib": vm.disk_gib,
            "power_state": vm.power_state,
        },
        unit_id=vm.unit_id,
    )
    return True


def fail_provisioning(session: Session, request_id: int, message: str) -> bool:
    """Step 3 on failure: failed with the message; address released; placeholder and password gone."""
    req = session.get(VMRequest, request_id)
    if req is None or req.state not in lifecycle.TRANSITIONS[Action.FAIL].sources:
        return False
    released = network.release_for_request(session, request_id)
    for vm in _placeholders(session, request_id):
        session.exec(
            update(IPAllocation)
            .where(col(IPAllocation.vm_id) == vm.id)
            .values(vm_id=None)
            .execution_options(synchronize_session="fetch")
        )
        credential = session.get(DeliveryCredential, vm.id)
        if credential is not None:
            session.delete(credential)
        session.flush()
        session.delete(vm)
    session.flush()
    before = req.state
    transition(session, req, Action.FAIL, failure_reason=message[:2000])
    record(
        session,
        PROVISIONER,
        "request.fail",
        "vm_request",
        req.id,
        before={"state": before},
        after={"state": req.state, "released_addresses": released},
        result="failed",
        detail=message,
        unit_id=req.unit_id,
    )
    return True
