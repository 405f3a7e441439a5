"""Cutting and restoring a VM's network: ``POST /vms/{vm_id}/network`` (the center's action).

Every virtual NIC of the VM is disconnected (or connected again) on the hypervisor, together with
its connect-at-power-on flag, so an isolated VM stays isolated through a reboot
(``HypervisorAdapter.set_network``: vSphere ``connectable.connected``/``startConnected``, Proxmox
``link_down`` on every ``netN``). The answer is the NIC state the hypervisor reports afterwards,
not the intent: a NIC that did not follow is a 502 naming it.

Who: center_admin and center_operator. Everyone else gets 403 from the power rules, decided by
the policy layer: ``power_ops`` (cutting or restoring a unit's network is a containment measure
the center takes, never the unit; an auditor only reads) and, for a reconnect of a VM suspended for
security, ``suspended_lock`` as well. A unit's user asking about another unit's VM gets 404, as
everywhere. Refusals are kept in the audit log (``vm.network.request``, result ``denied``).

Reconnecting a VM the security workflow has suspended is refused with 409 naming the security
state: such a VM comes back through its incident's restore, which checks the rectification and
undoes exactly what the containment did; a bare reconnect here would leave the incident believing
the VM is still contained. Cutting the network of any active VM is always possible.

The VM's row is locked (:func:`vmportal.vm.service.lock_vm`) for the length of the hypervisor
call, so a power operation or a containment of the same VM waits for it instead of interleaving.
"""

from __future__ import annotations

import logging

from sqlmodel import Session

from hypervisors.base import HypervisorError, Retriable, VMInfo
from policies.base import Decision, Verdict, combine
from policies.power import (
    LOCKED_STATES,
    POWER_RULE,
    VMAction,
    check_power_ops,
    check_suspended_lock,
)
from policies.roles import Actor, is_center
from vmportal.audit.service import Who, record
from vmportal.connection.service import adapter_for, get_connection
from vmportal.kit import db, errors
from vmportal.kit.scope import can_see_unit
from vmportal.vm import service as vm_service
from vmportal.vm.models import VM, Lifecycle
from vmportal.vm.service.power import ensure_not_held, policy_denied

log = logging.getLogger(__name__)

# ---- policy ----------------------------------------------------------------------------------------


def _center_only() -> Verdict:
    return POWER_RULE.deny(
        message_zh=(
            "断开或恢复虚拟机网络是信息中心的安全处置措施，只能由信息中心执行；"
            "单位用户不能断开或恢复网络。如需恢复，请按整改流程提交整改报告。"
        ),
        message_en=(
            "Cutting or restoring a VM's network is a containment measure taken by the center only; "
            "a unit's users can neither cut nor restore it. To have it restored, follow the "
            "rectification procedure."
        ),
    )


def decide(actor: Actor, vm: VM, connected: bool) -> Decision:
    """The power rules for a network change: the center may; nobody else, ever.

    ``check_power_ops`` answers for auditors and other units; a unit's own admin, whom it allows
    to power the VM, is denied by the same rule here, with the reason. A reconnect of a suspended
    VM also names ``suspended_lock``, so the unit reads why the VM stays cut off.
    """
    unit_id = vm.unit_id if vm.unit_id is not None else -1  # unregistered: nobody's but the center's
    ops = check_power_ops(actor, unit_id)
    verdicts: list[Verdict] = [ops if is_center(actor.role) or not ops.allowed else _center_only()]
    if connected:
        verdicts.append(check_suspended_lock(actor, vm.security_state, VMAction.RECONNECT))
    return combine(*verdicts)


def _record_refusal(
    who: Who, vm_id: int, unit_id: int | None, connected: bool, reason: str, detail: str, result: str
) -> None:
    """Keep a refused or failed attempt: the request's transaction is rolled back by the error about
    to be raised, so the row is written in a transaction of its own."""
    with db.transaction() as s:
        record(
            s,
            who,
            "vm.network.request",
            "vm",
            vm_id,
            after={"connected": connected, "reason": reason},
            result=result,
            detail=detail,
            unit_id=unit_id,
        )


# ---- the change ------------------------------------------------------------------------------------


def nics(info: VMInfo) -> list[dict[str, object]]:
    return [
        {
            "key": n.key,
            "mac": n.mac,
            "network": n.network,
            "connected": n.connected,
            "start_connected": n.start_connected,
        }
        for n in info.nics
    ]


def _unconfirmed(info: VMInfo, connected: bool) -> str:
    """What the hypervisor's answer contradicts, or "" when it confirms the change."""
    if connected and not info.nics:
        return "the VM has no network adapter to connect"
    wrong = [n.key for n in info.nics if n.connected != connected or n.start_connected != connected]
    if wrong:
        state = "disconnected" if connected else "connected"
        return f"NIC(s) {', '.join(wrong)} still {state} after the change"
    return ""


def change_network(
    session: Session, actor: Actor, who: Who, vm_id: int, connected: bool, reason: str
) -> tuple[VM, VMInfo, bool]:
    """Scoping (404), policy (403), lifecycle and security state (409), then the hypervisor call
    under the VM's lock; the confirmed state is stored and audited. Hypervisor trouble is a 502
    with the adapter's message (and an audit row of its own)."""
    reason = reason.strip()
    if not reason:
        raise errors.InvalidField(
            "reason",
            "required",
            "say why the network is cut or restored",
            message_zh="请说明断开或恢复网络的原因",
        )
    vm = session.get(VM, vm_id)
    if vm is None:
        raise errors.NotFound("vm", vm_id)
    unit_id = vm.unit_id
    if not can_see_unit(actor, unit_id):
        session.rollback()  # ends the (read-only) request transaction: SQLite has one writer
        _record_refusal(who, vm_id, unit_id, connected, reason, "VM of another unit (answered 404)", "denied")
        raise errors.NotFound("vm", vm_id)
    decision = decide(actor, vm, connected)
    if not decision.allowed:
        denied = policy_denied(session, vm, decision)  # read before the rollback ends the session
        session.rollback()
        detail = " ".join(f"[{d.rule}] {d.message_en}" for d in decision.denials)
        _record_refusal(who, vm_id, unit_id, connected, reason, detail, "denied")
        raise denied

    locked = vm_service.lock_vm(session, vm_id)
    if locked is None:
        raise errors.NotFound("vm", vm_id)
    vm = locked
    if vm.lifecycle != Lifecycle.ACTIVE:
        raise errors.StateConflict(
            "vm",
            vm.lifecycle,
            "network",
            message=f"VM {vm.id} ({vm.name}) is {vm.lifecycle}: its network can no longer be changed",
        )
    if connected:
        ensure_not_held(session, vm, "reconnect", "恢复网络")
    if connected and vm.security_state in {s.value for s in LOCKED_STATES}:
        exc = errors.StateConflict(
            "vm",
            vm.security_state,
            "reconnect",
            message=(
                f"VM {vm.id} ({vm.name}) is {vm.security_state} for a security incident: it is "
                f"reconnected by accepting the unit's rectification report or dismissing the incident "
                f"(GET /api/v1/incidents?vm_id={vm.id}&active=true), which undoes the containment"
            ),
        )
        exc.message_zh = (
            f"虚拟机 {vm.id}（{vm.name}）因安全事件处于“{vm.security_state}”状态，"
            "须通过安全事件的恢复流程（核实整改后）恢复网络，不能在此直接恢复"
        )
        raise exc

    previously = vm.network_connected
    conn = get_connection(session, vm.connection_id)
    conn_name, conn_id = conn.name, conn.id  # the objects expire when a failure rolls back
    verb, verb_zh = ("restore", "恢复") if connected else ("cut", "断开")
    try:
        info = adapter_for(conn).set_network(vm.hypervisor_ref, connected)
        problem = _unconfirmed(info, connected)
    except HypervisorError as exc:
        session.rollback()
        _record_refusal(who, vm_id, unit_id, connected, reason, exc.message, "failed")
        log.info("network %s of VM %s failed: %s", verb, vm_id, exc.message)
        retry = " (temporary: try again shortly)" if isinstance(exc, Retriable) else ""
        raise errors.UpstreamError(
            f"could not {verb} the network of VM {vm_id} on '{conn_name}': {exc.message}{retry}",
            message_zh=f"在“{conn_name}”上{verb_zh}虚拟机 {vm_id} 的网络失败：{exc.message}",
            vm_id=vm_id,
            connection_id=conn_id,
        ) from exc
    if problem:
        session.rollback()
        _record_refusal(who, vm_id, unit_id, connected, reason, problem, "failed")
        raise errors.UpstreamError(
            f"the hypervisor did not confirm the network {verb} of VM {vm_id}: {problem}",
            message_zh=f"虚拟化平台未确认虚拟机 {vm_id} 的网络已{verb_zh}：{problem}",
            vm_id=vm_id,
            nics=nics(info),
        )

    vm_service.observe(session, vm, info)
    record(
        session,
        who,
        "vm.network",
        "vm",
        vm_id,
        before={"network_connected": previously},
        after={
            "network_connected": vm.network_connected,
            "reason": reason,
            "nics": nics(info),
            "version": vm.version,
        },
        detail=reason,
        unit_id=unit_id,
    )
    return vm, info, previously


__all__ = ["change_network", "decide", "nics"]
