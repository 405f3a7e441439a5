"""A VM request's lifecycle as data: which action moves it from which states to which, and who acts.

    submitted ──endorse (unit_lead, when the center requires it)──> endorsed
    submitted | endorsed ──approve | reject (center)──> approved | rejected
        (with endorsement required, approve needs ``endorsed``)
    submitted | endorsed ──cancel (the unit's admin)──> cancelled
    approved ──start (the provisioning task)──> provisioning ──deliver | fail (task)──> delivered | failed
    failed ──retry (center)──> provisioning

Every state change goes through :func:`vmportal.request.service.transition`, which checks this table
and then writes with compare-and-set (``UPDATE … WHERE id = :id AND state = :expected``), so two
concurrent actions on one request give one success and one 409 naming the state it is in now.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from policies.roles import Role
from vmportal.kit import errors
from vmportal.request.models import RequestState

S = RequestState


class Action(enum.StrEnum):
    ENDORSE = "endorse"
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"
    START = "start_provisioning"
    DELIVER = "deliver"
    FAIL = "fail"
    RETRY = "retry"


#: The portal itself (a task), not a user.
PORTAL: frozenset[Role] = frozenset()
CENTER: frozenset[Role] = frozenset({Role.CENTER_ADMIN, Role.CENTER_OPERATOR})


@dataclass(frozen=True)
class Transition:
    action: Action
    sources: frozenset[RequestState]
    target: RequestState
    roles: frozenset[Role]  # who may ask for it; empty: only the portal's own tasks


TRANSITIONS: dict[Action, Transition] = {
    t.action: t
    for t in (
        Transition(Action.ENDORSE, frozenset({S.SUBMITTED}), S.ENDORSED, frozenset({Role.UNIT_LEAD})),
        Transition(Action.APPROVE, frozenset({S.SUBMITTED, S.ENDORSED}), S.APPROVED, CENTER),
        Transition(Action.REJECT, frozenset({S.SUBMITTED, S.ENDORSED}), S.REJECTED, CENTER),
        Transition(
            Action.CANCEL, frozenset({S.SUBMITTED, S.ENDORSED}), S.CANCELLED, frozenset({Role.UNIT_ADMIN})
        ),
        Transition(Action.START, frozenset({S.APPROVED}), S.PROVISIONING, PORTAL),
        Transition(Action.DELIVER, frozenset({S.PROVISIONING}), S.DELIVERED, PORTAL),
        # A provisioning that cannot even start (no pool, connection gone) fails from approved.
        Transition(Action.FAIL, frozenset({S.APPROVED, S.PROVISIONING}), S.FAILED, PORTAL),
        Transition(Action.RETRY, frozenset({S.FAILED}), S.PROVISIONING, CENTER),
    )
}

#: States in which the center still owes the unit a VM: the provisioning deadline applies.
OPEN_STATES: frozenset[RequestState] = frozenset(
    {S.SUBMITTED, S.ENDORSED, S.APPROVED, S.PROVISIONING, S.FAILED}
)
#: States a request never leaves.
FINAL_STATES: frozenset[RequestState] = frozenset({S.DELIVERED, S.REJECTED, S.CANCELLED})


def sources(action: Action, *, endorsement_required: bool) -> frozenset[RequestState]:
    """The states ``action`` may start from. With endorsement on, approval waits for the lead and
    the lead's endorsement is possible at all only then."""
    transition = TRANSITIONS[action]
    if action is Action.APPROVE and endorsement_required:
        return frozenset({S.ENDORSED})
    if action is Action.ENDORSE and not endorsement_required:
        return frozenset()
    return transition.sources


def check(action: Action, state: str, *, endorsement_required: bool = False) -> RequestState:
    """The state ``action`` leads to from ``state``; 409 naming ``state`` when it is not allowed."""
    if state in sources(action, endorsement_required=endorsement_required):
        return TRANSITIONS[action].target
    if action is Action.ENDORSE and not endorsement_required:
        raise errors.StateConflict(
            "request",
            state,
            action.value,
            message=f"cannot endorse a request in state '{state}': the center does not require endorsement",
        )
    if action is Action.APPROVE and endorsement_required and state == S.SUBMITTED:
        raise errors.StateConflict(
            "request",
            state,
            action.value,
            message="cannot approve a request in state 'submitted': the center requires the unit lead's "
            "endorsement first",
        )
    raise errors.StateConflict("request", state, action.value)


def may(role: Role, action: Action) -> bool:
    return role in TRANSITIONS[action].roles


def available(state: str, role: Role, *, endorsement_required: bool) -> list[str]:
    """The actions ``role`` could take on a request in ``state`` (unit scoping aside), for the UI."""
    return [
        a.value
        for a, t in TRANSITIONS.items()
        if role in t.roles and state in sources(a, endorsement_required=endorsement_required)
    ]
