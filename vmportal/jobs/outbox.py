"""Dispatching outbox rows to Celery, to an in-process pool, or inline.

``enqueue`` adds a row to the caller's transaction. When that transaction commits, the rows it
added are dispatched; a row whose dispatch was lost (crash, broker down) or whose task never
completed is sent again by ``redrive``, which beat runs every minute (and the embedded portal runs
in a background thread). Tasks are idempotent, so a second delivery is harmless.

The bookkeeping costs as few transactions as it can, because every alert, approval and power
request pays it: a row is written already marked dispatched (it is dispatched right after the
commit; the re-drive treats "dispatched and not completed" exactly like "never dispatched", at the
same age, so a dispatch lost to a crash is still sent again), and only a send the broker refuses
writes again (dispatch time taken back, the error kept). The dispatch waits until the committing
session has given its connection back to the pool: dispatching needs a connection of its own, and
request threads each holding one while waiting for a second would exhaust the pool under load.
On PostgreSQL the completion is written on the claim's own connection, before the claim is let go.

A row's task runs under a *claim* (:func:`claim`): on PostgreSQL a session advisory lock keyed by the
row's id, held on a connection of its own for as long as the task body runs. A second delivery of
the same row that arrives while the first still runs (a re-drive of a clone that takes longer than
the re-drive period, the broker's visibility timeout, a duplicate after a Redis restart) does not
run beside it: it finds the claim taken and leaves the row to its holder. A worker killed with
``kill -9`` loses its connection, PostgreSQL releases the lock at once, and the next delivery runs.
A delivery of a row already completed does nothing at all. ``redrive`` skips claimed rows, and a
row whose task is waiting for its retry counts as dispatched at the time the retry is due.

A *coalesced* task (:func:`coalesce`; alert processing) is one whose run does the work of every
row of its task still waiting, not just its own: it takes them (:func:`take_waiting`, oldest first,
``FOR UPDATE SKIP LOCKED`` so two runs never take the same row and never wait for each other) and
completes them in the transaction that does their work. Every row is still written, so nothing is
lost; only the *send* of a fresh row is left out while a run is already pending (a "run pending"
flag, ``SET NX PX`` in Redis, in memory for the in-process pool, taken by the dispatch and cleared
by the run before it takes rows: a row committed before the clear is taken by that run, a row
committed after it finds the flag free and sends). A pending run whose message is lost only holds
back the sends for the flag's life (:data:`PENDING_TTL_MS`); the re-drive, which always sends,
covers a row left waiting all the same.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import event, or_, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, col, select

from hypervisors.base import Retriable
from vmportal.jobs.broker import celery_app
from vmportal.jobs.models import OutboxTask
from vmportal.kit import context, db
from vmportal.kit.settings import get_settings

log = logging.getLogger(__name__)

_SESSION_KEY = "vmportal_outbox"
_READY_KEY = "vmportal_outbox_ready"  # committed rows waiting for the transaction's end
_COMPLETES_KEY = "vmportal_outbox_completes"  # task runs this transaction marks completed
#: True while dispatching rows enqueue wrote as dispatched already (no need to record the send).
_on_record: ContextVar[bool] = ContextVar("vmportal_outbox_on_record", default=False)
# A task that has been sent this often without completing is left for a human (it shows in /metrics).
MAX_DISPATCHES = 20
_executor: ThreadPoolExecutor | None = None
_futures: set[Future[None]] = set()
_futures_lock = threading.Lock()

#: First key of the advisory locks that claim an outbox row (the second is the row's id): "OBX".
CLAIM_NAMESPACE = 0x4F4258
#: Rows claimed in this process (in-process modes, and every mode on SQLite).
_claimed: set[int] = set()
_claimed_lock = threading.Lock()

Claim = Literal["run", "running", "done"]
#: This thread's claims in force on PostgreSQL, by outbox row: the connection holding each one.
_claims_here = threading.local()


#: Tasks whose run takes every waiting row of its task (see the module docstring).
_coalesced: set[str] = set()
#: How long a "run pending" flag holds back the sends of a coalesced task's fresh rows. Longer than
#: a message normally waits for a worker; a lost message delays the next sends by at most this.
PENDING_TTL_MS = 5000
#: The in-process pool's flags (thread mode). Celery mode keeps them in the broker's Redis, where the
#: API's dispatch and the worker's run both see them; with another broker nothing is held back.
_pending_here: dict[str, float] = {}
_pending_lock = threading.Lock()
_redis_clients: dict[str, Any] = {}


def coalesce(task: str) -> None:
    """Mark ``task`` as coalesced: its run takes every waiting row of the task (:func:`take_waiting`)
    and the dispatch of a fresh row sends nothing while such a run is pending."""
    _coalesced.add(task)


def _pending_key(task: str) -> str:
    # Beside the queue the runs are sent to, in the same Redis database: whoever shares the queue
    # (the API and every worker of one portal) shares the flag. Not keyed by the database URL, which
    # the API and a worker may spell differently: a flag the runs never cleared would hold every
    # post's send back for PENDING_TTL_MS.
    return f"vmportal:run-pending:{task}"


def _redis() -> Any | None:
    """The broker's Redis, for the flags; None when the broker is not Redis (no coalesced sends)."""
    url = get_settings().broker_url
    if not url.startswith("redis"):
        return None
    client = _redis_clients.get(url)
    if client is None:
        import redis

        client = _redis_clients[url] = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    return client


def _take_pending(task: str, mode: str) -> Literal["taken", "held", "unknown"]:
    """For the dispatch of a fresh row of ``task``: ``"taken"`` (no run was pending, this dispatch
    took the "run pending" flag: send), ``"held"`` (a run is pending: it takes the row, send
    nothing) or ``"unknown"`` (not coalesced, or the flag's store is unreachable: send)."""
    if task not in _coalesced or mode == "inline":
        return "unknown"
    if mode == "celery":
        client = _redis()
        if client is None:
            return "unknown"
        try:
            taken = client.set(_pending_key(task), b"1", nx=True, px=PENDING_TTL_MS)
        except Exception:  # Redis down: the send says so on the row, and the re-drive sends again
            return "unknown"
        return "taken" if taken else "held"
    now = time.monotonic()
    with _pending_lock:
        if _pending_here.get(task, 0.0) > now:
            return "held"
        _pending_here[task] = now + PENDING_TTL_MS / 1000
        return "taken"


def run_starting(task: str) -> None:
    """A coalesced run of ``task`` is about to take rows: clear the flag, so that a row committed
    from now on (which this run may not see) sends a run of its own. Before the run's first take."""
    _clear_pending(task)


def _clear_pending(task: str) -> None:
    with _pending_lock:
        _pending_here.pop(task, None)
    client = _redis() if get_settings().effective_task_mode == "celery" else None
    if client is not None:
        try:
            client.delete(_pending_key(task))
        except Exception:
            # The flag then lapses within PENDING_TTL_MS; the rows it held back stay waiting for the
            # next run or the re-drive, never lost.
            log.warning("outbox: the run-pending flag of %s could not be cleared", task)


def take_waiting(session: Session, task: str, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """Up to ``limit`` rows of ``task`` not completed, oldest first, locked for ``session``'s
    transaction and skipping rows another run holds (PostgreSQL; SQLite's writer lock keeps two
    writing transactions apart anyway): (id, arguments). Complete them with :func:`complete_taken`."""
    rows = session.execute(
        select(OutboxTask.id, OutboxTask.arguments)
        .where(col(OutboxTask.task) == task, col(OutboxTask.completed_at).is_(None))
        .order_by(col(OutboxTask.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return [(int(i), dict(arguments or {})) for i, arguments in rows if i is not None]


def complete_taken(session: Session, outbox_ids: list[int]) -> None:
    """Mark rows taken by :func:`take_waiting` completed, in ``session``'s transaction (with the work)."""
    if outbox_ids:
        session.execute(
            update(OutboxTask)
            .where(col(OutboxTask.id).in_(outbox_ids), col(OutboxTask.completed_at).is_(None))
            .values(completed_at=db.utcnow())
            .execution_options(synchronize_session=False)
        )


def current_row() -> int | None:
    """The outbox row of the task running in this context, if any."""
    state = _running.get()
    return state.outbox_id if state is not None else None


def completion_handled() -> None:
    """The running task's body answers for its own row's completion (a coalesced run: it completes
    the rows it took, and a row another run holds is that run's to complete, or the re-drive's),
    so the task base must not mark it completed after the body."""
    state = _running.get()
    if state is not None:
        state.handled = True


def send_again(outbox_id: int, task: str, kwargs: dict[str, Any]) -> None:
    """Send a run of ``task`` under row ``outbox_id`` (a coalesced run that stopped with rows left
    waiting), unless a run is pending already. Recorded only if the send fails."""
    token = _on_record.set(True)
    try:
        dispatch([(outbox_id, task, kwargs, context.request_id.get())])
    finally:
        _on_record.reset(token)


def _held_claims() -> dict[int, Connection]:
    held: dict[int, Connection] | None = getattr(_claims_here, "connections", None)
    if held is None:
        held = _claims_here.connections = {}
    return held


def enqueue(session: Session, task: str, **kwargs: Any) -> OutboxTask:
    # Written as dispatched with the row: it is dispatched right after the commit, and writing that
    # afterwards would cost every task a write transaction of its own. The re-drive treats a row
    # dispatched and not completed exactly like one never dispatched (same age), so a dispatch lost
    # to a crash right after the commit is sent again all the same; a send that fails says so on the
    # row (dispatched_at cleared, last_error), see _send_to_broker.
    row = OutboxTask(
        task=task,
        arguments=kwargs,
        request_id=context.request_id.get(),
        dispatched_at=db.utcnow(),
        attempts=1,
    )
    session.add(row)
    session.info.setdefault(_SESSION_KEY, []).append(row)
    return row


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released: the rows are not committed until the outer commit
    for running in session.info.pop(_COMPLETES_KEY, []):
        running.completed = True
    rows: list[OutboxTask] = session.info.pop(_SESSION_KEY, [])
    # Rows added inside a savepoint that was rolled back are no longer persistent: never send them.
    committed = [r for r in rows if r.id is not None and sa_inspect(r).persistent]
    if committed:
        # Sent once the transaction has ended (_after_transaction_end), not here: at this point the
        # session still holds its connection, and dispatching (marking rows, running a task inline)
        # needs one of its own. Every request thread holding one connection while waiting for a
        # second exhausts the pool under load, and each waits out the pool's 30 s timeout.
        session.info.setdefault(_READY_KEY, []).extend(
            (r.id, r.task, dict(r.arguments), r.request_id) for r in committed if r.id is not None
        )


#: True while :func:`held`: committed rows are not dispatched.
_held = False


@contextmanager
def held() -> Iterator[None]:
    """Dispatch nothing while inside: for work whose transaction its caller rolls back in the end
    (the worker's rehearsal, vmportal.app.warmup), whose sessions commit only savepoints. For a
    single-threaded process only."""
    global _held
    _held = True
    try:
        yield
    finally:
        _held = False


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None or transaction.nested:
        return  # a savepoint ended; the outer transaction is still open
    ready: list[tuple[int, str, dict[str, Any], str]] = session.info.pop(_READY_KEY, [])
    if ready and _held:
        log.debug("outbox: %d rows held back, not dispatched", len(ready))
        return
    if ready:  # committed, and the session's connection is back in the pool
        token = _on_record.set(True)
        try:
            dispatch(ready)
        finally:
            _on_record.reset(token)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    if session.in_transaction():
        return  # only a savepoint rolled back; _after_commit drops its rows
    session.info.pop(_SESSION_KEY, None)  # a rolled-back change has no task
    session.info.pop(_COMPLETES_KEY, None)  # nor the completion of the task that made it


def dispatch(rows: list[tuple[int, str, dict[str, Any], str]]) -> None:
    """Send ``rows`` (id, task, arguments, request id) to their runner, and record it: rows the
    re-drive sends get their dispatch time and attempt in one transaction for the batch; rows just
    committed by :func:`enqueue` were written as dispatched already. A send the broker refuses is
    taken back on its row, with the error, for the re-drive."""
    on_record = _on_record.get()
    mode = get_settings().effective_task_mode
    if mode == "celery":
        sent: list[int] = []
        failed: dict[int, str] = {}
        for outbox_id, task, kwargs, request_id in rows:
            pending = _take_pending(task, mode) if on_record else "unknown"
            if pending == "held":
                continue  # a run is pending: it takes this row (written as dispatched already)
            error = _send_to_broker(outbox_id, task, kwargs, request_id)
            if error is None:
                sent.append(outbox_id)
            else:
                failed[outbox_id] = error
                if pending == "taken":
                    _clear_pending(task)  # no run is pending after all: the next row must send
        try:
            _record_sends([] if on_record else sent, failed)
        except Exception:
            # The change these tasks belong to is committed, and its answer must say so: a row left
            # marked dispatched is sent again by the re-drive all the same.
            log.exception("outbox: the dispatch of %s could not be recorded", [r[0] for r in rows])
        return
    if not on_record:
        _record_sends([r[0] for r in rows], {})
    for outbox_id, task, kwargs, request_id in rows:
        if on_record and _take_pending(task, mode) == "held":
            continue  # a run is pending in the pool: it takes this row
        if mode == "inline":
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


def _record_sends(sent: list[int], failed: dict[int, str]) -> None:
    """One transaction for a batch: ``sent`` rows dispatched now (one attempt more); ``failed`` ones
    not dispatched after all (the re-drive sends them again once they are old enough), with the
    error, the attempt counted."""
    if not sent and not failed:
        return
    with db.transaction() as session:
        if sent:
            session.execute(
                update(OutboxTask)
                .where(col(OutboxTask.id).in_(sent))
                .values(dispatched_at=db.utcnow(), attempts=OutboxTask.attempts + 1)
                .execution_options(synchronize_session=False)
            )
        for outbox_id, error in failed.items():
            session.execute(
                update(OutboxTask)
                .where(col(OutboxTask.id) == outbox_id)
                .values(
                    dispatched_at=None,
                    last_error=error[:2000],
                    # enqueue counted the attempt already; a re-drive's send counts here
                    attempts=OutboxTask.attempts + (0 if _on_record.get() else 1),
                )
                .execution_options(synchronize_session=False)
            )


@dataclass
class Running:
    """The outbox row of the task running in this context (see :func:`running`)."""

    outbox_id: int
    completed: bool = False  # by the task's own transaction (complete_in), now committed
    handled: bool = False  # the body answers for the row's completion (completion_handled)


_running: ContextVar[Running | None] = ContextVar("vmportal_outbox_running", default=None)


@contextmanager
def running(outbox_id: int) -> Iterator[Running]:
    """The task base runs a task body of outbox row ``outbox_id`` inside this block."""
    state = Running(outbox_id)
    token = _running.set(state)
    try:
        yield state
    finally:
        _running.reset(token)


def _completion(outbox_id: int) -> Any:
    """The statement marking a row completed (once: a completed row keeps its first time)."""
    return (
        update(OutboxTask)
        .where(col(OutboxTask.id) == outbox_id, col(OutboxTask.completed_at).is_(None))
        .values(completed_at=db.utcnow())
    )


def complete_in(session: Session) -> None:
    """Mark the outbox row of the task running now completed, in ``session``'s transaction: the
    completion commits with the task's work, or not at all, and costs no transaction of its own.
    Nothing happens outside a task run by the outbox (a direct call, beat)."""
    state = _running.get()
    if state is None:
        return
    session.execute(_completion(state.outbox_id).execution_options(synchronize_session=False))
    session.info.setdefault(_COMPLETES_KEY, []).append(state)


def mark_completed(outbox_id: int) -> None:
    held = _held_claims().get(outbox_id)
    if held is not None:
        # Inside this thread's claim of the row (PostgreSQL): on the claim's own connection, which
        # commits each statement, before the claim is released (so the next claimer sees it done).
        held.execute(_completion(outbox_id))
        held.commit()
        return
    with db.transaction() as session:
        row = session.get(OutboxTask, outbox_id)
        if row is not None and row.completed_at is None:
            row.completed_at = db.utcnow()
            session.add(row)


def note_retry(outbox_id: int, countdown: float, error: str) -> None:
    """The row's task will be retried by the broker in ``countdown`` seconds: ``redrive`` counts it
    as dispatched then, so it does not send a copy while the retry is simply waiting its turn."""
    with db.transaction() as session:
        row = session.get(OutboxTask, outbox_id)
        if row is not None and row.completed_at is None:
            row.dispatched_at = db.utcnow() + timedelta(seconds=countdown)
            row.last_error = error[:2000]
            session.add(row)


def _is_completed(outbox_id: int) -> bool:
    with db.transaction() as session:
        row = session.get(OutboxTask, outbox_id)
        # A row that does not exist (deleted, or another database) is not ours to skip.
        return row is not None and row.completed_at is not None


#: How long a delivery waits for a claim held by another before leaving the row to its holder. A
#: claim of a process that just died is released within moments (its connection closes); a live
#: holder keeps it, and the re-drive remains the safety net should that holder die later.
CLAIM_WAIT_SECONDS = 5.0


@contextmanager
def claim(outbox_id: int, *, wait: float = CLAIM_WAIT_SECONDS) -> Iterator[Claim]:
    """Claim the right to run the task of outbox row ``outbox_id`` until the block ends.

    Yields ``"run"`` (claimed: run the body, mark the row completed inside the block),
    ``"running"`` (another delivery of the same row still held the claim after ``wait`` seconds)
    or ``"done"`` (the row was completed already). See the module docstring for why.
    """
    engine = db.engine()
    if engine.dialect.name != "postgresql":
        with _claimed_lock:
            taken = outbox_id in _claimed
            _claimed.add(outbox_id)
        if taken:
            yield "running"
            return
        try:
            yield "done" if _is_completed(outbox_id) else "run"
        finally:
            with _claimed_lock:
                _claimed.discard(outbox_id)
        return

    # Autocommit: the lock is a session lock (it outlives any transaction, not the connection), and
    # each statement on this connection stands alone, without BEGIN/COMMIT round trips around it.
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    held = False
    try:
        deadline = time.monotonic() + wait
        while True:
            held = bool(
                conn.execute(
                    text("SELECT pg_try_advisory_lock(:ns, :id)"), {"ns": CLAIM_NAMESPACE, "id": outbox_id}
                ).scalar()
            )
            conn.commit()
            if held or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if not held:
            yield "running"
        else:
            # Read after the lock is ours: a holder marks its row completed before it lets go.
            completed = conn.execute(
                select(OutboxTask.completed_at).where(col(OutboxTask.id) == outbox_id)
            ).first()
            conn.commit()
            # A row that does not exist (deleted, or another database) is not ours to skip.
            if completed is not None and completed[0] is not None:
                yield "done"
            else:
                _held_claims()[outbox_id] = conn
                try:
                    yield "run"
                finally:
                    _held_claims().pop(outbox_id, None)
    finally:
        try:
            if held:
                conn.execute(
                    text("SELECT pg_advisory_unlock(:ns, :id)"), {"ns": CLAIM_NAMESPACE, "id": outbox_id}
                )
                conn.commit()
        except Exception:
            # The lock must not go back to the pool with the connection: drop the connection, and
            # PostgreSQL releases the lock with it.
            conn.invalidate()
        finally:
            conn.close()


def claimed_ids(session: Session) -> set[int]:
    """Outbox rows whose task is running right now, in any process."""
    with _claimed_lock:
        ids = set(_claimed)
    if db.is_postgres(session):
        rows = session.execute(
            text(
                # Advisory locks are per database; pg_locks shows the whole cluster's.
                "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid::bigint = :ns AND objsubid = 2 AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"ns": CLAIM_NAMESPACE},
        )
        ids.update(int(r[0]) for r in rows)
    return ids


def _send_to_broker(outbox_id: int, task: str, kwargs: dict[str, Any], request_id: str) -> str | None:
    """Publish one task; the error when the broker refused it (None when sent)."""
    try:
        celery_app.send_task(task, kwargs={**kwargs, "outbox_id": outbox_id, "request_id": request_id})
    except Exception as exc:  # broker down: the row stays undispatched and redrive sends it later
        log.warning("outbox %s: broker unavailable, will re-drive: %s", outbox_id, exc)
        return str(exc) or type(exc).__name__
    return None


def _run_local(outbox_id: int, task: str, kwargs: dict[str, Any], request_id: str) -> None:
    settings = get_settings()
    # Every task module is imported by the application package (vmportal.app.registry) when the
    # process starts, never here: an import that registers a session listener while SQLAlchemy
    # iterates them (this runs from a commit hook) would break the commit.
    target = celery_app.tasks.get(task)
    if target is None:
        log.error(
            "task %s (outbox %s) is not registered: vmportal.app.registry was not imported", task, outbox_id
        )
        return
    for attempt in range(settings.task_max_retries + 1):
        try:
            target(**kwargs, outbox_id=outbox_id, request_id=request_id)
            return
        except Retriable as exc:
            if attempt == settings.task_max_retries:
                target.give_up(exc, **kwargs)
                mark_completed(outbox_id)
                return
            delay = min(max(exc.defer, 0.05 * 2**attempt), 30.0)
            note_retry(outbox_id, delay, exc.message)
            time.sleep(delay)
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
        running = claimed_ids(session)
        query = select(OutboxTask).where(col(OutboxTask.completed_at).is_(None))
        if running:
            query = query.where(col(OutboxTask.id).not_in(running))
        rows = session.exec(
            query.where(col(OutboxTask.attempts) < MAX_DISPATCHES)
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
    token = _on_record.set(False)  # these sends are recorded by dispatch (even from inside a task)
    try:
        dispatch(batch)
    finally:
        _on_record.reset(token)
    return len(batch)
