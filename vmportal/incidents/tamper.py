"""Containment that holds: a contained VM reconnected or powered on behind the portal's back.

The inventory (its watcher within seconds, the periodic sync at the latest) reconciles what the
hypervisor reports; this module is registered on that reconcile (:func:`inventory.service.
on_reconciled`) and, for every drifted VM that a confirmed containment holds, checks whether the
containment still stands. When it does not (a NIC connected again under an isolation, the VM
running again under a power-off) the containment is carried out again at once, in the same
transaction, the incident's timeline records what changed and whether it was undone, and the unit
and the center are mailed.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import Session

from hypervisors.base import HypervisorError, PowerState
from policies.compromise import Containment
from vmportal.audit.service import Who, record
from vmportal.incidents import containment, repository
from vmportal.incidents.lifecycle import S
from vmportal.incidents.models import ContainmentState, Incident
from vmportal.incidents.timeline import add_event
from vmportal.inventory import service as inventory
from vmportal.kit import pages
from vmportal.mail import service as mail
from vmportal.vm import service as vm_service
from vmportal.vm.models import VM
from vmportal.vm.service.power import Hold, on_hold_lookup

log = logging.getLogger(__name__)

WHO = Who.system("re-containment")
#: Mailed as a containment mail (the outbox has no kind of its own for a re-containment yet).
TAMPER_MAIL = mail.MailEvent.CONTAINED


def broken(vm: VM, action: Containment) -> dict[str, Any]:
    """What of ``vm``'s state undoes ``action`` (empty when the containment still stands)."""
    if action is Containment.ISOLATE_NETWORK and vm.network_connected:
        return {"network_connected": True}
    if action is Containment.POWER_OFF and vm.power_state != PowerState.STOPPED.value:
        return {"power_state": vm.power_state}
    return {}


def _loose(session: Session, vm: VM) -> list[tuple[Incident, Containment, dict[str, Any]]]:
    """The confirmed containments of ``vm`` that its stored state no longer honours, with what broke
    each."""
    found = []
    for incident in repository.holding_incidents(session, vm.id or 0):
        if incident.state != S.CONTAINED or incident.containment_state != ContainmentState.CONFIRMED:
            continue
        action = Containment(incident.executed_action or incident.action)
        changed = broken(vm, action)
        if changed:
            found.append((incident, action, changed))
    return found


def recontain(session: Session, vm_id: int) -> list[int]:
    """Contain ``vm_id`` again for each confirmed containment its state no longer honours; the ids
    of the incidents that were re-applied."""
    vm = vm_service.lock_vm(session, vm_id)
    if vm is None:
        return []
    done: list[int] = []
    for incident, action, changed in _loose(session, vm):
        _recontain_one(session, vm, incident, action, changed)
        done.append(incident.id or 0)
    return done


def _recontain_one(
    session: Session, vm: VM, incident: Incident, action: Containment, changed: dict[str, Any]
) -> None:
    try:
        outcome = containment._apply(session, vm, incident, action)
        if action is not Containment.POWER_OFF:
            vm_service.observe(session, vm, outcome.info)
        restored, error = outcome.confirmed, outcome.problem
    except HypervisorError as exc:
        restored, error = False, exc.message
    what_en = ", ".join(f"{k} → {v}" for k, v in changed.items())
    what_zh = (
        "网络重新连接" if "network_connected" in changed else f"虚拟机被开机（{changed.get('power_state')}）"
    )
    if restored:
        en = f"Tampered with behind the portal's back ({what_en}); contained again ({action.value})."
        zh = f"虚拟机在平台之外被改动（{what_zh}），平台已重新处置（{action.value}）。"
    else:
        en = f"Tampered with behind the portal's back ({what_en}); containing again failed: {error}"
        zh = f"虚拟机在平台之外被改动（{what_zh}），重新处置失败：{error}"
    data = {"changed": changed, "action": action.value, "restored": restored, "error": error}
    add_event(session, incident, "tampered", actor=WHO.actor, en=en, zh=zh, data=data)
    record(
        session, WHO, "incident.recontained" if restored else "incident.recontain_failed",
        "incident", incident.id, before=changed, after=data, unit_id=incident.unit_id,
    )  # fmt: skip
    link = pages.incident(incident.id)
    mail.notify(
        session,
        TAMPER_MAIL,
        incident.unit_id,
        subject_zh=f"安全事件 #{incident.id}：已处置的虚拟机 {vm.name} 在平台之外被改动",
        subject_en=f"Security incident #{incident.id}: contained VM {vm.name} was tampered with",
        body_zh=f"{zh}\n\n处置在整改完成前保持有效；解除须通过安全事件（判定误报、审核整改报告）。",
        body_en=f"{en}\n\nThe containment holds until rectified; releasing the VM goes through the incident.",
        related_type="incident",
        related_id=incident.id,
        link=link,
    )


def _after_reconcile(session: Session, report: inventory.SyncReport) -> None:
    vm_ids = {int(d["vm_id"]) for d in (*report.drift, *report.network_drift) if d.get("vm_id")}
    # A hold check's VMs are judged on their stored state, drifted or not; the VM's row lock is
    # taken only for one found loose, so a round over held VMs that hold blocks nobody.
    for vm_id in set(report.checked) - vm_ids:
        vm = session.get(VM, vm_id, populate_existing=True)  # reconcile wrote it with plain SQL
        if vm is not None and _loose(session, vm):
            vm_ids.add(vm_id)
    for vm_id in sorted(vm_ids):
        try:
            recontain(session, int(vm_id))
        except Exception:  # a failure here must not undo the inventory's own writes
            log.exception("re-containment check of VM %s failed", vm_id)


def _hold_of(incidents: list[Incident]) -> Hold | None:
    """The first (oldest) of a VM's holding incidents that did contain it."""
    for incident in incidents:
        if incident.action == Containment.NOTIFY_ONLY.value and not incident.executed_action:
            continue
        return Hold(
            incident_id=incident.id or 0,
            action=incident.executed_action or incident.action,
            state=str(incident.state),
        )
    return None


def _hold(session: Session, vm_id: int) -> Hold | None:
    """The incident holding ``vm_id``, for the VM domain's 409 on a power-on or reconnect."""
    return _hold_of(repository.holding_incidents(session, vm_id))


inventory.on_reconciled(_after_reconcile)
inventory.on_held_refs(repository.held_vm_refs)
on_hold_lookup(_hold)
