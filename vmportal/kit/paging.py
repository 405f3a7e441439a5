"""Pagination and sorting of list queries, written once for every domain's repository.

A list answers one page of rows and the total that matches the filters; the sort is one of the
columns the list declares sortable, with the row id as the tie-breaker so that pages never overlap
or skip a row when many rows share a sort value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import func, select
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session

T = TypeVar("T")
#: Any select statement; ordering keeps its type.
Q = TypeVar("Q")

#: The largest page any list serves: a bound on memory and time per request.
MAX_LIMIT = 500


@dataclass(frozen=True)
class PageRequest:
    limit: int = 50
    offset: int = 0
    #: A key of the list's sortable columns, optionally prefixed with "-" for descending order.
    sort: str | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def order(
    statement: Q,
    sort: str | None,
    columns: Mapping[str, ColumnElement[Any]],
    *,
    default: str,
    tiebreak: ColumnElement[Any],
) -> Q:
    """``statement`` ordered by ``sort`` (a key of ``columns``, "-key" descending; unknown keys are
    refused by the schema before this point), then by ``tiebreak`` in the same direction."""
    key = sort or default
    descending = key.startswith("-")
    column = columns[key.lstrip("-")]
    query: Any = statement
    if descending:
        return cast(Q, query.order_by(column.desc(), tiebreak.desc()))
    return cast(Q, query.order_by(column.asc(), tiebreak.asc()))


def count(session: Session, statement: Any) -> int:
    """How many rows ``statement`` matches (its ORDER BY, LIMIT and OFFSET ignored). Counted over
    the statement as a subquery, which both databases flatten, so joins and filters count alike."""
    inner = statement.order_by(None).limit(None).offset(None).subquery()
    return int(session.execute(select(func.count()).select_from(inner)).scalar_one())


def page(session: Session, statement: Any, request: PageRequest) -> tuple[Sequence[Any], int]:
    """One page of ``statement``'s rows and the total; ``statement`` carries its filters and order."""
    total = count(session, statement)
    rows = session.execute(statement.limit(min(request.limit, MAX_LIMIT)).offset(request.offset)).all()
    return rows, total
