"""Containment: the center's policy table, the decision for one alert, and carrying it out (and undoing
it) through the VM's hypervisor adapter.

The table lives in the database (``containment_policy``, one row); without a row the policy layer's
``DEFAULT_TABLE`` applies. Rows are validated by ``policies.compromise.ContainmentRule``, which refuses
a low-confidence row that would act: weak signals always go to a human.

Execution (:func:`execute_containment`, the task ``vmportal.security.contain``):

* **Under the VM's lock**, the incident is re-read; only an incident still ``containing`` with its
  containment ``pending`` is acted on, so a redelivered task finds nothing to do.
* **Not twice.** A VM whose confirmed state already satisfies the action (suspended with its NICs
  disconnected, say, by an earlier incident) is not touched again: the incident is marked contained
  with no adapter call. A burst of alerts for one VM makes one incident, hence one task and one call.
* **Confirmed by the hypervisor.** After the action the VM is re-read from the hypervisor (the
  adapter's ``set_network`` and ``set_web_block`` return it as read back after the change) and the
  incident becomes ``contained`` only when every NIC is disconnected (isolate), the VM is stopped
  (power off) or its web block is in place (block web). Then the VM is ``suspended``, the observed
  network and power state are stored, and the time from the alert's arrival to the confirmation is
  kept on the incident and observed into ``vmportal_containment_seconds``.
* **Unreachable hypervisor**: the work rolls back, the incident records ``pending`` with the error in a
  transaction of its own, and the :class:`~hypervisors.base.Retriable` error propagates so the task base
  retries with backoff. Any other adapter error marks the containment ``failed`` with the adapter's
  message; the center can retry (``POST /incidents/{id}/retry``) or choose another action.
* **Block web where the hypervisor cannot** (vSphere without NSX): the network is isolated instead and
  the incident says so (``decision_fallback``, a reason in both languages).

Restore (:func:`execute_restore`, ``vmportal.security.restore``) undoes what the VM's confirmed
containments did (unblock web, reconnect NICs, power on: in that order, so the VM boots connected)
once no other incident still holds the VM, confirms it by re-reading the VM, and closes the incident.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from hypervisors.base import (
    HypervisorAdapter,
    HypervisorError,
    NotSupported,
    PowerAction,
    PowerState,
    Retriable,
    VMInfo,
)
from policies.compromise import (
    DEFAULT_TABLE,
    Category,
    Confidence,
    Containment,
    ContainmentDecision,
    ContainmentRule,
    Severity,
    decide_containment,
)
from policies.power import LOCKED_STATES, SecurityState
from vmportal.audit.service import Who, record
from vmportal.connection.service import adapter_for, get_connection
from vmportal.incidents import repository
from vmportal.incidents.lifecycle import INCIDENT, Action
from vmportal.incidents.models import (
    ContainmentPolicy,
    ContainmentState,
    Incident,
    IncidentState,
    Resolution,
    RestoreState,
)
from vmportal.incidents.timeline import add_event, sync_vm_security_state
from vmportal.jobs import outbox
from vmportal.kit import db, errors
from vmportal.kit.observability import CONTAINMENT_LATENCY
from vmportal.vm import service as vm_service
from vmportal.vm.models import VM, Lifecycle, PowerOpState

log = logging.getLogger(__name__)

# Task names (registered by vmportal.incidents.tasks; kept from before the move so queued tasks run).
CONTAIN_TASK = "vmportal.security.contain"
RESTORE_TASK = "vmportal.security.restore"

ACTION_ZH = {
    Containment.ISOLATE_NETWORK: "断开网络",
    Containment.POWER_OFF: "关机",
    Containment.BLOCK_WEB: "断开WEB服务",
    Containment.NOTIFY_ONLY: "仅通知",
}
CONTAINMENT_WHO = Who.system("containment")
RESTORE_WHO = Who.system("restore")


# ---- the policy table --------------------------------------------------------------------------------


def rule_dict(rule: ContainmentRule) -> dict[str, str]:
    return {
        "category": rule.category.value,
        "min_severity": rule.min_severity.value,
        "confidence": rule.confidence.value,
        "action": rule.action.value,
    }


def load_table(session: Session) -> tuple[ContainmentRule, ...]:
    row = session.get(ContainmentPolicy, 1)
    if row is None:
        return DEFAULT_TABLE
    return tuple(ContainmentRule(**r) for r in row.rules)


@dataclass(frozen=True)
class PolicyView:
    rules: tuple[ContainmentRule, ...]
    is_default: bool
    updated_at: datetime | None
    updated_by: int | None


def get_policy(session: Session) -> PolicyView:
    row = session.get(ContainmentPolicy, 1)
    if row is None:
        return PolicyView(DEFAULT_TABLE, True, None, None)
    return PolicyView(load_table(session), False, row.updated_at, row.updated_by)


def validate_rules(rules: Iterable[dict[str, Any]]) -> tuple[ContainmentRule, ...]:
    """Rows as ``ContainmentRule`` objects, or 422 naming the row and the rule it breaks."""
    out: list[ContainmentRule] = []
    seen: dict[tuple[str, str, str], int] = {}
    for index, values in enumerate(rules):
        try:
            rule = ContainmentRule(**values)
        except ValueError as exc:
            raise errors.InvalidField(
                f"rules[{index}].action",
                "low_confidence_notify_only",
                str(exc),
                message_zh="低置信度的规则只能“仅通知”：弱信号必须由人工研判，不能自动处置",
            ) from None
        key = (rule.category.value, rule.confidence.value, rule.min_severity.value)
        if key in seen:
            raise errors.InvalidField(
                f"rules[{index}]",
                "duplicate",
                f"repeats rules[{seen[key]}] (same category, confidence and minimum severity)",
                message_zh=f"与第 {seen[key]} 条规则重复（类别、置信度和最低严重程度相同）",
            )
        seen[key] = index
        out.append(rule)
    return tuple(out)


def put_policy(session: Session, who: Who, rules: list[dict[str, Any]], *, user_id: int | None) -> PolicyView:
    table = validate_rules(rules)
    before = [rule_dict(r) for r in load_table(session)]
    row = session.get(ContainmentPolicy, 1)
    if row is None:
        row = ContainmentPolicy(id=1)
    row.rules = [rule_dict(r) for r in table]
    row.updated_at = db.utcnow()
    row.updated_by = user_id
    session.add(row)
    record(
        session,
        who,
        "security.containment_policy.update",
        "containment_policy",
        1,
        before={"rules": before},
        after={"rules": row.rules},
    )
    session.flush()
    return get_policy(session)


def web_block_supported(session: Session, vm: VM) -> bool:
    conn = get_connection(session, vm.connection_id)
    return bool(adapter_for(conn).capabilities.web_block)


def decide(
    session: Session,
    vm: VM,
    category: Category | str,
    severity: Severity | str,
    confidence: Confidence | str,
    *,
    table: tuple[ContainmentRule, ...] | None = None,
) -> ContainmentDecision:
    """The policy's containment for an alert about ``vm`` (with the VM's hypervisor's abilities)."""
    return decide_containment(
        category,
        severity,
        confidence,
        load_table(session) if table is None else table,
        web_block_supported=web_block_supported(session, vm),
    )


# ---- execution ---------------------------------------------------------------------------------------


def _satisfied(vm: VM, action: Containment) -> bool:
    """Whether the VM's confirmed state already is what ``action`` would make it (compare-and-set: the
    caller holds the VM's lock, and every containment stores its confirmed result under that lock)."""
    if vm.security_state not in {s.value for s in LOCKED_STATES}:
        return False
    if action is Containment.ISOLATE_NETWORK:
        return not vm.network_connected
    if action is Containment.POWER_OFF:
        return vm.power_state == PowerState.STOPPED.value
    # Block web: a suspended VM is already isolated, stopped or web-blocked; each stops its web service.
    return action is Containment.BLOCK_WEB


@dataclass
class _Outcome:
    info: VMInfo
    executed: Containment
    confirmed: bool
    problem: str = ""
    fallback_en: str = ""
    fallback_zh: str = ""


def _isolate(adapter: HypervisorAdapter, ref: str) -> tuple[VMInfo, bool]:
    # Confirmed by what the hypervisor reads back, not by trusting the call: ``set_network`` returns
    # the VM re-read after the change (the adapter contract); reading it a second time would only
    # add a round trip to every containment.
    info = adapter.set_network(ref, False)
    return info, not any(n.connected for n in info.nics)


def _apply(session: Session, vm: VM, incident: Incident, action: Containment) -> _Outcome:
    """Carry out ``action`` on the locked VM and re-read it. Retriable errors propagate."""
    conn = get_connection(session, vm.connection_id)
    adapter = adapter_for(conn)
    ref = vm.hypervisor_ref
    if action is Containment.ISOLATE_NETWORK:
        info, ok = _isolate(adapter, ref)
        return _Outcome(info, action, ok, "" if ok else "a NIC is still connected after the isolation")
    if action is Containment.POWER_OFF:
        op = vm_service.apply_power(
            session,
            vm.id or 0,
            PowerAction.STOP,
            who=CONTAINMENT_WHO,
            reason=f"containment of security incident {incident.id}",
        )
        if op.state != PowerOpState.SUCCEEDED:
            raise HypervisorError(op.error or "the power-off failed")
        info = adapter.get_vm(ref)
        ok = info.power_state is PowerState.STOPPED
        return _Outcome(info, action, ok, "" if ok else f"the VM is {info.power_state} after the power-off")
    if action is Containment.BLOCK_WEB:
        try:
            info = adapter.set_web_block(ref, True)  # the VM as read back after the change
        except NotSupported as exc:
            info, ok = _isolate(adapter, ref)
            return _Outcome(
                info,
                Containment.ISOLATE_NETWORK,
                ok,
                "" if ok else "a NIC is still connected after the isolation",
                fallback_en=f"Blocking only the web service is not possible here ({exc.message}), so the "
                "network was isolated instead.",
                fallback_zh="该虚拟化平台不支持单独断开WEB服务，已改为断开网络。",
            )
        return _Outcome(
            info, action, info.web_blocked, "" if info.web_blocked else "the web block is not in place"
        )
    raise ValueError(f"nothing to execute for {action}")


def execute_containment(incident_id: int) -> str:
    """The task body of ``vmportal.security.contain``. Idempotent; Retriable propagates (retry)."""
    try:
        with db.transaction() as s:
            outcome, latency = contain_once(s, incident_id)
            outbox.complete_in(s)  # the task's outbox row, completed with the outcome it records
    except Retriable as exc:
        _note_pending(incident_id, exc)
        raise
    if latency is not None:  # observed once the transaction committed
        CONTAINMENT_LATENCY.observe(latency)
    return outcome


def contain_once(s: Session, incident_id: int) -> tuple[str, float | None]:
    """The containment's work in ``s``: its outcome, and its latency when confirmed now. Without the
    task's bookkeeping (the outbox row, the latency metric), so the worker's rehearsal
    (vmportal.app.warmup) runs the same code and leaves no figure behind."""
    found = s.get(Incident, incident_id)
    if found is None:
        return "unknown incident", None
    if found.state != IncidentState.CONTAINING or found.containment_state != ContainmentState.PENDING:
        return f"nothing to do ({found.state}, containment {found.containment_state})", None
    incident, vm = repository.lock_incident(s, incident_id)
    if incident.state != IncidentState.CONTAINING or incident.containment_state != ContainmentState.PENDING:
        return f"nothing to do ({incident.state}, containment {incident.containment_state})", None
    if vm is None or vm.lifecycle != Lifecycle.ACTIVE:
        state = "missing" if vm is None else vm.lifecycle
        return _fail(s, incident, f"the VM is {state}: nothing to contain"), None
    action = Containment(incident.action)
    if _satisfied(vm, action):
        return "already contained", _confirm(s, incident, vm, action, None, already=True)
    try:
        outcome = _apply(s, vm, incident, action)
    except Retriable:
        raise
    except HypervisorError as exc:
        return _fail(s, incident, exc.message), None
    if not outcome.confirmed:
        vm_service.observe(s, vm, outcome.info)
        return _fail(s, incident, f"the hypervisor did not confirm the containment: {outcome.problem}"), None
    return "contained", _confirm(s, incident, vm, outcome.executed, outcome)


def _confirm(
    s: Session,
    incident: Incident,
    vm: VM,
    executed: Containment,
    outcome: _Outcome | None,
    *,
    already: bool = False,
) -> float:
    now = db.utcnow()
    if outcome is not None and executed is not Containment.POWER_OFF:
        vm_service.observe(s, vm, outcome.info)  # apply_power stored its own observation
    values: dict[str, Any] = {
        "containment_state": ContainmentState.CONFIRMED.value,
        "executed_action": executed.value,
        "contained_at": now,
        "last_error": "",
        "attempts": incident.attempts + 1,
    }
    trigger = incident.trigger_at or incident.first_seen
    latency = max((now - trigger).total_seconds(), 0.0)
    values["containment_latency_seconds"] = latency
    if outcome is not None and outcome.fallback_en:
        values["decision_fallback"] = True
        values["reasons_en"] = [*incident.reasons_en, outcome.fallback_en]
        values["reasons_zh"] = [*incident.reasons_zh, outcome.fallback_zh]
    INCIDENT.move(s, incident, Action.CONTAINED, **values)
    action_zh = ACTION_ZH[executed]
    if already:
        en = (
            f"The VM was already contained ({executed.value}) by an earlier incident: nothing more to do. "
            f"It stays suspended until the center restores it."
        )
        zh = f"该虚拟机此前已被处置（{action_zh}），无需重复操作；在信息中心恢复前保持暂停。"
    else:
        en = (
            f"Contained: {executed.value}, confirmed by the hypervisor {latency:.2f} s after the alert. "
            "The VM is suspended until the center verifies the unit's rectification report."
        )
        zh = (
            f"已处置：{action_zh}，虚拟化平台已确认（告警后 {latency:.2f} 秒）。"
            "虚拟机已暂停，待信息中心核实整改报告后恢复。"
        )
    if outcome is not None and outcome.fallback_en:
        en += " " + outcome.fallback_en
        zh += outcome.fallback_zh
    add_event(
        s,
        incident,
        "contained",
        actor=CONTAINMENT_WHO.actor,
        en=en,
        zh=zh,
        data={
            "action": executed.value,
            "latency_seconds": round(latency, 4),
            "adapter_call": not already,
            "network_connected": vm.network_connected,
            "power_state": vm.power_state,
        },
    )
    # The VM's security state and the audit rows last: both append to the audit log, whose head
    # stays locked until the commit (every audited change of the portal waits for it meanwhile).
    sync_vm_security_state(
        s, vm.id or 0, CONTAINMENT_WHO, reason=f"security incident {incident.id}: {incident.category}"
    )
    record(
        s,
        CONTAINMENT_WHO,
        "security.containment",
        "incident",
        incident.id,
        before={"state": IncidentState.CONTAINING.value, "containment_state": ContainmentState.PENDING.value},
        after={
            "state": incident.state,
            "containment_state": incident.containment_state,
            "action": executed.value,
            "vm_id": vm.id,
            "network_connected": vm.network_connected,
            "power_state": vm.power_state,
            "security_state": vm.security_state,
            "latency_seconds": round(latency, 4),
            "adapter_call": not already,
        },
        unit_id=incident.unit_id,
    )
    return latency


def _fail(s: Session, incident: Incident, message: str) -> str:
    incident.containment_state = ContainmentState.FAILED.value
    incident.last_error = message[:2000]
    incident.attempts += 1
    incident.updated_at = db.utcnow()
    s.add(incident)
    add_event(
        s,
        incident,
        "containment_failed",
        actor=CONTAINMENT_WHO.actor,
        en=f"Containment failed: {message}. The center can retry or choose another action.",
        zh=f"处置失败：{message}。信息中心可以重试或改用其他处置方式。",
    )
    record(
        s,
        CONTAINMENT_WHO,
        "security.containment",
        "incident",
        incident.id,
        after={"action": incident.action, "containment_state": incident.containment_state},
        result="failed",
        detail=message,
        unit_id=incident.unit_id,
    )
    log.warning("containment of incident %s failed: %s", incident.id, message)
    return "failed"


def _note_pending(incident_id: int, exc: Retriable) -> None:
    """The containment rolled back because the hypervisor is unreachable: say so on the incident."""
    with db.transaction() as s:
        incident = s.get(Incident, incident_id)
        if incident is None or incident.containment_state != ContainmentState.PENDING:
            return
        incident.last_error = f"hypervisor unavailable, retrying: {exc.message}"[:2000]
        incident.attempts += 1
        incident.updated_at = db.utcnow()
        s.add(incident)
        add_event(
            s,
            incident,
            "containment_pending",
            actor=CONTAINMENT_WHO.actor,
            en=f"The hypervisor is unavailable ({exc.message}); containment is pending and will be retried.",
            zh=f"虚拟化平台暂时无法访问（{exc.message}），处置等待中，将自动重试。",
            data={"attempt": incident.attempts},
        )
        record(
            s,
            CONTAINMENT_WHO,
            "security.containment",
            "incident",
            incident_id,
            after={"containment_state": incident.containment_state, "attempt": incident.attempts},
            result="pending",
            detail=exc.message,
            unit_id=incident.unit_id,
        )


# ---- restore -----------------------------------------------------------------------------------------


def execute_restore(incident_id: int) -> str:
    """The task body of ``vmportal.security.restore``. Idempotent; Retriable propagates (retry)."""
    try:
        with db.transaction() as s:
            found = s.get(Incident, incident_id)
            if found is None:
                return "unknown incident"
            if found.state != IncidentState.RESTORING or found.restore_state != RestoreState.PENDING:
                return f"nothing to do ({found.state}, restore {found.restore_state})"
            incident, vm = repository.lock_incident(s, incident_id)
            if incident.state != IncidentState.RESTORING or incident.restore_state != RestoreState.PENDING:
                return f"nothing to do ({incident.state}, restore {incident.restore_state})"
            return _restore(s, incident, vm)
    except Retriable as exc:
        _note_restore_pending(incident_id, exc)
        raise


def _restore(s: Session, incident: Incident, vm: VM | None) -> str:
    resolution = Resolution(incident.resolution or Resolution.RECTIFIED)
    released_to = SecurityState.NORMAL if resolution is Resolution.FALSE_POSITIVE else SecurityState.RESTORED
    final_action = Action.RELEASE if resolution is Resolution.FALSE_POSITIVE else Action.CLOSE
    now = db.utcnow()
    if vm is None:
        _finish_restore(s, incident, final_action, now, released=False, note_en="", note_zh="")
        return "closed"
    others = repository.holding_incidents(s, vm.id or 0, exclude=incident.id)
    if others:
        ids = ", ".join(f"#{o.id}" for o in others)
        _finish_restore(
            s,
            incident,
            final_action,
            now,
            released=False,
            note_en=f"The VM stays suspended: incident {ids} still holds it.",
            note_zh=f"虚拟机仍保持暂停：安全事件 {ids} 尚未处理完毕。",
        )
        return "closed (VM still held)"
    # Undo what every confirmed containment of this VM did (a closed incident whose VM was held by
    # another one left its containment in force; it is released now too).
    in_force = repository.confirmed_containments(s, vm.id or 0)
    done = {Containment(i.executed_action) for i in in_force if i.executed_action}
    steps: list[str] = []
    info: VMInfo | None = None
    if vm.lifecycle == Lifecycle.ACTIVE and done:
        try:
            info, steps = _undo(s, vm, incident, done)
        except Retriable:
            raise
        except HypervisorError as exc:
            return _restore_failed(s, incident, exc.message)
        problem = _restore_problem(info, done)
        if problem:
            vm_service.observe(s, vm, info)
            return _restore_failed(s, incident, f"the hypervisor did not confirm the restore: {problem}")
        if Containment.POWER_OFF not in done:
            vm_service.observe(s, vm, info)
    for other in in_force:
        if other.id != incident.id:
            _release_containment(s, other, now)
    _finish_restore(s, incident, final_action, now, released=True, note_en="", note_zh="", steps=steps)
    sync_vm_security_state(
        s,
        vm.id or 0,
        RESTORE_WHO,
        released_to=released_to,
        reason=f"security incident {incident.id} {resolution}",
    )
    return "restored"


def _undo(s: Session, vm: VM, incident: Incident, done: set[Containment]) -> tuple[VMInfo, list[str]]:
    conn = get_connection(s, vm.connection_id)
    adapter = adapter_for(conn)
    ref = vm.hypervisor_ref
    steps: list[str] = []
    if Containment.BLOCK_WEB in done:
        adapter.set_web_block(ref, False)
        steps.append("unblock_web")
    if Containment.ISOLATE_NETWORK in done:
        adapter.set_network(ref, True)
        steps.append("reconnect")
    if Containment.POWER_OFF in done:
        op = vm_service.apply_power(
            s,
            vm.id or 0,
            PowerAction.START,
            who=RESTORE_WHO,
            reason=f"restore after security incident {incident.id}",
        )
        if op.state != PowerOpState.SUCCEEDED:
            raise HypervisorError(op.error or "the power-on failed")
        steps.append("power_on")
    return adapter.get_vm(ref), steps


def _restore_problem(info: VMInfo, done: set[Containment]) -> str:
    if Containment.ISOLATE_NETWORK in done and not all(n.connected for n in info.nics):
        return "a NIC is still disconnected"
    if Containment.POWER_OFF in done and info.power_state is not PowerState.RUNNING:
        return f"the VM is {info.power_state}"
    if Containment.BLOCK_WEB in done and info.web_blocked:
        return "the web block is still in place"
    return ""


def _release_containment(s: Session, incident: Incident, now: datetime) -> None:
    incident.containment_state = ContainmentState.RELEASED.value
    if incident.restored_at is None:
        incident.restored_at = now
    if incident.contained_at is not None and incident.quarantine_seconds is None:
        incident.quarantine_seconds = (now - incident.contained_at).total_seconds()
    s.add(incident)


def _finish_restore(
    s: Session,
    incident: Incident,
    action: Action,
    now: datetime,
    *,
    released: bool,
    note_en: str,
    note_zh: str,
    steps: list[str] | None = None,
) -> None:
    values: dict[str, Any] = {
        "restore_state": (RestoreState.CONFIRMED if released else RestoreState.HELD).value
    }
    values["last_error"] = ""
    containment_state = incident.containment_state
    if released:
        values["restored_at"] = now
        if incident.contained_at is not None:
            values["quarantine_seconds"] = (now - incident.contained_at).total_seconds()
        if containment_state == ContainmentState.CONFIRMED:
            values["containment_state"] = ContainmentState.RELEASED.value
    elif containment_state == ContainmentState.PENDING:
        values["containment_state"] = ContainmentState.NONE.value
    before = {"state": incident.state, "restore_state": incident.restore_state}
    INCIDENT.move(s, incident, action, **values)
    quarantine = incident.quarantine_seconds
    if released:
        done = ", ".join(steps or []) or "nothing to undo"
        en = f"Restored ({done}), confirmed by the hypervisor."
        zh = (
            "已恢复（"
            + ("、".join(_STEP_ZH[x] for x in steps or []) or "无需操作")
            + "），虚拟化平台已确认。"
        )
        if quarantine is not None:
            en += f" Time in quarantine: {_duration_en(quarantine)}."
            zh += f"隔离时长：{_duration_zh(quarantine)}。"
    else:
        en, zh = note_en, note_zh
    en = ("Closed. " if action is Action.CLOSE else "Dismissed as a false positive. ") + en
    zh = ("安全事件已关闭。" if action is Action.CLOSE else "已判定为误报。") + zh
    add_event(
        s,
        incident,
        "restored" if released else "closed",
        actor=RESTORE_WHO.actor,
        en=en,
        zh=zh,
        data={"steps": steps or [], "quarantine_seconds": quarantine, "released": released},
    )
    record(
        s,
        RESTORE_WHO,
        "security.restore",
        "incident",
        incident.id,
        before=before,
        after={
            "state": incident.state,
            "restore_state": incident.restore_state,
            "steps": steps or [],
            "quarantine_seconds": quarantine,
            "vm_released": released,
        },
        detail=note_en,
        unit_id=incident.unit_id,
    )


_STEP_ZH = {"unblock_web": "恢复WEB服务", "reconnect": "恢复网络连接", "power_on": "开机"}


def _duration_en(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d"] if days else []
    parts += [f"{hours} h"] if hours or days else []
    parts += [f"{minutes} min", f"{sec} s"] if not days else [f"{minutes} min"]
    return " ".join(parts)


def _duration_zh(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (f"{days}天" if days else "") + (f"{hours}小时" if hours or days else "") + f"{minutes}分{sec}秒"


def _restore_failed(s: Session, incident: Incident, message: str) -> str:
    incident.restore_state = RestoreState.FAILED.value
    incident.last_error = message[:2000]
    incident.updated_at = db.utcnow()
    s.add(incident)
    add_event(
        s,
        incident,
        "restore_failed",
        actor=RESTORE_WHO.actor,
        en=f"Restore failed: {message}. The VM stays suspended; the center can retry.",
        zh=f"恢复失败：{message}。虚拟机保持暂停，信息中心可以重试。",
    )
    record(
        s,
        RESTORE_WHO,
        "security.restore",
        "incident",
        incident.id,
        after={"restore_state": incident.restore_state},
        result="failed",
        detail=message,
        unit_id=incident.unit_id,
    )
    return "failed"


def _note_restore_pending(incident_id: int, exc: Retriable) -> None:
    with db.transaction() as s:
        incident = s.get(Incident, incident_id)
        if incident is None or incident.restore_state != RestoreState.PENDING:
            return
        incident.last_error = f"hypervisor unavailable, retrying the restore: {exc.message}"[:2000]
        incident.updated_at = db.utcnow()
        s.add(incident)
        add_event(
            s,
            incident,
            "restore_pending",
            actor=RESTORE_WHO.actor,
            en=f"The hypervisor is unavailable ({exc.message}); the restore is pending and will be retried.",
            zh=f"虚拟化平台暂时无法访问（{exc.message}），恢复等待中，将自动重试。",
        )


# ---- out of retries ----------------------------------------------------------------------------------


def give_up_containment(incident_id: int, exc: Exception) -> None:
    """The task base ran out of retries with the hypervisor still unreachable: say so on the incident
    (containment failed, the center can retry) rather than leave it pending for ever."""
    message = getattr(exc, "message", str(exc))
    with db.transaction() as s:
        incident = s.get(Incident, incident_id)
        if incident is None or incident.state != IncidentState.CONTAINING:
            return
        if incident.containment_state != ContainmentState.PENDING:
            return
        _fail(s, incident, f"the hypervisor stayed unavailable through every retry ({message})")


def give_up_restore(incident_id: int, exc: Exception) -> None:
    message = getattr(exc, "message", str(exc))
    with db.transaction() as s:
        incident = s.get(Incident, incident_id)
        if incident is None or incident.state != IncidentState.RESTORING:
            return
        if incident.restore_state != RestoreState.PENDING:
            return
        _restore_failed(s, incident, f"the hypervisor stayed unavailable through every retry ({message})")
