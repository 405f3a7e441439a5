"""Appending to and verifying the hash-chained audit log.

Each row's hash is SHA-256 over its canonical JSON (every column except ``hash``, ``prev_hash``
included), so editing any field, deleting a row, or truncating the tail breaks the chain:
``verify`` walks rows in id order, and the tip is compared against :class:`AuditHead`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import event
from sqlmodel import Session

from vmportal.audit import repository
from vmportal.audit.models import AuditEntry
from vmportal.audit.repository import GENESIS, AuditFilter
from vmportal.kit import context, paging
from vmportal.kit.db import utcnow

__all__ = [
    "GENESIS",
    "AuditFilter",
    "Note",
    "VerifyResult",
    "Who",
    "entry_hash",
    "list_entries",
    "record",
    "record_many",
    "verify",
]


@dataclass(frozen=True)
class Who:
    """The actor of an audited change: a user, the portal itself, or an alert source."""

    actor: str
    actor_id: int | None = None
    role: str = ""

    @classmethod
    def system(cls, what: str = "system") -> Who:
        return cls(actor=what)


def _canonical(entry: AuditEntry) -> bytes:
    body = {
        "id": entry.id,
        "at": entry.at.isoformat(timespec="microseconds") if isinstance(entry.at, datetime) else entry.at,
        "actor_id": entry.actor_id,
        "actor": entry.actor,
        "actor_role": entry.actor_role,
        "unit_id": entry.unit_id,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "before": entry.before,
        "after": entry.after,
        "result": entry.result,
        "detail": entry.detail,
        "request_id": entry.request_id,
        "prev_hash": entry.prev_hash,
    }
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def entry_hash(entry: AuditEntry) -> str:
    return hashlib.sha256(_canonical(entry)).hexdigest()


def _jsonable(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # Round-trip through JSON so the hashed form equals what the JSON column will give back.
    return None if value is None else json.loads(json.dumps(value, default=str, ensure_ascii=False))


#: ``session.info`` key of the rows recorded in the session's transaction, not yet on the chain.
_PENDING = "vmportal.audit.pending"


def _row(
    who: Who,
    action: str,
    target_type: str,
    target_id: object,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    result: str,
    detail: str,
    unit_id: int | None,
) -> dict[str, Any]:
    return {
        "at": utcnow(),
        "actor_id": who.actor_id,
        "actor": who.actor,
        "actor_role": who.role,
        "unit_id": unit_id,
        "action": action,
        "target_type": target_type,
        "target_id": str(target_id),
        "before": _jsonable(before),
        "after": _jsonable(after),
        "result": result,
        "detail": detail[:2000],
        "request_id": context.request_id.get(),
        "prev_hash": "",
        "hash": "",
    }


def record(
    session: Session,
    who: Who,
    action: str,
    target_type: str,
    target_id: object,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    result: str = "ok",
    detail: str = "",
    unit_id: int | None = None,
) -> None:
    """Record one row in the caller's transaction: it commits or rolls back with the change.

    The row joins the chain when the transaction commits (:func:`_link_pending`), not here: the
    chain's head is one row that every audited transaction locks, and locking it at the first
    audited step held it across everything the transaction did next (a vCenter call, a mail
    rendered, the next alert's match), so that every other audited writer queued behind it. Locked
    at commit, it is held for one insert and one update."""
    row = _row(who, action, target_type, target_id, before, after, result, detail, unit_id)
    session.info.setdefault(_PENDING, []).append(row)


@dataclass(frozen=True)
class Note:
    """One audit row to record with :func:`record_many`."""

    action: str
    target_type: str
    target_id: object
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: str
    unit_id: int | None = None


def record_many(session: Session, who: Who, notes: list[Note]) -> None:
    """Record ``notes`` (an inventory sync can audit thousands of rows at once); like :func:`record`,
    they join the chain at commit."""
    pending = session.info.setdefault(_PENDING, [])
    pending.extend(
        _row(who, n.action, n.target_type, n.target_id, n.before, n.after, "ok", n.detail, n.unit_id)
        for n in notes
    )


def _append(session: Session, rows: list[dict[str, Any]]) -> None:
    """Put ``rows`` on the chain in a fixed number of statements: lock the head, insert every row,
    link them in id order (hashed by :func:`entry_hash`, so ``vmportal audit verify`` checks them
    like any other) and move the head once. Ids are handed out while the head is locked, so a
    concurrent writer's rows come after these, and the chain runs in id order."""
    previous = repository.lock_head(session)
    for row, entry_id in zip(rows, repository.insert_entries(session, rows), strict=True):
        row["id"] = entry_id
    links = []
    for row in sorted(rows, key=lambda r: int(r["id"])):  # the chain runs in id order
        row["prev_hash"] = previous
        row["hash"] = previous = entry_hash(cast(AuditEntry, SimpleNamespace(**row)))
        links.append({"b_id": row["id"], "prev_hash": row["prev_hash"], "hash": row["hash"]})
    repository.link_entries(session, links)
    repository.move_head(session, int(links[-1]["b_id"]), previous)


#: True while :func:`discarded`.
_discarding = False


@contextmanager
def discarded() -> Iterator[None]:
    """Inside, a commit joins no row to the chain: for work whose caller rolls all of it back in the
    end (the worker's rehearsal, vmportal.app.warmup, whose sessions commit savepoints only). Its
    rows would never stay, but their inserts would take ids of the chain's sequence, and the gap
    they left is what ``verify`` rightly reads as a row removed. For a single-threaded process only."""
    global _discarding
    _discarding = True
    try:
        yield
    finally:
        _discarding = False


@event.listens_for(Session, "before_commit")
def _link_pending(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint is released: its rows join the chain with the outer commit
    rows: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    if rows and not _discarding:
        _append(session, rows)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    if session.in_transaction():
        return  # only a savepoint rolled back (nothing is recorded inside one)
    session.info.pop(_PENDING, None)  # a change rolled back leaves no audit row


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_at: int | None = None
    reason: str = ""


def verify(session: Session, batch: int = 5000) -> VerifyResult:
    """Walk the chain; report the first row whose link or content does not hold."""
    prev_hash = GENESIS
    prev_id = 0
    checked = 0
    last_seen = 0
    while True:
        rows = repository.entries_after(session, last_seen, batch)
        if not rows:
            break
        for row in rows:
            assert row.id is not None
            if row.id != prev_id + 1:
                return VerifyResult(False, checked, prev_id + 1, f"row {prev_id + 1} is missing")
            if row.prev_hash != prev_hash:
                return VerifyResult(False, checked, row.id, f"row {row.id} does not link to row {prev_id}")
            if entry_hash(row) != row.hash:
                return VerifyResult(False, checked, row.id, f"row {row.id} was altered after it was written")
            prev_hash, prev_id = row.hash, row.id
            checked += 1
        last_seen = rows[-1].id or last_seen
    head = repository.head(session)
    if head is not None and (head.last_id != prev_id or head.last_hash != prev_hash):
        return VerifyResult(
            False,
            checked,
            prev_id + 1,
            f"the chain ends at row {prev_id} but its tip says row {head.last_id}",
        )
    return VerifyResult(True, checked)


def list_entries(
    session: Session, where: AuditFilter, request: paging.PageRequest
) -> tuple[list[AuditEntry], int]:
    """The audit log as the auditor reads it: newest first, filtered, one page and the total.
    Who may read it is the caller's gate (center_admin and auditor)."""
    return repository.list_entries(session, where, request)
