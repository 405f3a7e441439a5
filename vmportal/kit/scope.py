"""Unit scoping: what an actor may see, written once.

The rule: a unit's people (unit_admin, unit_lead) see their own unit's records and nothing of another
unit; the center's people and the auditor see every unit. :func:`sees_every_unit` is that rule; every
form of it below — a Python check for one record, a filter on a query, the roles the SQL reader of the
VM list compiles into its statement — derives from it, so changing who sees what touches one function.

Another unit's record answers 404, not 403: a unit's users cannot even learn that it exists
(docs/decisions.md).
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from sqlalchemy import false

from policies.roles import Actor, Role
from vmportal.kit import errors

#: Center roles that act (approve, contain, restore); the auditor only reads.
CENTER: tuple[Role, ...] = (Role.CENTER_ADMIN, Role.CENTER_OPERATOR)
CENTER_READ: tuple[Role, ...] = (Role.CENTER_ADMIN, Role.CENTER_OPERATOR, Role.AUDITOR)

# Any select statement (SQLAlchemy's or SQLModel's, of any columns): the filter keeps its type.
Q = TypeVar("Q")


def sees_every_unit(role: Role) -> bool:
    """The scoping rule itself: whether ``role`` sees the records of every unit."""
    return role not in (Role.UNIT_ADMIN, Role.UNIT_LEAD)


def unit_scoped_roles() -> tuple[Role, ...]:
    """The roles limited to their own unit (for statements written in SQL, e.g. the VM reader)."""
    return tuple(r for r in Role if not sees_every_unit(r))


def can_see_unit(actor: Actor, unit_id: int | None) -> bool:
    """Whether ``actor`` may see a record owned by ``unit_id`` (None: owned by no unit)."""
    if sees_every_unit(actor.role):
        return True
    return unit_id is not None and actor.unit_id == unit_id


def ensure_visible(actor: Actor, unit_id: int | None, what: str, ident: object) -> None:
    """404 for a record ``actor`` may not see (see the module docstring for why not 403)."""
    if not can_see_unit(actor, unit_id):
        raise errors.NotFound(what, ident)


def unit_conditions(actor: Actor, unit_column: Any) -> list[Any]:
    """The rule as WHERE conditions on the row's owning unit ``unit_column``: none for those who see
    every unit; for a unit's people, their unit (nothing at all for one without a unit)."""
    if sees_every_unit(actor.role):
        return []
    if actor.unit_id is None:
        return [false()]
    return [unit_column == actor.unit_id]


def visible(statement: Q, actor: Actor, unit_column: Any) -> Q:
    """``statement`` limited to the rows ``actor`` may see, by the row's owning unit ``unit_column``."""
    conditions = unit_conditions(actor, unit_column)
    if not conditions:
        return statement
    query: Any = statement
    return cast(Q, query.where(*conditions))


def shows_personal_data(actor: Actor) -> bool:
    """National ID and mobile numbers are shown in clear to center_admin only."""
    return actor.role == Role.CENTER_ADMIN
