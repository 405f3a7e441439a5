"""The transactional outbox (issue 5's "no lost work", used by issue 2's approvals): a task exists
only if the change that needs it committed, is dispatched once, is re-driven when its dispatch was
lost, and a Retriable hypervisor error is retried."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import func, select

from hypervisors.base import Retriable
from vmportal.jobs import outbox
from vmportal.jobs.app import PortalTask, celery_app
from vmportal.jobs.models import OutboxTask
from vmportal.kit import db
from vmportal.kit.settings import Settings, use_settings

PROBE = "tests.outbox.probe"
CALLS: list[str] = []


@celery_app.task(base=PortalTask, name=PROBE)
def probe(key: str, fail_times: int = 0) -> str:
    """Records each run; raises Retriable on its first ``fail_times`` runs for ``key``."""
    CALLS.append(key)
    if CALLS.count(key) <= fail_times:
        raise Retriable(f"hypervisor busy ({key})", defer=0.0)
    return f"done {key}"


@pytest.fixture(autouse=True)
def _calls(settings: Settings) -> Iterator[None]:
    CALLS.clear()
    yield
    CALLS.clear()


def rows() -> list[OutboxTask]:
    with db.transaction() as s:
        return list(s.exec(select(OutboxTask).order_by(OutboxTask.id)))  # type: ignore[arg-type]


def test_a_rolled_back_transaction_leaves_no_task() -> None:
    with pytest.raises(RuntimeError), db.transaction() as s:
        outbox.enqueue(s, PROBE, key="rolled-back")
        s.flush()  # the row was even written, inside the transaction
        raise RuntimeError("the state change failed")
    assert rows() == []
    assert CALLS == []


def test_a_committed_transaction_dispatches_its_task_once() -> None:
    with db.transaction() as s:
        outbox.enqueue(s, PROBE, key="committed")
    assert CALLS == ["committed"]
    [row] = rows()
    assert row.arguments == {"key": "committed"}
    assert row.dispatched_at is not None and row.completed_at is not None
    assert row.attempts == 1
    # Completed: re-driving finds nothing, even much later.
    assert outbox.redrive(now_offset=timedelta(seconds=-3600)) == 0
    assert CALLS == ["committed"]


def test_redrive_sends_a_row_whose_dispatch_was_lost() -> None:
    """The process died between the commit and the dispatch: the row is there, never dispatched."""
    with db.transaction() as s:
        s.add(
            OutboxTask(task=PROBE, arguments={"key": "lost"}, created_at=db.utcnow() - timedelta(minutes=5))
        )
        s.add(OutboxTask(task=PROBE, arguments={"key": "just-now"}))  # its own dispatch is still under way
    assert outbox.redrive() == 1
    assert CALLS == ["lost"]
    lost = next(r for r in rows() if r.arguments == {"key": "lost"})
    assert lost.completed_at is not None and lost.attempts == 1
    assert outbox.redrive() == 0
    assert CALLS == ["lost"]


def test_redrive_sends_a_row_dispatched_long_ago_and_never_completed() -> None:
    """A worker took the task and died (or the broker lost it)."""
    long_ago = db.utcnow() - timedelta(minutes=10)
    with db.transaction() as s:
        s.add(
            OutboxTask(
                task=PROBE,
                arguments={"key": "orphan"},
                created_at=long_ago,
                dispatched_at=long_ago,
                attempts=1,
            )
        )
    assert outbox.redrive() == 1
    assert CALLS == ["orphan"]
    [row] = rows()
    assert row.completed_at is not None and row.attempts == 2


def test_a_task_that_raised_retriable_is_retried_in_process() -> None:
    with db.transaction() as s:
        outbox.enqueue(s, PROBE, key="flaky", fail_times=2)
    assert CALLS == ["flaky", "flaky", "flaky"]
    [row] = rows()
    assert row.completed_at is not None


def test_a_task_that_raised_retriable_is_retried_by_celery() -> None:
    """The worker path: PortalTask turns Retriable into Celery's retry (run eagerly here)."""
    result = probe.apply(kwargs={"key": "celery-flaky", "fail_times": 1})
    assert result.get() == "done celery-flaky"
    assert CALLS == ["celery-flaky", "celery-flaky"]


def test_a_broker_outage_loses_nothing(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery mode with the broker down: the row stays undispatched with the error, and the
    re-drive sends it once the broker is back."""
    use_settings(settings.model_copy(update={"task_mode": "celery"}))
    sent: list[dict[str, Any]] = []

    def broker_down(name: str, kwargs: dict[str, Any]) -> None:
        raise ConnectionError("redis://127.0.0.1:6379: connection refused")

    monkeypatch.setattr(celery_app, "send_task", broker_down)
    with db.transaction() as s:
        outbox.enqueue(s, PROBE, key="during-outage")
    [row] = rows()
    assert row.dispatched_at is None and "connection refused" in row.last_error

    monkeypatch.setattr(celery_app, "send_task", lambda name, kwargs: sent.append({"name": name, **kwargs}))
    with db.transaction() as s:  # a re-drive period later
        stored = s.get(OutboxTask, row.id)
        assert stored is not None
        stored.created_at -= timedelta(minutes=2)
        s.add(stored)
    assert outbox.redrive() == 1
    assert sent == [{"name": PROBE, "key": "during-outage", "outbox_id": row.id, "request_id": ""}]
    [row] = rows()
    assert row.dispatched_at is not None
    use_settings(settings)


def test_provisioning_is_enqueued_under_a_name_that_does_not_clash() -> None:
    """The outbox passes ``request_id`` (the HTTP request's id, for logs) to every task, so the
    provisioning task takes the VM request's id as ``vm_request_id``."""
    from vmportal.request import tasks

    assert tasks.provision.name == "vmportal.request.provision" and tasks.provision.name in celery_app.tasks
    with db.transaction() as s:
        outbox.enqueue(s, "vmportal.request.provision", vm_request_id=987654)
    [row] = rows()
    assert row.completed_at is not None  # ran: a request that does not exist is nothing to do
    with db.transaction() as s:
        assert s.exec(select(func.count()).select_from(OutboxTask)).one() == 1


def test_savepoints_neither_send_early_nor_keep_rolled_back_rows(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLAlchemy fires after_commit when a savepoint is released: nothing may be sent before the
    real commit, and a row of a rolled-back savepoint must never be sent."""
    sent: list[str] = []
    monkeypatch.setattr(outbox, "dispatch", lambda rows: sent.extend(task for _, task, _, _ in rows))
    with db.transaction() as session:
        with session.begin_nested():
            outbox.enqueue(session, "vmportal.test.kept")
        assert sent == []
        nested = session.begin_nested()
        outbox.enqueue(session, "vmportal.test.rolled_back")
        session.flush()
        nested.rollback()
        assert sent == []
    assert sent == ["vmportal.test.kept"]
