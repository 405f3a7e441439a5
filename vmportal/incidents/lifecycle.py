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

Pure data (no I/O, no mail). Every change goes through ``INCIDENT.move`` (:class:`vmportal.kit.states.
Lifecycle`), which checks this table and writes with compare-and-set (``UPDATE … WHERE id = :id AND
state = :expected``): of two concurrent actions on one incident one succeeds and the other gets a 409
naming the state it is in now. A move into a final state frees the (VM, category) key ``open_key``.
"""

from __future__ import annotations

import enum

from policies.roles import Role
from vmportal.incidents.models import Incident, IncidentState
from vmportal.kit.states import PORTAL, Lifecycle, Move

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


CENTER: frozenset[Role] = frozenset({Role.CENTER_ADMIN, Role.CENTER_OPERATOR})
UNIT_ADMIN: frozenset[Role] = frozenset({Role.UNIT_ADMIN})

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

INCIDENT: Lifecycle[IncidentState, Action] = Lifecycle(
    model=Incident,
    what="incident",
    what_zh="安全事件",
    states=IncidentState,
    table=(
        Move(Action.CONTAIN, {S.OPEN: S.CONTAINING}, PORTAL),
        Move(Action.CONFIRM, {S.OPEN: S.CONTAINING}, CENTER),
        Move(Action.CONTAINED, {S.CONTAINING: S.CONTAINED}, PORTAL),
        Move(Action.RETRY, {S.CONTAINING: S.CONTAINING, S.RESTORING: S.RESTORING}, CENTER),
        Move(Action.SUBMIT_RECTIFICATION, {S.CONTAINED: S.RECTIFICATION_SUBMITTED}, UNIT_ADMIN),
        Move(Action.ACCEPT, {S.RECTIFICATION_SUBMITTED: S.RESTORING}, CENTER),
        Move(Action.REJECT, {S.RECTIFICATION_SUBMITTED: S.CONTAINED}, CENTER),
        Move(
            Action.DISMISS,
            {
                S.OPEN: S.DISMISSED,
                S.CONTAINING: S.RESTORING,
                S.CONTAINED: S.RESTORING,
                S.RECTIFICATION_SUBMITTED: S.RESTORING,
            },
            CENTER,
        ),
        Move(Action.CLOSE, {S.RESTORING: S.CLOSED}, PORTAL),
        Move(Action.RELEASE, {S.RESTORING: S.DISMISSED}, PORTAL),
    ),
    state_zh=_STATE_ZH,
    action_zh=_ZH,
    final=FINAL,
    versioned=True,
    # A closed incident no longer gathers its (VM, category)'s alerts: the next alert opens a new one.
    on_final={"open_key": None},
)
