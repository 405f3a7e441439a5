"""Every query of VM requests and their deadline reminders.

Unit scoping of the request list goes through :func:`vmportal.kit.scope.visible`; aggregates are
plain ``(count, vcpus, memory_gib, disk_gib)`` totals that the quota domain turns into resources.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, and_, exists, or_
from sqlmodel import Session, col, func, select, update

from policies.deadline import AT_RISK
from policies.roles import Actor
from vmportal.kit import paging
from vmportal.kit.scope import visible
from vmportal.request.lifecycle import OPEN_STATES
from vmportal.request.models import ReminderKind, RequestReminder, RequestState, VMRequest
from vmportal.unit.models import Unit

#: count, Σ vcpus, Σ memory GiB, Σ disk GiB of some requests.
Totals = tuple[int, int, int, int]

#: The list's sortable columns, as the table's own columns for kit.paging.
_ID = sa.inspect(VMRequest).c.id
_SORT = {
    "id": _ID,
    "due_at": sa.inspect(VMRequest).c.due_at,
    "submitted_at": sa.inspect(VMRequest).c.submitted_at,
}
#: The keys :func:`page` accepts as ``sort`` ("-key" descending).
SORT_KEYS = frozenset(_SORT)


def get(session: Session, request_id: int) -> VMRequest | None:
    return session.get(VMRequest, request_id)


@dataclass(frozen=True)
class RequestFilters:
    state: RequestState | None = None
    unit_id: int | None = None
    #: Open requests due within 48 hours; with ``overdue`` too, either.
    at_risk: bool = False
    #: Open requests past their due time.
    overdue: bool = False


def page(
    session: Session,
    actor: Actor,
    filters: RequestFilters,
    *,
    limit: int,
    offset: int,
    now: datetime,
    sort: str = "-id",
) -> tuple[list[VMRequest], int]:
    """One page of the requests ``actor`` may see, newest first unless ``sort`` (a key of SORT_KEYS,
    "-key" descending) says otherwise, and how many match in all."""
    query = visible(select(VMRequest), actor, col(VMRequest.unit_id))
    if filters.unit_id is not None:
        query = query.where(VMRequest.unit_id == filters.unit_id)
    if filters.state is not None:
        query = query.where(VMRequest.state == filters.state.value)
    is_open = col(VMRequest.state).in_([s.value for s in OPEN_STATES])
    due = col(VMRequest.due_at)
    windows = []
    if filters.at_risk:
        windows.append(and_(is_open, due >= now, due <= now + AT_RISK))
    if filters.overdue:
        windows.append(and_(is_open, due < now))
    if windows:
        query = query.where(or_(*windows))
    total = paging.count(session, query)
    ordered = paging.order(query, sort, _SORT, default="-id", tiebreak=_ID)
    # Offset and limit here, not paging.page: this list has always served pages of up to 1,000.
    return list(session.exec(ordered.offset(offset).limit(limit))), total


#: A listed request with its unit's Chinese and English names.
Listed = tuple[VMRequest, str, str]


@dataclass(frozen=True)
class Part:
    """One list of a page read with others (:func:`lists_with_units`): the requests in any of
    ``states``, ordered by ``sort`` (a key of SORT_KEYS, "-key" descending, the id breaking
    ties), ``limit`` of them after the first ``offset``."""

    states: tuple[RequestState, ...]
    limit: int
    offset: int = 0
    sort: str = "due_at"


def _sort_key(key: str) -> Callable[[Listed], tuple[Any, int]]:
    """A listed request's place in a list sorted by ``key``, the id breaking ties (paging.order)."""
    return lambda listed: (getattr(listed[0], key), listed[0].id or 0)


def lists_with_units(
    session: Session, actor: Actor, parts: Iterable[Part], *, counted: bool = False
) -> tuple[list[list[Listed]], int | None]:
    """The requests of each part that ``actor`` may see, each with its unit's names, in one
    statement; and, with ``counted``, how many are in the first part's states in all (None
    without). The approval queue's lists: its waiting page, the requests being provisioned and the
    latest delivered ones, one round trip for the three.

    Each part picks its ids with its own order and limit; the rows of the picked ids come back
    with their unit's names (and the total, a scalar subquery run once) and are put back in each
    part's order here. Only a first part past its end (no row to carry the total) counts alone."""
    parts = list(parts)

    def among(query: Any, states: tuple[RequestState, ...]) -> Any:
        return visible(query, actor, col(VMRequest.unit_id)).where(
            col(VMRequest.state).in_([s.value for s in states])
        )

    picks = [
        sa.select(
            paging.order(among(sa.select(_ID, sa.literal(n).label("part")), p.states), p.sort, _SORT,
                         default="-id", tiebreak=_ID).offset(p.offset).limit(p.limit).subquery()
        )
        for n, p in enumerate(parts)
    ]  # fmt: skip
    picked = sa.union_all(*picks).subquery("picked")
    columns: list[Any] = [VMRequest, col(Unit.name_zh), col(Unit.name_en), picked.c.part]
    if counted:
        columns.append(
            among(sa.select(func.count()).select_from(VMRequest), parts[0].states).scalar_subquery()
        )
    statement = (
        select(*columns).join(picked, picked.c.id == _ID).join(Unit, col(Unit.id) == col(VMRequest.unit_id))
    )
    rows = session.execute(statement).all()
    lists: list[list[Listed]] = [[] for _ in parts]
    for row in rows:
        lists[row[3]].append((row[0], row[1], row[2] or ""))
    for listed, p in zip(lists, parts, strict=True):
        listed.sort(key=_sort_key(p.sort.lstrip("-")), reverse=p.sort.startswith("-"))
    if not counted:
        return lists, None
    if rows:
        return lists, int(rows[0][4])
    if not parts[0].offset:
        return lists, 0
    return lists, paging.count(session, among(sa.select(_ID), parts[0].states))


def _totals() -> list[sa.ColumnElement[Any]]:
    return [
        func.count(),
        *(func.coalesce(func.sum(getattr(VMRequest, c)), 0) for c in ("vcpus", "memory_gib", "disk_gib")),
    ]


def _as_totals(values: Iterable[Any]) -> Totals:
    count, vcpus, memory, disk = (int(v or 0) for v in values)
    return count, vcpus, memory, disk


def totals_of_unit(
    session: Session, unit_id: int, states: Iterable[str], *, exclude: int | None = None
) -> Totals:
    """What the unit's requests in ``states`` ask for (without request ``exclude``)."""
    statement = sa.select(*_totals()).where(
        col(VMRequest.unit_id) == unit_id, col(VMRequest.state).in_(list(states))
    )
    if exclude is not None:
        statement = statement.where(col(VMRequest.id) != exclude)
    return _as_totals(session.connection().execute(statement).one())


def totals_by_unit(session: Session, unit_ids: Iterable[int], states: Iterable[str]) -> Mapping[int, Totals]:
    """The same per unit, in one grouped query; a unit without such requests is absent."""
    statement = (
        sa.select(col(VMRequest.unit_id), *_totals())
        .where(col(VMRequest.unit_id).in_(list(unit_ids)), col(VMRequest.state).in_(list(states)))
        .group_by(col(VMRequest.unit_id))
    )
    return {int(row[0]): _as_totals(row[1:]) for row in session.connection().execute(statement)}


def overdue_count(session: Session, now: datetime) -> int:
    """How many open requests are past their provisioning deadline at ``now`` (the scrape-time gauge
    ``vmportal_requests_overdue``)."""
    return int(
        session.exec(
            select(func.count())
            .select_from(VMRequest)
            .where(col(VMRequest.due_at) < now, col(VMRequest.state).in_([s.value for s in OPEN_STATES]))
        ).one()
    )


def count_naming_pool(session: Session, pool_id: int, states: Iterable[str]) -> int:
    return session.exec(
        select(func.count())
        .select_from(VMRequest)
        .where(VMRequest.pool_id == pool_id, col(VMRequest.state).in_(list(states)))
    ).one()


def unlink_pool(session: Session, pool_id: int) -> None:
    """The requests that named the pool keep their record without it."""
    session.exec(update(VMRequest).where(col(VMRequest.pool_id) == pool_id).values(pool_id=None))


# ---- deadline reminders --------------------------------------------------------------------------


def _not_reminded(kind: ReminderKind) -> ColumnElement[bool]:
    return ~exists(
        select(RequestReminder.id).where(
            col(RequestReminder.request_id) == col(VMRequest.id), col(RequestReminder.kind) == kind.value
        )
    )


def owed_reminders(session: Session, now: datetime, limit: int) -> list[int]:
    """Open requests owed a reminder at ``now`` (overdue, or due within 48 hours, and not yet told
    so), the most urgent first."""
    due = col(VMRequest.due_at)
    rows = session.exec(
        select(VMRequest.id)
        .where(
            col(VMRequest.state).in_([state.value for state in OPEN_STATES]),
            or_(
                and_(due < now, _not_reminded(ReminderKind.OVERDUE)),
                and_(due >= now, due <= now + AT_RISK, _not_reminded(ReminderKind.DUE_SOON)),
            ),
        )
        .order_by(due, col(VMRequest.id))
        .limit(limit)
    ).all()
    return [int(r) for r in rows if r is not None]


def reminded(session: Session, request_id: int, kind: ReminderKind) -> bool:
    return (
        session.exec(
            select(RequestReminder.id).where(
                col(RequestReminder.request_id) == request_id, col(RequestReminder.kind) == kind.value
            )
        ).first()
        is not None
    )
