"""Statements written once for any table: insert-or-nothing on a unique key, a count of the rows that
match some conditions, and the batched delete of old rows.

The last two serve the application package's upkeep of the two outboxes (``app/retention``,
``app/metrics``), whose tables belong to the layers below every domain (``jobs``, ``mail``): the
conditions (what is old, what is pending) stay with the caller, the statement is written here.

Insert-or-nothing avoids a savepoint, as this package does on purpose: the outbox dispatches the
tasks a session enqueued from SQLAlchemy's ``after_commit`` event, which also fires when a
*savepoint* commits, so a savepoint released after an ``outbox.enqueue`` would send the task before
the enclosing transaction commits. ``INSERT … ON CONFLICT DO NOTHING`` (PostgreSQL and SQLite alike)
settles a race on a unique key without one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel, delete, func, select

#: Insert-or-nothing statements, built once per (table, dialect, unique key): building one per row,
#: and its cache key over every value, cost more than the round trip (the values are parameters).
_INSERTS: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def _insert_statement(session: Session, table: Any, conflict: list[str]) -> Any:
    name = session.get_bind().dialect.name
    key = (table.name, name, tuple(conflict))
    stmt = _INSERTS.get(key)
    if stmt is None:
        dialect = postgresql if name == "postgresql" else sqlite
        stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=conflict).returning(table.c.id)
        _INSERTS[key] = stmt
    return stmt


def insert_or_nothing(session: Session, row: SQLModel, conflict: list[str]) -> int | None:
    """Insert ``row`` (its defaults applied); its new id, or None when ``conflict`` columns clashed."""
    table: Any = row.__table__  # type: ignore[attr-defined]
    values = {
        c.name: getattr(row, c.key)
        for c in table.columns
        if not (c.primary_key and getattr(row, c.key) is None)
    }
    session.flush()
    return insert_values_or_nothing(session, table, values, conflict)


def insert_values_or_nothing(
    session: Session, table: Any, values: dict[str, Any], conflict: list[str]
) -> int | None:
    """Like :func:`insert_or_nothing` for a row given as column values (the columns' defaults fill
    the rest), without building a model instance; pending ORM changes are not flushed first."""
    new_id = session.execute(_insert_statement(session, table, conflict), values).scalar_one_or_none()
    return int(new_id) if new_id is not None else None


def count_where(session: Session, model: type[SQLModel], conditions: list[ColumnElement[bool]]) -> int:
    """How many rows of ``model``'s table meet every one of ``conditions``."""
    return int(session.exec(select(func.count()).select_from(model).where(*conditions)).one())


def delete_oldest(
    session: Session, model: type[SQLModel], id_column: Any, conditions: list[ColumnElement[bool]], batch: int
) -> tuple[int, int]:
    """Delete up to ``batch`` rows of ``model`` that meet ``conditions``, lowest ids first; answers
    (how many were read, how many were deleted). Fewer read than ``batch``: nothing older is left.

    Oldest first, by primary key: the scan stops as soon as it has a batch, and old rows are the low
    ids, so it reads little beyond what it deletes. The delete states the conditions again: a row is
    deleted only if it still meets them as it did when read (a concurrent writer may have changed it)."""
    ids = [
        int(i) for i in session.exec(select(id_column).where(*conditions).order_by(id_column).limit(batch))
    ]
    if not ids:
        return 0, 0
    result = session.exec(
        delete(model).where(id_column.in_(ids), *conditions).execution_options(synchronize_session=False)
    )
    return len(ids), int(result.rowcount or 0)
