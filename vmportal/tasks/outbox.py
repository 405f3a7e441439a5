"""Dispatching outbox rows to Celery, to an in-process pool, or inline.

``enqueue`` adds a row to the caller's transaction. When that transaction commits, the rows it
added are dispatched; a row whose dispatch was lost (crash, broker down) or whose task never
completed is sent again by ``redrive``, which beat runs every minute (and the embedded portal runs
in a background thread). Tasks are idempotent, so a second delivery is harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import event, or_
from sqlmodel import Session, col, select

from hypervisors.base import Retriable
from vmportal import context, db
from vmportal.settings import get_settings
from vmportal.tasks.models import OutboxTask

log = logging.getLogger(__name__)

_SESSION_KEY = "vmportal_outbox"
# A task that has been sent this often without completing is left for a human (it shows in /metrics).
MAX_DISPATCHES = 20
_executor: ThreadPoolExecutor | None = None
_futures: set[Future[None]] = set()
_futures_lock = threading.Lock()


def enqueue(session: Session, task: str, **kwargs: Any) -> OutboxTask:
    row = OutboxTask(task=task, arguments=kwargs, request_id=context.request_id.get())
    session.add(row)
    session.info.setdefault(_SESSION_KEY, []).append(row)
    return row


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    rows: list[OutboxTask] = session.info.pop(_SESSION_KEY, [])
    if rows:
        dispatch([(r.id, r.task, dict(r.arguments), r.request_id) for r in rows if r.id is not None])


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_SESSION_KEY, None)  # a rolled-back change has no task


def dispatch(rows: list[tuple[int, str, dict[str, Any], str]]) -> None:
    mode = get_settings().effective_task_mode
    for outbox_id, task, kwargs, request_id in rows:
        if mode == "celery":
            _send_to_broker(outbox_id, task, kwargs, request_id)
        elif mode == "inline":
            _run_local(outbox_id, task, kwargs, request_id)
        else:
            future = _pool().submit(_run_local, outbox_id, task, kwargs, request_id)
            with _futures_lock:
                _futures.add(future)
            future.add_done_callback(_forget)


def _forget(future: Future[None]) -> None:
    with _futures_lock:
        _futures.discard(future)


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(get_settings().task_workers, thread_name_prefix="vmportal-task")
    return _executor


def wait_idle(timeout: float = 30.0) -> None:
    """Block until every in-process task has finished (tests, shutdown)."""
    deadline = time.monotonic() + timeout
    while True:
        with _futures_lock:
            pending = list(_futures)
        if not pending:
            return
        for f in pending:
            f.result(timeout=max(deadline - time.monotonic(), 0.01))


def _mark_dispatched(outbox_id: int, error: str = "") -> None:
    with db.transaction() as session:
        row = session.get(OutboxTask, outbox_id)
        if row is None:
            return
        if error:
            row.last_error = error[:2000]
        else:
            row.dispatched_at = db.utcnow()
        row.attempts += 1
        session.add(row)


def mark_completed(outbox_id: int) -> None:
    with db.transaction() as session:
        row = session.get(OutboxTask, outbox_id)
        if row is not None and row.completed_at is None:
            row.completed_at = db.utcnow()
            session.add(row)


def _send_to_broker(outbox_id: int, task: str, kwargs: dict[str, Any], request_id: str) -> None:
    from vmportal.tasks.app import celery_app

    try:
        celery_app.send_task(task, kwargs={**kwargs, "outbox_id": outbox_id, "request_id": request_id})
    except Exception as exc:  # broker down: the row stays undispatched and redrive sends it later
        log.warning("outbox %s: broker unavailable, will re-drive: %s", outbox_id, exc)
        _mark_dispatched(outbox_id, error=str(exc))
        return
    _mark_dispatched(outbox_id)


def _run_local(outbox_id: int, task: str, kwargs: dict[str, Any], request_id: str) -> None:
    from vmportal.tasks import registry  # noqa: F401  (registers every task on the app)
    from vmportal.tasks.app import celery_app

    _mark_dispatched(outbox_id)
    settings = get_settings()
    target = celery_app.tasks[task]
    for attempt in range(settings.task_max_retries + 1):
        try:
            target(**kwargs, outbox_id=outbox_id, request_id=request_id)
            return
        except Retriable as exc:
            if attempt == settings.task_max_retries:
                target.give_up(exc, **kwargs)
                mark_completed(outbox_id)
                return
            time.sleep(min(max(exc.defer, 0.05 * 2**attempt), 30.0))
        except Exception:
            log.exception("task %s (outbox %s) failed", task, outbox_id)
            return


def redrive(now_offset: timedelta | None = None) -> int:
    """Send again every task that was never dispatched, or dispatched long ago and not completed."""
    settings = get_settings()
    now = db.utcnow()
    age = timedelta(seconds=settings.outbox_redrive_seconds) if now_offset is None else now_offset
    stale = now - age
    with db.transaction() as session:
        rows = session.exec(
            select(OutboxTask)
            .where(col(OutboxTask.completed_at).is_(None))
            .where(col(OutboxTask.attempts) < MAX_DISPATCHES)
            .where(
                or_(
                    col(OutboxTask.dispatched_at).is_(None) & (col(OutboxTask.created_at) < stale),
                    col(OutboxTask.dispatched_at) < stale,
                )
            )
            .order_by(col(OutboxTask.id))
            .limit(500)
        ).all()
        batch = [(r.id, r.task, dict(r.arguments), r.request_id) for r in rows if r.id is not None]
    dispatch(batch)
    return len(batch)
