"""An incident's lifecycle as data: which action moves it from which state to which, and who acts.

    open ──contain (the policy decided an action) | confirm (center)──> containing
    containing ──contained (the hypervisor confirmed)──> contained
    containing ──retry (center, after the hypervisor refused)──> containing
    contained ──submit_rectification (the unit's admin)──> rectification_submitted
    rectification_submitted ──accept (center)──> restoring ──close (restore confirmed)──> closed
    rectification_submitted ──reject (center)──> contained
    open ──dismiss (center)──> dismissed
    containing | contained | rectification_submitted ──dismiss (center)──> restoring
        ──release (restore confirmed)──> dismissed
    restoring ──retry (center, after the hypervisor refused the restore)──> restoring

Every change goes through :func:`vmportal.incidents.service.transition`, which checks this table and
writes with compare-and-set (``UPDATE … WHERE id = :id AND state = :expected``): of two concurrent
actions on one incident one succeeds and the other gets a 409 naming the state it is in now.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from policies.power import SecurityState
from policies.roles import Role
from vmportal.audit.service import Who
from vmportal.incidents import mails as notification
from vmportal.incidents.models import Incident, IncidentEvent, IncidentState
from vmportal.kit import errors
from vmportal.kit.db import utcnow
from vmportal.vm import service as vm_service
from vmportal.vm.models import VM

S = IncidentState


class Action(enum.StrEnum):
    CONTAIN = "contain"  # the policy's automatic decision
    CONFIRM = "confirm"  # a center user orders containment of an open incident
    CONTAINED = "contained"  # the containment task: the hypervisor confirmed
    RETRY = "retry"  # the center re-runs a containment or restore the hypervisor refused
    SUBMIT_RECTIFICATION = "submit_rectification"
    ACCEPT = "accept"
    REJECT = "reject"
    DISMISS = "dismiss"
    CLOSE = "close"  # the restore task, after an accepted rectification
    RELEASE = "release"  # the restore task, after a dismissal


PORTAL: frozenset[Role] = frozenset()  # the portal's own tasks
CENTER: frozenset[Role] = frozenset({Role.CENTER_ADMIN, Role.CENTER_OPERATOR})
UNIT_ADMIN: frozenset[Role] = frozenset({Role.UNIT_ADMIN})


@dataclass(frozen=True)
class Transition:
    action: Action
    moves: Mapping[IncidentState, IncidentState]  # from → to
    roles: frozenset[Role]


TRANSITIONS: dict[Action, Transition] = {
    t.action: t
    for t in (
        Transition(Action.CONTAIN, {S.OPEN: S.CONTAINING}, PORTAL),
        Transition(Action.CONFIRM, {S.OPEN: S.CONTAINING}, CENTER),
        Transition(Action.CONTAINED, {S.CONTAINING: S.CONTAINED}, PORTAL),
        Transition(Action.RETRY, {S.CONTAINING: S.CONTAINING, S.RESTORING: S.RESTORING}, CENTER),
        Transition(Action.SUBMIT_RECTIFICATION, {S.CONTAINED: S.RECTIFICATION_SUBMITTED}, UNIT_ADMIN),
        Transition(Action.ACCEPT, {S.RECTIFICATION_SUBMITTED: S.RESTORING}, CENTER),
        Transition(Action.REJECT, {S.RECTIFICATION_SUBMITTED: S.CONTAINED}, CENTER),
        Transition(
            Action.DISMISS,
            {
                S.OPEN: S.DISMISSED,
                S.CONTAINING: S.RESTORING,
                S.CONTAINED: S.RESTORING,
                S.RECTIFICATION_SUBMITTED: S.RESTORING,
            },
            CENTER,
        ),
        Transition(Action.CLOSE, {S.RESTORING: S.CLOSED}, PORTAL),
        Transition(Action.RELEASE, {S.RESTORING: S.DISMISSED}, PORTAL),
    )
}

#: An incident in one of these states holds its VM: the VM stays suspended while any does.
HOLDING: frozenset[IncidentState] = frozenset(
    {S.CONTAINING, S.CONTAINED, S.RECTIFICATION_SUBMITTED, S.RESTORING}
)
#: States an incident never leaves.
FINAL: frozenset[IncidentState] = frozenset({S.CLOSED, S.DISMISSED})
#: Open in the sense of "(VM, category) alerts still gather here".
ACTIVE: frozenset[IncidentState] = frozenset(set(S) - FINAL)

_ZH = {
    Action.CONTAIN: "自动处置",
    Action.CONFIRM: "确认处置",
    Action.CONTAINED: "确认已处置",
    Action.RETRY: "重试",
    Action.SUBMIT_RECTIFICATION: "提交整改报告",
    Action.ACCEPT: "通过整改报告",
    Action.REJECT: "驳回整改报告",
    Action.DISMISS: "判定为误报",
    Action.CLOSE: "关闭",
    Action.RELEASE: "解除",
}
_STATE_ZH = {
    S.OPEN: "待研判",
    S.CONTAINING: "处置中",
    S.CONTAINED: "已处置（虚拟机已暂停）",
    S.RECTIFICATION_SUBMITTED: "整改报告待审核",
    S.RESTORING: "恢复中",
    S.CLOSED: "已关闭",
    S.DISMISSED: "已判定误报",
}


def check(action: Action, state: str) -> IncidentState:
    """The state ``action`` leads to from ``state``; 409 naming ``state`` when it is not allowed."""
    moves = TRANSITIONS[action].moves
    try:
        current = IncidentState(state)
    except ValueError:
        current = None
    if current is not None and current in moves:
        return moves[current]
    allowed = ", ".join(sorted(s.value for s in moves))
    exc = errors.StateConflict(
        "incident",
        state,
        action.value,
        message=f"cannot {action.value} an incident in state '{state}' (only from: {allowed})",
    )
    exc.message_zh = (
        f"安全事件当前状态为“{_STATE_ZH.get(current, state) if current else state}”，不能执行“{_ZH[action]}”"
    )
    raise exc


def may(role: Role, action: Action) -> bool:
    return role in TRANSITIONS[action].roles


def available(state: str, role: Role) -> list[str]:
    """The actions ``role`` could take on an incident in ``state`` (unit scoping aside), for the UI."""
    return [a.value for a, t in TRANSITIONS.items() if role in t.roles and state in t.moves]


# ---- moving an incident ------------------------------------------------------------------------------

PROCESS_TASK = "vmportal.security.process_alerts"
CONTAIN_TASK = "vmportal.security.contain"
RESTORE_TASK = "vmportal.security.restore"
PRUNE_TASK = "vmportal.security.prune_webhook_ids"


def transition(session: Session, incident: Incident, step: Action, /, **values: Any) -> IncidentState:
    """Move ``incident`` by ``step`` (checked against the table) with compare-and-set: the row changes
    only if it is still in the state this transaction read, else 409 naming the state it is in now.
    ``values`` are written in the same UPDATE; a final state also frees the (VM, category) key."""
    assert incident.id is not None
    target = check(step, incident.state)
    expected = incident.state
    values = {**values, "state": target.value, "updated_at": utcnow(), "version": incident.version + 1}
    if target in FINAL:
        values["open_key"] = None
        values.setdefault("closed_at", utcnow())
    result = session.exec(
        update(Incident)
        .where(col(Incident.id) == incident.id, col(Incident.state) == expected)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        current = session.exec(select(Incident.state).where(Incident.id == incident.id)).first()
        check(step, current or "deleted")  # raises the 409 naming the state found now
        raise errors.StateConflict("incident", current or "deleted", step.value)
    for key, value in values.items():
        set_committed_value(incident, key, value)  # written; keep the object in step, unflushed
    return target


def add_event(
    session: Session,
    incident: Incident,
    kind: str,
    *,
    actor: str,
    en: str,
    zh: str,
    data: dict[str, Any] | None = None,
) -> IncidentEvent:
    """One line of the incident's timeline. Every step of the workflow passes through here, which makes
    it the place to hang notifications on (issue 4 point 10)."""
    assert incident.id is not None
    event = IncidentEvent(
        incident_id=incident.id,
        kind=kind,
        actor=actor[:100],
        message_en=en[:2000],
        message_zh=zh[:2000],
        data=data or {},
    )
    session.add(event)
    # Mails go into the notification outbox in this transaction; sending happens after the commit.
    notification.on_event(session, incident, event)
    return event


def lock_incident(session: Session, incident_id: int) -> tuple[Incident, VM | None]:
    """The incident re-read under its VM's lock (the lock every change of the VM's containment takes,
    so an API action and the containment or restore task never interleave), then its own row lock."""
    found = session.get(Incident, incident_id)
    if found is None:
        raise errors.NotFound("incident", incident_id)
    vm = vm_service.lock_vm(session, found.vm_id) if found.vm_id is not None else None
    incident = session.exec(
        select(Incident)
        .where(col(Incident.id) == incident_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return incident, vm


def holding_incidents(session: Session, vm_id: int, *, exclude: int | None = None) -> list[Incident]:
    """The VM's incidents that keep it suspended (containing, contained, submitted, restoring)."""
    stmt = select(Incident).where(
        col(Incident.vm_id) == vm_id, col(Incident.state).in_([s.value for s in HOLDING])
    )
    if exclude is not None:
        stmt = stmt.where(col(Incident.id) != exclude)
    return list(session.exec(stmt.order_by(col(Incident.id))).all())


def sync_vm_security_state(
    session: Session, vm_id: int, who: Who, *, released_to: SecurityState | None = None, reason: str = ""
) -> str:
    """Set the VM's security state from its incidents: suspended while any contained incident holds it,
    rectification_submitted when every holding incident waits for the center's review, ``released_to``
    (restored, normal) once none holds it and a restore was confirmed; else unchanged."""
    vm = session.get(VM, vm_id)
    if vm is None:
        return ""
    holders = [i for i in holding_incidents(session, vm_id) if i.containment_state == "confirmed"]
    states = {i.state for i in holders}
    target: SecurityState | None
    if S.CONTAINED in states:
        target = SecurityState.SUSPENDED
    elif S.RECTIFICATION_SUBMITTED in states:
        target = SecurityState.RECTIFICATION_SUBMITTED
    elif holders:
        target = None  # restoring: stays as it is until the hypervisor confirmed
    else:
        target = released_to
    if target is not None and vm.security_state != target.value:
        vm_service.set_security_state(session, vm_id, target, who=who, reason=reason)
    return vm.security_state
