"""The task base every vmportal task uses, and the Celery application (:mod:`vmportal.jobs.broker`)."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task

from hypervisors.base import Retriable
from vmportal.jobs import outbox
from vmportal.jobs.broker import celery_app, configure
from vmportal.kit import context, db
from vmportal.kit.settings import get_settings

log = logging.getLogger(__name__)


class PortalTask(Task):
    """Runs the task body with the request id it was started under, marks its outbox row done,
    and turns :class:`Retriable` hypervisor errors into a retry with exponential backoff.

    Task bodies open their own transaction (``db.transaction()``) and must be idempotent: the
    state machine in the database decides whether there is still anything to do.
    """

    abstract = True
    max_retries = get_settings().task_max_retries
    #: Whether a delivery runs under its outbox row's claim (``outbox.claim``: one run at a time,
    #: none once completed). A task whose body serialises itself on the rows it works on (row locks
    #: and a state it re-reads under them) can do without: ``claims = False`` saves every run the
    #: claim's round trips, and the body marks its row completed in its own transaction
    #: (``outbox.complete_in``), so the completion commits with the work.
    claims = True

    def give_up(self, exc: Retriable, **kwargs: Any) -> None:
        """Called once when retries are exhausted. Tasks whose record must show the failure
        (a request that stays 'provisioning' forever helps nobody) override this."""
        log.error("task %s gave up after %d retries: %s", self.name, self.max_retries, exc.message)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        outbox_id = kwargs.pop("outbox_id", None)
        token = context.request_id.set(kwargs.pop("request_id", "") or "")
        try:
            if outbox_id is None:  # beat's periodic tasks, direct calls
                return self._run(None, args, kwargs)
            if not self.claims:
                return self._run(outbox_id, args, kwargs)
            # One delivery of an outbox row at a time, and none after it completed (outbox.claim).
            with outbox.claim(outbox_id) as claim:
                if claim != "run":
                    from vmportal.kit.observability import TASKS

                    log.info("task %s (outbox %s): skipped, %s", self.name, outbox_id, claim)
                    TASKS.labels(self.name, f"skipped_{claim}").inc()
                    return None
                return self._run(outbox_id, args, kwargs)
        finally:
            context.request_id.reset(token)

    def _run(self, outbox_id: int | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from vmportal.kit.observability import TASK_LATENCY, TASKS

        started = time.perf_counter()
        try:
            try:
                try:
                    if outbox_id is None:
                        result = super().__call__(*args, **kwargs)
                        completed = False
                    else:
                        with outbox.running(outbox_id) as run:
                            result = super().__call__(*args, **kwargs)
                        completed = run.completed or run.handled
                except Exception as exc:
                    # A database too busy right now (SQLite's writer lock held past its timeout, no
                    # free pooled connection) is a reason to try again, never to fail the work.
                    if db.is_busy(exc):
                        raise Retriable(f"database busy: {exc}", defer=1.0) from exc
                    raise
            except Retriable as exc:
                if self.request.called_directly:  # in-process runner retries by itself
                    raise
                retries = self.request.retries
                if retries >= self.max_retries:
                    # Out of retries: let the task record the failure on its record, and finish,
                    # so the outbox stops re-sending it.
                    self.give_up(exc, **kwargs)
                    if outbox_id is not None:
                        outbox.mark_completed(outbox_id)
                    TASKS.labels(self.name, "gave_up").inc()
                    return None
                countdown = min(max(exc.defer, 2.0**retries), 300.0)
                log.warning("task %s retrying in %.0fs: %s", self.name, countdown, exc.message)
                if outbox_id is not None:
                    outbox.note_retry(outbox_id, countdown, exc.message)
                    kwargs["outbox_id"] = outbox_id
                kwargs["request_id"] = context.request_id.get()
                TASKS.labels(self.name, "retry").inc()
                raise self.retry(exc=exc, countdown=countdown, kwargs=kwargs) from exc
            except Exception:
                TASKS.labels(self.name, "error").inc()
                raise
            if outbox_id is not None and not completed:
                outbox.mark_completed(outbox_id)
            TASKS.labels(self.name, "ok").inc()
            return result
        finally:
            TASK_LATENCY.labels(self.name).observe(time.perf_counter() - started)


__all__ = ["PortalTask", "celery_app", "configure"]
