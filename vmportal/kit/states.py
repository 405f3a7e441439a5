"""The one state-machine helper every lifecycle uses: a transition table, the check, the move.

A lifecycle (request, incident, finding, …) is declared as data — which action moves a record from
which states to which, and which roles may ask for it — and moved only through :meth:`Lifecycle.move`,
which checks the table and writes with compare-and-set (``UPDATE … WHERE id = :id AND state =
:expected``). Of two concurrent actions on one record one succeeds and the other gets a 409 naming the
state the record is in now, in both languages. Nothing here knows a domain: the tables live in each
domain's ``lifecycle.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, col, select

from policies.roles import Role
from vmportal.kit import errors
from vmportal.kit.db import utcnow

S = TypeVar("S", bound=enum.StrEnum)
A = TypeVar("A", bound=enum.StrEnum)

#: The portal itself (a task), not a user: a move only the portal's own code makes.
PORTAL: frozenset[Role] = frozenset()


@dataclass(frozen=True)
class Move(Generic[S, A]):
    """``action`` takes a record from each key of ``moves`` to its value; ``roles`` may ask for it."""

    action: A
    moves: Mapping[S, S]
    roles: frozenset[Role] = field(default=PORTAL)


@dataclass(frozen=True)
class Lifecycle(Generic[S, A]):
    """A record type's transition table and the only way to change its state.

    ``model`` is the table (it has ``id``, ``state`` and ``updated_at`` columns; ``version`` too when
    ``versioned``); ``what``/``what_zh`` name the record in error messages; ``state_zh`` and
    ``action_zh`` name states and actions in Chinese; ``final`` are the states a record never leaves
    (a move into one also sets ``closed_at`` when the model has it and ``on_final`` values).
    """

    model: type[SQLModel]
    what: str
    what_zh: str
    states: type[S]
    table: tuple[Move[S, A], ...]
    state_zh: Mapping[S, str]
    action_zh: Mapping[A, str]
    final: frozenset[S] = frozenset()
    versioned: bool = False
    #: Extra values written by a move into a final state (e.g. freeing a unique key).
    on_final: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        actions = [m.action for m in self.table]
        if len(set(actions)) != len(actions):
            raise ValueError(f"{self.what}: an action is declared twice")

    # ---- reading the table -------------------------------------------------------------------------

    def transition(self, action: A) -> Move[S, A]:
        for move in self.table:
            if move.action == action:
                return move
        raise KeyError(action)

    @property
    def actions(self) -> list[A]:
        return [m.action for m in self.table]

    def sources(self, action: A) -> frozenset[S]:
        return frozenset(self.transition(action).moves)

    def state_name_zh(self, state: str) -> str:
        try:
            return self.state_zh.get(self.states(state), errors.state_name_zh(state))
        except ValueError:
            return errors.state_name_zh(state)

    def check(self, action: A, state: str, *, sources: Iterable[S] | None = None, hint: str = "") -> S:
        """The state ``action`` leads to from ``state``; else 409 naming ``state`` (both languages).

        ``sources`` narrows where the action may start from (a setting of the center can, e.g.
        require endorsement before approval); ``hint`` adds why, in English, to the answer."""
        moves = self.transition(action).moves
        allowed = frozenset(moves) if sources is None else frozenset(sources) & frozenset(moves)
        try:
            current: S | None = self.states(state)
        except ValueError:
            current = None
        if current is not None and current in allowed:
            return moves[current]
        raise self.conflict(action, state, allowed, hint=hint)

    def conflict(
        self, action: A, state: str, allowed: Iterable[S] = (), *, hint: str = ""
    ) -> errors.StateConflict:
        names = sorted(s.value for s in allowed)
        message = f"cannot {action.value} a {self.what} in state '{state}'"
        if hint:
            message += f": {hint}"
        elif names:
            message += f" (only from: {', '.join(names)})"
        exc = errors.StateConflict(self.what, state, action.value, message=message)
        exc.message_zh = (
            f"{self.what_zh}当前状态为“{self.state_name_zh(state)}”，"
            f"不能执行“{self.action_zh.get(action, errors.action_name_zh(action.value))}”"
        )
        return exc

    def may(self, role: Role, action: A) -> bool:
        return role in self.transition(action).roles

    def available(
        self,
        state: str,
        role: Role,
        *,
        actions: Iterable[A] | None = None,
        sources: Callable[[A], Iterable[S]] | None = None,
    ) -> list[str]:
        """The actions ``role`` could take on a record in ``state`` (unit scoping aside), for the UI."""
        out = []
        for action in self.actions if actions is None else actions:
            move = self.transition(action)
            starts = frozenset(move.moves) if sources is None else frozenset(sources(action))
            if role in move.roles and state in {s.value for s in starts}:
                out.append(action.value)
        return out

    # ---- moving a record ---------------------------------------------------------------------------

    def move(
        self,
        session: Session,
        record: SQLModel,
        action: A,
        /,
        *,
        sources: Iterable[S] | None = None,
        hint: str = "",
        **values: Any,
    ) -> S:
        """Move ``record`` by ``action`` with compare-and-set; ``values`` are written in the same UPDATE.

        The row changes only if it is still in the state this transaction read; otherwise 409 naming
        the state it is in now. The object is kept in step with what was written, without a flush."""
        ident = getattr(record, "id", None)
        assert ident is not None, "a record is moved once it has been written"
        expected = record.state  # type: ignore[attr-defined]
        target = self.check(action, expected, sources=sources, hint=hint)
        now = utcnow()
        values = {**values, "state": target.value, "updated_at": now}
        if self.versioned:
            values["version"] = record.version + 1  # type: ignore[attr-defined]
        if target in self.final:
            values.update({k: v for k, v in self.on_final.items() if k not in values})
            if "closed_at" in self.model.model_fields:
                values.setdefault("closed_at", now)
        model: Any = self.model
        result = session.exec(
            update(model)
            .where(col(model.id) == ident, col(model.state) == expected)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            current = session.exec(select(model.state).where(col(model.id) == ident)).first()
            raise self.conflict(action, current or "deleted", self.sources(action), hint=hint)
        for key, value in values.items():
            set_committed_value(record, key, value)
        return target
