"""A finding's lifecycle as data: which action moves it from which state to which, and who asks.

    open ──notify (center, or the e-mail delivered)──> notified
    open | notified ──fix (the unit's admin, or the center on its behalf, with a note)──> fixed
    fixed ──retest (center)──> retested ──pass──> closed
                                        └─fail──> open   (a new deadline; the unit is told again)
    open | notified | fixed ──close (center, with a reason: withdrawn, not applicable)──> closed

A retest is one call (``POST /findings/{id}/retest {passed}``) that passes through ``retested`` to
``closed`` or back to ``open``, so ``pass`` and ``fail`` are moves but not calls of their own
(:data:`CALLABLE`). A finding is moved only through :meth:`FINDING.move <vmportal.kit.states.Lifecycle.move>`:
compare-and-set on the state, so of two concurrent actions one wins and the other gets a 409 naming
the state found, in both languages.

Notices and violations have states too, but no lifecycle here: their tables carry no ``updated_at``
(the move helper writes it) and each of their few changes is made under a row lock by its service.
"""

from __future__ import annotations

import enum

from policies.roles import Actor, Role
from vmportal.incidents.models import Finding, FindingState
from vmportal.kit.states import Lifecycle, Move

F = FindingState


class FindingAction(enum.StrEnum):
    NOTIFY = "notify"
    FIX = "fix"
    RETEST = "retest"
    PASS = "pass"  # noqa: S105  (the retest's outcome, not a secret)
    FAIL = "fail"
    CLOSE = "close"


A = FindingAction
CENTER: frozenset[Role] = frozenset({Role.CENTER_ADMIN, Role.CENTER_OPERATOR})

FINDING: Lifecycle[FindingState, FindingAction] = Lifecycle(
    model=Finding,
    what="finding",
    what_zh="安全隐患",
    states=FindingState,
    table=(
        Move(A.NOTIFY, {F.OPEN: F.NOTIFIED}, CENTER),
        Move(A.FIX, {F.OPEN: F.FIXED, F.NOTIFIED: F.FIXED}, CENTER | {Role.UNIT_ADMIN}),
        Move(A.RETEST, {F.FIXED: F.RETESTED}, CENTER),
        Move(A.PASS, {F.RETESTED: F.CLOSED}, CENTER),
        Move(A.FAIL, {F.RETESTED: F.OPEN}, CENTER),
        Move(A.CLOSE, {F.OPEN: F.CLOSED, F.NOTIFIED: F.CLOSED, F.FIXED: F.CLOSED}, CENTER),
    ),
    state_zh={
        F.OPEN: "待整改",
        F.NOTIFIED: "已通知",
        F.FIXED: "单位已整改",
        F.RETESTED: "已复测",
        F.CLOSED: "已关闭",
    },
    action_zh={
        A.NOTIFY: "通知单位",
        A.FIX: "报告已整改",
        A.RETEST: "复测",
        A.PASS: "复测通过",
        A.FAIL: "复测未通过",
        A.CLOSE: "关闭",
    },
    final=frozenset({F.CLOSED}),
    versioned=True,
)

#: What a user may call (pass and fail are the retest's outcomes, not calls of their own).
CALLABLE: tuple[FindingAction, ...] = (A.NOTIFY, A.FIX, A.RETEST, A.CLOSE)
#: States in which the unit still has to act: the only ones that can be overdue.
AWAITING_UNIT: frozenset[FindingState] = frozenset({F.OPEN, F.NOTIFIED})


def available(finding: Finding, actor: Actor) -> list[str]:
    """The calls ``actor`` could make on ``finding`` now, for the UI. A unit's administrator acts on
    their own unit's findings only (another unit's are not even visible to them)."""
    if actor.role is Role.UNIT_ADMIN and actor.unit_id != finding.unit_id:
        return []
    return FINDING.available(finding.state, actor.role, actions=CALLABLE)
