"""VMs: listing and reading them (unit-scoped), power operations and decommissioning.

Power operations are a queue per VM. A request records a ``PowerOperation`` (pending) and its audit
row in the request's transaction and enqueues ``vmportal.vm.power`` through the outbox; the task
(:func:`execute_power`) applies it through the VM's adapter. The guarantees, and how they are kept:

* **In order, one at a time per VM.** A task always runs the *earliest* unfinished operation of
  its VM first, so a task delivered early or twice still applies operations in id order. Ids follow
  commit order per VM because requests for one VM take a transaction-scoped advisory lock before
  inserting (on PostgreSQL two concurrent requests could otherwise commit ids 8 before 7).
* **No transaction during the hypervisor call.** The task claims the operation in one short
  transaction (VM row locked, ``SELECT … FOR NO KEY UPDATE`` on PostgreSQL; pending -> running with
  a lease of :data:`POWER_LEASE`), calls the adapter outside any transaction, and records the
  outcome in another: on SQLite the single write lock is never held while a hypervisor works.
* **Never twice.** A finished operation (succeeded/failed) is never applied again. A ``running``
  operation within its lease belongs to the worker applying it: another delivery waits (retries).
  One whose lease ran out was left by a worker that died mid-call; it is applied again, which the
  adapters treat idempotently. A transient hypervisor error gives the claim back (pending).
* **One power rule** (docs/decisions.md "Power semantics"): start, stop and shutdown are
  idempotent (a state that already holds is a succeeded operation, nothing sent to the hypervisor);
  restart and reboot need a running VM (409 naming the state); guest shutdown/reboot need the
  adapter's ``guest_power`` capability (422 on ``action``); a suspended VM is refused by the policy
  (``suspended_lock``) with its reason.
* **Rules re-checked when applied.** Between the request and its execution the center may have
  suspended the VM or decommissioned it; the task re-asks the policy (``power_ops``,
  ``suspended_lock``) and the lifecycle, and fails the operation with the reason if they now refuse.

Row locks are ``FOR NO KEY UPDATE`` rather than ``FOR UPDATE`` so that inserting rows that reference
the VM (operations, allocations) is not blocked behind a running adapter call; a ``FOR UPDATE`` taken
by other code on the VM still waits for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session

from hypervisors.base import (
    POWER_ACTION_ALLOWED_FROM,
    HypervisorError,
    PowerAction,
    PowerState,
    Retriable,
    VMInfo,
)
from policies.base import Decision
from policies.power import SecurityState, check_power
from policies.roles import Actor, Role, is_center
from vmportal.audit.service import Who, record
from vmportal.connection.models import HypervisorConnection
from vmportal.connection.service import adapter_for, get_connection
from vmportal.identity.models import User
from vmportal.jobs import outbox
from vmportal.kit import db, errors
from vmportal.kit.scope import can_see_unit, ensure_visible
from vmportal.unit.models import Unit
from vmportal.vm import mails, repository, schemas
from vmportal.vm.models import VM, DeliveryCredential, Lifecycle, PowerOperation, PowerOpState

log = logging.getLogger(__name__)

POWER_TASK = "vmportal.vm.power"
DECOMMISSION_TASK = "vmportal.vm.decommission"

FINISHED: frozenset[str] = frozenset({PowerOpState.SUCCEEDED, PowerOpState.FAILED})
UNFINISHED: tuple[str, ...] = repository.UNFINISHED_OPS

# A VM deleted behind the portal's back (missing) can still be retired: deletion is idempotent.
_DECOMMISSIONABLE: frozenset[str] = frozenset({Lifecycle.ACTIVE, Lifecycle.MISSING, Lifecycle.DECOMMISSIONED})

# Namespace of the advisory locks that order power requests per VM (pg_advisory_xact_lock(ns, vm)).
#: How long a claimed (running) operation belongs to the worker that claimed it; longer than any
#: adapter call. A worker that died mid-call leaves the operation to be re-applied after it.
POWER_LEASE = timedelta(minutes=10)
#: How long a task waits in place for another worker's operation on the same VM before it retries.
HELD_WAIT = timedelta(seconds=30)
_POWER_LOCK_NAMESPACE = 0x564D50  # "VMP"

_ACTION_ZH = {
    PowerAction.START: "开机",
    PowerAction.STOP: "关机",
    PowerAction.RESTART: "重启",
    PowerAction.SHUTDOWN: "关闭操作系统",
    PowerAction.REBOOT: "重启操作系统",
}


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------


# The list's filters (vmportal.vm.schemas.VMFilters, stated once) and its query
# (vmportal.vm.repository.list_vms) live below this layer; the use case adds nothing to them.
VMFilters = schemas.VMFilters
VMRow = repository.VMRow
escape_like = repository.escape_like


def list_vms(session: Session, actor: Actor, filters: VMFilters) -> tuple[list[VMRow], int]:
    """One page of the VMs the actor may see, with the total (scoping inside the query)."""
    return repository.list_vms(session, actor, filters)


def find_vm(session: Session, actor: Actor, vm_id: int) -> VM:
    """The VM if the actor may see it; 404 for a missing VM and for another unit's alike."""
    vm = session.get(VM, vm_id)
    if vm is None:
        raise errors.NotFound("vm", vm_id)
    ensure_visible(actor, vm.unit_id, "vm", vm_id)
    return vm


def get_vm(session: Session, actor: Actor, vm_id: int) -> VMRow:
    vm = find_vm(session, actor, vm_id)
    unit = session.get(Unit, vm.unit_id) if vm.unit_id is not None else None
    return VMRow(vm, unit.code if unit else None, unit.name_zh if unit else None)


@dataclass(frozen=True)
class OperationRow:
    op: PowerOperation
    username: str | None


def list_operations(
    session: Session, actor: Actor, vm_id: int, *, limit: int = 50, offset: int = 0
) -> tuple[list[OperationRow], int]:
    """The VM's power history, newest first: who, what, when, result, error."""
    find_vm(session, actor, vm_id)
    rows, total = repository.operations_page(session, vm_id, limit=limit, offset=offset)
    return [OperationRow(op, username) for op, username in rows], total


def get_operation(session: Session, actor: Actor, operation_id: int) -> OperationRow:
    row = repository.operation_with_owner(session, operation_id)
    if row is None or not can_see_unit(actor, row[2]):
        raise errors.NotFound("power operation", operation_id)
    return OperationRow(row[0], row[1])


# ------------------------------------------------------------------------------------------------
# Locks and shared checks
# ------------------------------------------------------------------------------------------------


lock_vm = repository.lock_vm


def _order_power_requests(session: Session, vm_id: int) -> None:
    # See the module docstring: per VM, operation ids are handed out in commit order.
    repository.order_power_requests(session, vm_id, _POWER_LOCK_NAMESPACE)


def _conflict(state: str, action: str, message_en: str, message_zh: str) -> errors.StateConflict:
    exc = errors.StateConflict("vm", state, action, message=message_en)
    exc.message_zh = message_zh
    return exc


def _ensure_active(vm: VM, action: str) -> None:
    if vm.lifecycle != Lifecycle.ACTIVE:
        raise _conflict(
            vm.lifecycle,
            action,
            f"VM {vm.id} ({vm.name}) is {vm.lifecycle}: it takes no more power operations",
            f"虚拟机 {vm.id}（{vm.name}）的状态为“{vm.lifecycle}”，不能再执行“{action}”操作",
        )


def _ensure_power_state_allows(vm: VM, action: PowerAction) -> None:
    allowed = POWER_ACTION_ALLOWED_FROM[action]
    try:
        current = PowerState(vm.power_state)
    except ValueError:
        current = PowerState.UNKNOWN
    if current not in allowed:
        needs = " or ".join(sorted(s.value for s in allowed))
        raise _conflict(
            current.value,
            action.value,
            f"cannot {action.value} VM {vm.id} ({vm.name}): its power state is '{current.value}', "
            f"{action.value} needs it {needs}",
            f"虚拟机 {vm.id}（{vm.name}）当前电源状态为“{current.value}”，不能{_ACTION_ZH[action]}"
            f"（需要处于 {needs} 状态）",
        )


def _policy_decision(actor: Actor, vm: VM, action: PowerAction) -> Decision:
    # An unregistered VM (no unit yet) is nobody's but the center's: -1 matches no unit.
    return check_power(actor, vm.unit_id if vm.unit_id is not None else -1, vm.security_state, action.value)


def _record_denial(who: Who, vm_id: int, unit_id: int | None, action: str, reason: str, detail: str) -> None:
    """Keep a refused attempt in the audit log. The request's transaction is rolled back by the error
    about to be raised, so the row is written in a transaction of its own."""
    with db.transaction() as s:
        record(
            s,
            who,
            "vm.power.request",
            "vm",
            vm_id,
            after={"action": action, "reason": reason},
            result="denied",
            detail=detail,
            unit_id=unit_id,
        )


def _denial_detail(decision: Decision) -> str:
    return " ".join(f"[{d.rule}] {d.message_en}" for d in decision.denials)


# ------------------------------------------------------------------------------------------------
# Containment holds (the incidents domain, above this one, says which incident holds a VM)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hold:
    """A security incident whose containment holds the VM."""

    incident_id: int
    action: str  # the containment carried out: isolate_network, power_off, block_web
    state: str  # the incident's state (containing, contained, submitted, restoring)


#: Registered by ``vmportal.incidents`` at import: the incident holding a VM, if any.
HoldLookup = Callable[[Session, int], "Hold | None"]
_HOLD_LOOKUPS: list[HoldLookup] = []

#: Power actions that would undo a containment (bring the VM up). Stopping a contained VM is
#: always allowed: it only makes it safer.
_UNDOING_ACTIONS = frozenset({PowerAction.START, PowerAction.RESTART, PowerAction.REBOOT})

_CONTAINMENT_ZH = {"isolate_network": "断开网络", "power_off": "关机", "block_web": "断开WEB服务"}


def on_hold_lookup(lookup: HoldLookup) -> HoldLookup:
    if lookup not in _HOLD_LOOKUPS:
        _HOLD_LOOKUPS.append(lookup)
    return lookup


def held_by(session: Session, vm_id: int) -> Hold | None:
    """The incident whose containment holds ``vm_id`` (None when none does)."""
    for lookup in _HOLD_LOOKUPS:
        hold = lookup(session, vm_id)
        if hold is not None:
            return hold
    return None


def ensure_not_held(session: Session, vm: VM, action: str, action_zh: str) -> None:
    """409 naming the incident when a containment holds ``vm``: a contained VM is released through
    its incident (dismissed as a false positive with a recorded reason, or its rectification
    verified and accepted), which undoes exactly what the containment did and closes the record;
    a bare power-on or reconnect would leave the incident saying "contained" over a running VM."""
    assert vm.id is not None
    hold = held_by(session, vm.id)
    if hold is None:
        return
    raise held_conflict(vm, hold, action, action_zh)


def held_conflict(vm: VM, hold: Hold, action: str, action_zh: str) -> errors.StateConflict:
    """The 409 of :func:`ensure_not_held` for a VM ``hold`` holds."""
    how = _CONTAINMENT_ZH.get(hold.action, hold.action)
    exc = errors.StateConflict(
        "vm",
        vm.security_state,
        action,
        message=(
            f"VM {vm.id} ({vm.name}) is held by security incident #{hold.incident_id} "
            f"(containment {hold.action}, incident {hold.state}): it cannot be {action} here. Release "
            f"it through the incident: dismiss it as a false positive with a reason "
            f"(POST /api/v1/incidents/{hold.incident_id}/dismiss) or accept the unit's rectification "
            f"report (POST /api/v1/rectifications/{{id}}/accept); either undoes the containment"
        ),
    )
    exc.message_zh = (
        f"虚拟机 {vm.id}（{vm.name}）正被安全事件 #{hold.incident_id} 处置（{how}），不能在此{action_zh}。"
        f"请通过该安全事件解除：判定为误报并说明理由，或审核通过单位提交的整改报告；解除时平台会撤销处置"
    )
    exc.extra["incident_id"] = hold.incident_id
    exc.extra["containment"] = hold.action
    return exc


def policy_denied(session: Session, vm: VM, decision: Decision) -> errors.PolicyDenied:
    """The 403 of a denied power or network request; when the VM's security lock is among the
    reasons and an incident's containment holds the VM, the answer names that incident and what
    releases it, so a unit reads which rectification report the center waits for rather than a
    bare "suspended for security"."""
    exc = errors.PolicyDenied(decision)
    if vm.id is None or not any(d.rule == "suspended_lock" for d in decision.denials):
        return exc
    hold = held_by(session, vm.id)
    if hold is None:
        return exc
    how = _CONTAINMENT_ZH.get(hold.action, hold.action)
    exc.message += (
        f" The VM is held by security incident #{hold.incident_id} (containment {hold.action}, "
        f"incident {hold.state}): the center releases it once the unit's rectification report "
        "for that incident is verified."
    )
    exc.message_zh += (
        f"该虚拟机正被安全事件 #{hold.incident_id} 处置（{how}），"
        "中心审核通过贵单位针对该事件提交的整改报告后解除。"
    )
    exc.extra["incident_id"] = hold.incident_id
    exc.extra["containment"] = hold.action
    return exc


# ------------------------------------------------------------------------------------------------
# Warnings on an accepted power request (domains above this one, e.g. maintenance, say why it may fail)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerWarning:
    """Why an accepted power operation may fail (e.g. a planned outage of the VM's platform)."""

    code: str  # e.g. "maintenance"
    message_en: str
    message_zh: str
    detail: dict[str, object]


#: Registered by ``vmportal.maintenance`` at import: warnings for a power request on a VM, now.
WarningLookup = Callable[[Session, int], "list[PowerWarning]"]
_WARNING_LOOKUPS: list[WarningLookup] = []


def on_power_warning(lookup: WarningLookup) -> WarningLookup:
    if lookup not in _WARNING_LOOKUPS:
        _WARNING_LOOKUPS.append(lookup)
    return lookup


def power_warnings(session: Session, vm_id: int) -> list[PowerWarning]:
    """What the registered look-ups say about a power operation on ``vm_id`` now (never a refusal)."""
    return [w for lookup in _WARNING_LOOKUPS for w in lookup(session, vm_id)]


# ------------------------------------------------------------------------------------------------
# Power operations: request
# ------------------------------------------------------------------------------------------------


def request_power(
    session: Session, actor: Actor, who: Who, vm_id: int, action: PowerAction, reason: str = ""
) -> PowerOperation:
    """A user asks for a power action: scoping (404), policy (403), lifecycle and power state (409),
    then a pending operation, its audit row and its task, all in the caller's transaction."""
    action = PowerAction(action)
    vm = session.get(VM, vm_id)
    if vm is None:
        raise errors.NotFound("vm", vm_id)
    unit_id = vm.unit_id
    if not can_see_unit(actor, unit_id):
        # Answered exactly like a missing VM, but the center sees the probe in the audit log.
        session.rollback()  # ends the request's (read-only) transaction: SQLite has one writer
        _record_denial(who, vm_id, unit_id, action.value, reason, "VM of another unit (answered 404)")
        raise errors.NotFound("vm", vm_id)
    decision = _policy_decision(actor, vm, action)
    if not decision.allowed:
        denied = policy_denied(session, vm, decision)  # read before the rollback ends the session
        session.rollback()
        _record_denial(who, vm_id, unit_id, action.value, reason, _denial_detail(decision))
        raise denied

    _order_power_requests(session, vm_id)
    session.refresh(vm)  # the state as of now, after any operation that finished meanwhile
    _ensure_active(vm, action.value)
    if action in _UNDOING_ACTIONS:
        ensure_not_held(session, vm, action.value, _ACTION_ZH[action])
    _ensure_power_state_allows(vm, action)
    _ensure_capable(session, vm, action)
    if _already_holds(session, vm, action):
        return _new_operation(
            session, vm, action, who=who, reason=reason, requested_by=actor.user_id, noop=True
        )
    return _new_operation(session, vm, action, who=who, reason=reason, requested_by=actor.user_id)


#: The power rule (docs/decisions.md "Power semantics"): start, stop and shutdown name a state to be
#: in, so asking for the state a VM is already in is a success that sends nothing to the hypervisor;
#: restart and reboot name an event on a running VM, so they need one (409 naming the state).
_TARGET_STATE: dict[PowerAction, PowerState] = {
    PowerAction.START: PowerState.RUNNING,
    PowerAction.STOP: PowerState.STOPPED,
    PowerAction.SHUTDOWN: PowerState.STOPPED,
}
_GUEST_ACTIONS = frozenset({PowerAction.SHUTDOWN, PowerAction.REBOOT})


def _already_holds(session: Session, vm: VM, action: PowerAction) -> bool:
    """The VM is already where the action would leave it, and no earlier operation is queued that
    could change that before this one runs."""
    target = _TARGET_STATE.get(action)
    if target is None or vm.power_state != target.value or vm.id is None:
        return False
    return not repository.has_unfinished_operation(session, vm.id)


def _ensure_capable(session: Session, vm: VM, action: PowerAction) -> None:
    """Guest shutdown and reboot need the guest's cooperation (tools, agent): refused up front when
    the connection's adapter cannot ask for it."""
    if action not in _GUEST_ACTIONS:
        return
    if adapter_for(get_connection(session, vm.connection_id)).capabilities.guest_power:
        return
    raise errors.InvalidField(
        "action",
        "guest_power",
        f"{action.value} needs guest power operations, which the hypervisor connection of VM "
        f"{vm.id} does not offer; use stop or restart",
        message_zh=f"虚拟机 {vm.id} 所在的虚拟化平台连接不支持客户机电源操作，不能{_ACTION_ZH[action]}；"
        "请改用强制关机或强制重启",
    )


def enqueue_power(
    session: Session,
    vm_id: int,
    action: PowerAction,
    *,
    who: Who,
    reason: str,
    requested_by: int | None = None,
) -> PowerOperation:
    """Queue a power action decided by the center or the portal itself (no policy check: the caller
    is the authority). Runs after the VM's earlier operations, like any request."""
    action = PowerAction(action)
    _order_power_requests(session, vm_id)
    vm = session.get(VM, vm_id)
    if vm is None:
        raise errors.NotFound("vm", vm_id)
    _ensure_active(vm, action.value)
    return _new_operation(session, vm, action, who=who, reason=reason, requested_by=requested_by)


def _new_operation(
    session: Session,
    vm: VM,
    action: PowerAction,
    *,
    who: Who,
    reason: str,
    requested_by: int | None,
    noop: bool = False,
) -> PowerOperation:
    """A pending operation and its task; with ``noop`` (the state already holds) an operation that
    succeeded at once, so the answer and the operation's record look like any other success."""
    assert vm.id is not None
    now = db.utcnow()
    op = PowerOperation(
        vm_id=vm.id,
        action=action.value,
        requested_by=requested_by,
        reason=reason,
        state=PowerOpState.SUCCEEDED if noop else PowerOpState.PENDING,
        power_before=vm.power_state,
        power_after=vm.power_state if noop else "",
        started_at=now if noop else None,
        finished_at=now if noop else None,
    )
    session.add(op)
    session.flush()
    record(
        session,
        who,
        "vm.power.request",
        "vm",
        vm.id,
        before={"power_state": vm.power_state},
        after={"operation_id": op.id, "action": action.value, "reason": reason}
        | ({"noop": True} if noop else {}),
        unit_id=vm.unit_id,
    )
    if not noop:
        outbox.enqueue(session, POWER_TASK, operation_id=op.id)
    return op


# ------------------------------------------------------------------------------------------------
# Power operations: execution (the task body)
# ------------------------------------------------------------------------------------------------


def execute_power(operation_id: int) -> str:
    """Apply one power operation, after every earlier unfinished operation of the same VM.

    Idempotent; safe to run twice or concurrently. Returns what happened, for logs. Raises
    :class:`Retriable` when the hypervisor is temporarily unavailable (the task base retries).
    """
    # A finished operation stops here; the claim (pending -> running) is :func:`_claim`'s.
    with db.transaction() as s:
        op = s.get(PowerOperation, operation_id)
        if op is None:
            return "unknown operation"
        if op.state in FINISHED:
            return f"already {op.state}"
        vm_id = op.vm_id

    waited = 0.0
    pause = 0.05
    while True:
        try:
            outcome = _run_next(vm_id, up_to=operation_id)
        except _HeldByAnother as held:
            # An earlier operation of this VM is being applied by another worker right now; it
            # usually finishes within seconds, so wait here (short, growing pauses) rather than hand
            # the task back to the broker's retry back-off, which would leave a queue of operations
            # on one VM waiting minutes. After HELD_WAIT the task base retries as usual.
            if waited >= HELD_WAIT.total_seconds():
                raise Retriable(str(held)) from None
            time.sleep(pause)
            waited += pause
            pause = min(pause * 2, 1.0)
            continue
        if outcome is None or outcome[0] == operation_id:
            return outcome[1] if outcome else "already finished"


class _HeldByAnother(Exception):
    """The VM's earliest unfinished operation is claimed by another worker within its lease."""


def _run_next(vm_id: int, *, up_to: int) -> tuple[int, str] | None:
    """Apply the earliest unfinished operation of the VM with id <= ``up_to``. None when there is none.

    Three steps, so that no transaction is open while the hypervisor works (on SQLite a transaction
    holds the database's only write lock; a slow adapter call would stall every writer): claim the
    operation and re-check the rules in one short transaction, call the adapter outside any, record
    the outcome in another short transaction.
    """
    with db.transaction() as s:
        claimed = _claim(s, vm_id, up_to)
        if claimed is None:
            return None
        op_id, work = claimed
        if isinstance(work, str):  # refused or finished in the claim
            return op_id, work
        conn, ref, action = work
    try:
        info: VMInfo | None = adapter_for(conn).power(ref, action)
        failure = ""
    except Retriable as exc:
        # Give the claim back (pending again), so the retry may take it at once; say why it waits.
        _release(op_id, exc)
        raise
    except HypervisorError as exc:
        log.info("power %s of VM %s failed: %s", action.value, vm_id, exc.message)
        info, failure = None, exc.message
    with db.transaction() as s:
        vm = lock_vm(s, vm_id)
        op = s.get(PowerOperation, op_id, populate_existing=True)
        assert op is not None
        if op.state in FINISHED:  # another delivery recorded it meanwhile
            return op_id, str(op.state)
        who, _ = _requester(s, op)
        return op_id, _finish(s, op, vm, who=who, info=info, error=failure)


def _claim(
    session: Session, vm_id: int, up_to: int
) -> tuple[int, str | tuple[HypervisorConnection, str, PowerAction]] | None:
    """Step 1: lock the VM, take its earliest unfinished operation, re-check lifecycle and policy
    (finishing the operation as refused here), mark it running. Returns what the adapter call needs:
    the connection (detached from the session), the VM's reference and the action."""
    vm = lock_vm(session, vm_id)
    op = repository.earliest_unfinished_operation(session, vm_id, up_to=up_to)
    if op is None:
        return None
    assert op.id is not None
    if vm is None:  # cannot happen with the foreign key; keep the op from hanging anyway
        return op.id, _finish(session, op, None, error=f"VM {vm_id} no longer exists")
    if (
        op.state == PowerOpState.RUNNING
        and op.started_at is not None
        and op.started_at > db.utcnow() - POWER_LEASE
    ):
        # Claimed by a worker that is still within its lease: wait for its outcome (the task base
        # retries) rather than apply the same action a second time.
        raise _HeldByAnother(f"power operation {op.id} of VM {vm_id} is being applied by another worker")
    who, actor = _requester(session, op)
    action = PowerAction(op.action)
    op.state = PowerOpState.RUNNING
    op.started_at = db.utcnow()  # the lease of this claim
    op.power_before = vm.power_state
    if vm.lifecycle != Lifecycle.ACTIVE:
        return op.id, _finish(
            session, op, vm, who=who, error=f"VM {vm.id} is {vm.lifecycle}; the operation was not applied"
        )
    if actor is not None and not is_center(actor.role):
        # The VM may have been suspended (or the user's role changed) since the request was accepted.
        decision = _policy_decision(actor, vm, action)
        if not decision.allowed:
            return op.id, _finish(session, op, vm, who=who, error=_denial_detail(decision), result="denied")
    if actor is not None and action in _UNDOING_ACTIONS:
        # Contained since the request was accepted: the incident decides now, not the queue.
        hold = held_by(session, vm_id)
        if hold is not None:
            error = f"held by security incident #{hold.incident_id} ({hold.action}); not applied"
            return op.id, _finish(session, op, vm, who=who, error=error, result="denied")
    conn = get_connection(session, vm.connection_id)
    session.add(op)
    session.flush()
    session.expunge(conn)  # used after this transaction ends, for the adapter call only
    return op.id, (conn, vm.hypervisor_ref, action)


def _release(op_id: int, exc: Retriable) -> None:
    with db.transaction() as s:
        repository.release_operation(s, op_id, f"hypervisor temporarily unavailable, retrying: {exc.message}")


def _requester(session: Session, op: PowerOperation) -> tuple[Who, Actor | None]:
    if op.requested_by is None:
        return Who.system(), None
    user = session.get(User, op.requested_by)
    if user is None or user.id is None:
        return Who(actor=f"user:{op.requested_by}", actor_id=op.requested_by), None
    actor = Actor(user_id=user.id, role=Role(user.role), unit_id=user.unit_id)
    return Who(actor=user.username, actor_id=user.id, role=user.role), actor


def _finish(
    session: Session,
    op: PowerOperation,
    vm: VM | None,
    *,
    who: Who | None = None,
    info: VMInfo | None = None,
    error: str = "",
    result: str = "failed",
) -> str:
    op.finished_at = db.utcnow()
    before = {"power_state": op.power_before}
    if info is not None and vm is not None:
        _store_observed(vm, info)
        op.state = PowerOpState.SUCCEEDED
        op.power_after = str(info.power_state)
        op.error = ""
        result = "ok"
    else:
        op.state = PowerOpState.FAILED
        op.error = error[:2000]
        op.power_after = vm.power_state if vm is not None else ""
    session.add(op)
    if vm is not None:
        session.add(vm)
    record(
        session,
        who or Who.system(),
        "vm.power",
        "vm",
        op.vm_id,
        before=before,
        after={
            "operation_id": op.id,
            "action": op.action,
            "state": op.state,
            "power_state": op.power_after,
            "version": vm.version if vm is not None else None,
        },
        result=result,
        detail=op.error,
        unit_id=vm.unit_id if vm is not None else None,
    )
    mails.power_finished(session, op, vm)
    return str(op.state)


def _store_observed(vm: VM, info: VMInfo) -> None:
    """What the hypervisor reported after a change: power and network state, addresses."""
    vm.power_state = str(info.power_state)
    vm.network_connected = info.network_connected
    if info.ips:
        vm.ips = list(info.ips)
    macs = [n.mac for n in info.nics if n.mac]
    if macs:
        vm.macs = macs
    vm.synced_at = db.utcnow()
    vm.version += 1


def apply_power(
    session: Session,
    vm_id: int,
    action: PowerAction,
    *,
    who: Who,
    reason: str,
    requested_by: int | None = None,
) -> PowerOperation:
    """Power a VM now, in the caller's transaction (for tasks such as containment and restore).

    Locks the VM, records an operation (``requested_by`` None: the portal itself), calls the adapter
    and records the confirmed result; the returned operation is ``succeeded`` or ``failed`` with the
    adapter's message. No policy check: the caller is the center's own workflow. It does not wait for
    the VM's queued operations: containment must not sit behind a unit's pending start, which the
    queue then re-checks against the new security state. :class:`Retriable` propagates (the caller's
    transaction rolls back, the caller retries).
    """
    action = PowerAction(action)
    vm = lock_vm(session, vm_id)
    if vm is None:
        raise errors.NotFound("vm", vm_id)
    _ensure_active(vm, action.value)
    assert vm.id is not None
    op = PowerOperation(
        vm_id=vm.id,
        action=action.value,
        requested_by=requested_by,
        reason=reason,
        state=PowerOpState.RUNNING,
        started_at=db.utcnow(),
        power_before=vm.power_state,
    )
    session.add(op)
    session.flush()
    record(
        session,
        who,
        "vm.power.request",
        "vm",
        vm.id,
        before={"power_state": vm.power_state},
        after={"operation_id": op.id, "action": action.value, "reason": reason},
        unit_id=vm.unit_id,
    )
    conn = get_connection(session, vm.connection_id)
    try:
        info = adapter_for(conn).power(vm.hypervisor_ref, action)
    except Retriable:
        raise
    except HypervisorError as exc:
        _finish(session, op, vm, who=who, error=exc.message)
        return op
    _finish(session, op, vm, who=who, info=info)
    return op


# ------------------------------------------------------------------------------------------------
# Security state (set by the security workflow)
# ------------------------------------------------------------------------------------------------


def set_security_state(
    session: Session, vm_id: int, state: SecurityState, *, who: Who, reason: str = "", detail: str = ""
) -> VM:
    """Move the VM's security state (normal, suspended, rectification_submitted, restored) under the
    VM's lock, bump its version and audit the change. The caller decides whether the move is allowed
    (the incident workflow); this only records it consistently."""
    state = SecurityState(state)
    vm = lock_vm(session, vm_id)
    if vm is None:
        raise errors.NotFound("vm", vm_id)
    before = vm.security_state
    if before == state:
        return vm
    vm.security_state = state.value
    vm.version += 1
    session.add(vm)
    record(
        session,
        who,
        "vm.security_state",
        "vm",
        vm_id,
        before={"security_state": before},
        after={"security_state": state.value, "reason": reason, "version": vm.version},
        detail=detail or reason,
        unit_id=vm.unit_id,
    )
    return vm


def observe(session: Session, vm: VM, info: VMInfo) -> None:
    """Store what the hypervisor reported for a VM (for tasks that changed it, e.g. NIC isolation).
    The caller holds :func:`lock_vm`."""
    _store_observed(vm, info)
    session.add(vm)


# ------------------------------------------------------------------------------------------------
# Decommission
# ------------------------------------------------------------------------------------------------


def request_decommission(session: Session, actor: Actor, who: Who, vm_id: int, reason: str) -> VM:
    """The center retires a VM. It is closed to power operations at once (lifecycle decommissioned);
    the task deletes it on the hypervisor, releases its address and stamps ``decommissioned_at``.
    Asking again while the deletion is unfinished (e.g. it failed) re-queues it."""
    if not is_center(actor.role):
        raise errors.Forbidden("only the center decommissions VMs", message_zh="只有信息中心可以回收虚拟机")
    _order_power_requests(session, vm_id)
    vm = lock_vm(session, vm_id)
    if vm is None:
        raise errors.NotFound("vm", vm_id)
    if vm.lifecycle not in _DECOMMISSIONABLE:
        # A delivery still in progress owns its placeholder row; retiring it now would orphan the clone.
        raise _conflict(
            vm.lifecycle,
            "decommission",
            f"VM {vm.id} ({vm.name}) is {vm.lifecycle}: wait until its delivery has finished or failed",
            f"虚拟机 {vm.id}（{vm.name}）的状态为“{vm.lifecycle}”，请待交付完成或失败后再回收",
        )
    if vm.lifecycle == Lifecycle.DECOMMISSIONED and vm.decommissioned_at is not None:
        raise _conflict(
            vm.lifecycle,
            "decommission",
            f"VM {vm.id} ({vm.name}) is already decommissioned",
            f"虚拟机 {vm.id}（{vm.name}）已经回收",
        )
    before = {"lifecycle": vm.lifecycle, "power_state": vm.power_state}
    vm.lifecycle = Lifecycle.DECOMMISSIONED
    vm.version += 1
    session.add(vm)
    record(
        session,
        who,
        "vm.decommission.request",
        "vm",
        vm_id,
        before=before,
        after={"lifecycle": vm.lifecycle, "reason": reason},
        detail=reason,
        unit_id=vm.unit_id,
    )
    outbox.enqueue(session, DECOMMISSION_TASK, vm_id=vm_id)
    return vm


def execute_decommission(vm_id: int) -> str:
    """Delete the VM on its hypervisor (idempotent: an absent VM counts as deleted), release its IP
    allocation, erase any uncollected initial password, stamp ``decommissioned_at``. Idempotent."""
    from vmportal.network import service as network

    with db.transaction() as s:
        vm = lock_vm(s, vm_id)
        if vm is None:
            return "unknown vm"
        if vm.lifecycle != Lifecycle.DECOMMISSIONED:
            return f"not decommissioned ({vm.lifecycle})"
        if vm.decommissioned_at is not None:
            return "already done"
        conn = get_connection(s, vm.connection_id)
        try:
            adapter_for(conn).delete(vm.hypervisor_ref)
        except Retriable:
            raise
        except HypervisorError as exc:
            record(
                s,
                Who.system(),
                "vm.decommission",
                "vm",
                vm_id,
                result="failed",
                detail=exc.message,
                unit_id=vm.unit_id,
            )
            return "failed"
        network.release_for_vm(s, vm_id)
        credential = s.get(DeliveryCredential, vm_id)
        if credential is not None and credential.password is not None:
            credential.password = None
            s.add(credential)
        before = {"power_state": vm.power_state, "decommissioned_at": None}
        vm.decommissioned_at = db.utcnow()
        vm.power_state = PowerState.STOPPED.value
        vm.network_connected = False
        vm.version += 1
        s.add(vm)
        # Operations still queued for the VM will never run: close them with the reason.
        for op in repository.unfinished_operations(s, vm_id):
            op.state = PowerOpState.FAILED
            op.finished_at = db.utcnow()
            op.error = f"VM {vm_id} was decommissioned before the operation ran"
            s.add(op)
        record(
            s,
            Who.system(),
            "vm.decommission",
            "vm",
            vm_id,
            before=before,
            after={
                "power_state": vm.power_state,
                "decommissioned_at": vm.decommissioned_at.isoformat(),
                "ip_address": vm.ip_address,
            },
            detail="deleted on the hypervisor, address released",
            unit_id=vm.unit_id,
        )
        return "done"
