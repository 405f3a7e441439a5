"""Every query of the audit log: the chain's tip (locked while appending), the rows in id order for
the chain check, the newest rows for the command line, and the filtered, paged list the auditor
reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from vmportal.audit.models import AuditEntry, AuditHead
from vmportal.kit import paging

GENESIS = "0" * 64


_HEAD: Any = AuditHead.__table__  # type: ignore[attr-defined]
#: The statements of every audited commit, built once (core, not the ORM: the head is read and
#: moved once per transaction, and the ORM's select, identity map and flush cost more than the SQL).
_LOCK_HEAD = sa.select(_HEAD.c.last_hash).where(_HEAD.c.id == 1).with_for_update()
_MOVE_HEAD = (
    sa.update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(last_id=sa.bindparam("b_last_id"), last_hash=sa.bindparam("b_last_hash"))
)


def lock_head(session: Session) -> str:
    """The hash at the chain's tip, its row locked for the caller's transaction (PostgreSQL: FOR
    UPDATE), so two writers cannot both link to the same predecessor."""
    last_hash = session.execute(_LOCK_HEAD).scalar_one_or_none()
    if last_hash is None:
        # The migration seeds the row; a database emptied by hand gets it back here, race-free.
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(insert(AuditHead).values(id=1, last_id=0, last_hash=GENESIS).on_conflict_do_nothing())
        last_hash = session.execute(_LOCK_HEAD).scalar_one()
    return str(last_hash)


def move_head(session: Session, last_id: int, last_hash: str) -> None:
    """Move the chain's tip (locked by :func:`lock_head` in this transaction) to the row appended last."""
    session.execute(_MOVE_HEAD, {"b_last_id": last_id, "b_last_hash": last_hash})


def insert_entries(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert plain audit rows in one statement (building thousands of SQLModel instances costs more
    than the SQL); their ids in the order of ``rows``."""
    table = AuditEntry.__table__  # type: ignore[attr-defined]
    inserted = session.execute(sa.insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return [int(i) for i in inserted.scalars()]


def link_entries(session: Session, links: list[dict[str, Any]]) -> None:
    """Set ``prev_hash`` and ``hash`` of rows by id (``b_id``), in one executemany."""
    table = AuditEntry.__table__  # type: ignore[attr-defined]
    session.execute(
        sa.update(table)
        .where(table.c.id == sa.bindparam("b_id"))
        .values(prev_hash=sa.bindparam("prev_hash"), hash=sa.bindparam("hash")),
        links,
    )


def head(session: Session) -> AuditHead | None:
    return session.get(AuditHead, 1)


def entries_after(session: Session, last_id: int, batch: int) -> Sequence[AuditEntry]:
    """Up to ``batch`` rows with an id above ``last_id``, in id order (the chain's order)."""
    return session.exec(
        select(AuditEntry).where(col(AuditEntry.id) > last_id).order_by(col(AuditEntry.id)).limit(batch)
    ).all()


def newest_entries(session: Session, limit: int) -> list[AuditEntry]:
    """The ``limit`` newest rows, newest first (``vmportal audit tail``)."""
    return list(session.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)))


@dataclass(frozen=True)
class AuditFilter:
    """The auditor's filters; ``action`` is exact, or a prefix when it ends in ``.*``. Times are
    aware (UTC when given without a zone); ``until`` is exclusive."""

    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    unit_id: int | None = None
    actor: str | None = None
    result: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_entries(
    session: Session, where: AuditFilter, request: paging.PageRequest
) -> tuple[list[AuditEntry], int]:
    """One page of the log, newest first, and how many rows match."""
    query: Any = select(AuditEntry)
    if where.action:
        if where.action.endswith(".*"):
            query = query.where(col(AuditEntry.action).startswith(where.action[:-1], autoescape=True))
        else:
            query = query.where(AuditEntry.action == where.action)
    if where.target_type:
        query = query.where(AuditEntry.target_type == where.target_type)
    if where.target_id:
        query = query.where(AuditEntry.target_id == where.target_id)
    if where.unit_id is not None:
        query = query.where(AuditEntry.unit_id == where.unit_id)
    if where.actor:
        query = query.where(AuditEntry.actor == where.actor)
    if where.result:
        query = query.where(AuditEntry.result == where.result)
    if where.since is not None:
        query = query.where(col(AuditEntry.at) >= where.since)
    if where.until is not None:
        query = query.where(col(AuditEntry.at) < where.until)
    query = query.order_by(col(AuditEntry.id).desc())
    rows, total = paging.page(session, query, request)
    return [row[0] for row in rows], total
