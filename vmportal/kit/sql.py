"""Insert-or-nothing on a unique key, without a savepoint.

Savepoints are avoided on purpose in this package: the outbox dispatches the tasks a session enqueued
from SQLAlchemy's ``after_commit`` event, which also fires when a *savepoint* commits, so a savepoint
released after an ``outbox.enqueue`` would send the task before the enclosing transaction commits.
``INSERT … ON CONFLICT DO NOTHING`` (PostgreSQL and SQLite alike) settles a race on a unique key
without one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel


def insert_or_nothing(session: Session, row: SQLModel, conflict: list[str]) -> int | None:
    """Insert ``row`` (its defaults applied); its new id, or None when ``conflict`` columns clashed."""
    table: Any = row.__table__  # type: ignore[attr-defined]
    values = {
        c.name: getattr(row, c.key)
        for c in table.columns
        if not (c.primary_key and getattr(row, c.key) is None)
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=conflict)
    session.flush()
    new_id = session.execute(stmt.returning(table.c.id)).scalar_one_or_none()
    return int(new_id) if new_id is not None else None
