"""A VM request's lifecycle as data: which action moves it from which states to which, and who acts.

    submitted ──endorse (unit_lead, when the center requires it)──> endorsed
    submitted ──decline (unit_lead, when the center requires it, with a reason)──> rejected
    submitted | endorsed ──approve | reject (center)──> approved | rejected
        (with endorsement required, approve needs ``endorsed``)
    submitted | endorsed ──cancel (the unit's admin)──> cancelled
    approved ──start (the provisioning task)──> provisioning ──deliver | fail (task)──> delivered | failed
    failed ──retry (center)──> provisioning

Every state change goes through :meth:`kit.states.Lifecycle.move` on :data:`REQUEST`, which checks
this table and writes with compare-and-set (``UPDATE … WHERE id = :id AND state = :expected``), so two
concurrent actions on one request give one success and one 409 naming the state it is in now.

The center's setting "endorsement required" narrows the table rather than changing it:
:func:`rule` gives the states an action may start from under the setting, and why a refusal is a
refusal, for ``move``/``check``'s ``sources=`` and ``hint=``.
"""

from __future__ import annotations

import enum

from policies.roles import Role
from vmportal.kit.scope import CENTER
from vmportal.kit.states import PORTAL, Lifecycle, Move
from vmportal.request.models import RequestState, VMRequest

S = RequestState


class Action(enum.StrEnum):
    ENDORSE = "endorse"
    DECLINE = "decline"
    APPROVE = "approve"
    REJECT = "reject"
    CANCEL = "cancel"
    START = "start_provisioning"
    DELIVER = "deliver"
    FAIL = "fail"
    RETRY = "retry"


_CENTER = frozenset(CENTER)
_UNIT_ADMIN = frozenset({Role.UNIT_ADMIN})

REQUEST: Lifecycle[RequestState, Action] = Lifecycle(
    model=VMRequest,
    what="request",
    what_zh="虚拟机申请",
    states=RequestState,
    table=(
        Move(Action.ENDORSE, {S.SUBMITTED: S.ENDORSED}, frozenset({Role.UNIT_LEAD})),
        # The lead says no: final, as a rejection, decided by the lead (decided_by, the reason).
        Move(Action.DECLINE, {S.SUBMITTED: S.REJECTED}, frozenset({Role.UNIT_LEAD})),
        Move(Action.APPROVE, {S.SUBMITTED: S.APPROVED, S.ENDORSED: S.APPROVED}, _CENTER),
        Move(Action.REJECT, {S.SUBMITTED: S.REJECTED, S.ENDORSED: S.REJECTED}, _CENTER),
        Move(
            Action.CANCEL, {S.SUBMITTED: S.CANCELLED, S.ENDORSED: S.CANCELLED}, frozenset({Role.UNIT_ADMIN})
        ),
        Move(Action.START, {S.APPROVED: S.PROVISIONING}, PORTAL),
        Move(Action.DELIVER, {S.PROVISIONING: S.DELIVERED}, PORTAL),
        # A provisioning that cannot even start (no pool, connection gone) fails from approved.
        Move(Action.FAIL, {S.APPROVED: S.FAILED, S.PROVISIONING: S.FAILED}, PORTAL),
        Move(Action.RETRY, {S.FAILED: S.PROVISIONING}, _CENTER),
    ),
    state_zh={
        S.SUBMITTED: "已提交",
        S.ENDORSED: "单位负责人已确认",
        S.APPROVED: "已批准",
        S.REJECTED: "已驳回",
        S.PROVISIONING: "开通中",
        S.DELIVERED: "已交付",
        S.FAILED: "开通失败",
        S.CANCELLED: "已撤回",
    },
    action_zh={
        Action.ENDORSE: "确认",
        Action.DECLINE: "不同意",
        Action.APPROVE: "批准",
        Action.REJECT: "驳回",
        Action.CANCEL: "撤回",
        Action.START: "开始开通",
        Action.DELIVER: "交付",
        Action.FAIL: "标记开通失败",
        Action.RETRY: "重新开通",
    },
    final=frozenset({S.DELIVERED, S.REJECTED, S.CANCELLED}),
)

#: States in which the center still owes the unit a VM: the provisioning deadline applies.
OPEN_STATES: frozenset[RequestState] = frozenset(
    {S.SUBMITTED, S.ENDORSED, S.APPROVED, S.PROVISIONING, S.FAILED}
)
#: States a request never leaves.
FINAL_STATES: frozenset[RequestState] = REQUEST.final
#: Requests whose resources are spoken for but not yet a VM: they count against the unit's quota at
#: submission, and such a request still needs the IP pool it names.
PENDING_STATES: tuple[RequestState, ...] = (S.SUBMITTED, S.ENDORSED, S.APPROVED, S.PROVISIONING)
#: Requests the center has granted and that are not yet a VM: what counts at approval.
COMMITTED_STATES: tuple[RequestState, ...] = (S.APPROVED, S.PROVISIONING)

_NOT_REQUIRED = "the center does not require endorsement"
_ENDORSE_FIRST = "the center requires the unit lead's endorsement first"
#: The lead's say on a request, which exists only while the center requires endorsement.
_LEAD_ACTIONS = frozenset({Action.ENDORSE, Action.DECLINE})


def sources(action: Action, *, endorsement_required: bool) -> frozenset[RequestState]:
    """The states ``action`` may start from under the center's setting. With endorsement on,
    approval waits for the lead; the lead's endorsement is possible at all only then."""
    if action is Action.APPROVE and endorsement_required:
        return frozenset({S.ENDORSED})
    if action in _LEAD_ACTIONS and not endorsement_required:
        return frozenset()
    return REQUEST.sources(action)


def rule(action: Action, state: str, *, endorsement_required: bool) -> tuple[frozenset[RequestState], str]:
    """``sources=`` and ``hint=`` for :meth:`Lifecycle.check` / :meth:`Lifecycle.move` of a request
    in ``state``: the hint says why the setting refuses, when it is the setting that refuses."""
    allowed = sources(action, endorsement_required=endorsement_required)
    hint = ""
    if action in _LEAD_ACTIONS and not endorsement_required:
        hint = _NOT_REQUIRED
    elif action is Action.APPROVE and endorsement_required and state == S.SUBMITTED:
        hint = _ENDORSE_FIRST
    return allowed, hint


def available(state: str, role: Role, *, endorsement_required: bool) -> list[str]:
    """The actions ``role`` could take on a request in ``state`` (unit scoping aside), for the UI."""
    return REQUEST.available(
        state, role, sources=lambda a: sources(a, endorsement_required=endorsement_required)
    )
