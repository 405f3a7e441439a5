"""The outbox's dispatch under load: a commit hands its tasks over without needing a second database
connection (request threads each holding one while waiting for another used to exhaust the pool, and
every alert post then waited out the pool's 30 s timeout), the rows are on record as dispatched with
no write of their own, and a task that completes its row in its own transaction commits the two
together."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from vmportal.jobs import outbox
from vmportal.jobs.app import PortalTask, celery_app
from vmportal.jobs.models import OutboxTask
from vmportal.kit import db
from vmportal.kit.settings import Settings, use_settings

PROBE = "tests.outbox_dispatch.probe"
SELF_COMPLETING = "tests.outbox_dispatch.self_completing"
CALLS: list[str] = []


@celery_app.task(base=PortalTask, name=PROBE)
def probe(key: str) -> str:
    CALLS.append(key)
    return key


class _NoClaim(PortalTask):
    abstract = True
    claims = False


@celery_app.task(base=_NoClaim, name=SELF_COMPLETING)
def self_completing(key: str, fail: bool = False) -> str:
    """Writes a row and completes its own outbox row in the same transaction (or fails after both)."""
    with db.transaction() as s:
        outbox.complete_in(s)
        s.add(OutboxTask(task=f"made-by:{key}"))
        if fail:
            raise RuntimeError("the task's work failed")
    CALLS.append(key)
    return key


@pytest.fixture(autouse=True)
def _calls(settings: Settings) -> Iterator[None]:
    CALLS.clear()
    yield
    CALLS.clear()


@pytest.fixture
def one_connection(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """The portal's engine with a pool of a single connection that is given up on after 2 s."""

    def small(url: str, **kwargs: Any) -> sa.Engine:
        kwargs.update(pool_size=1, max_overflow=0, pool_timeout=2)
        return real(url, **kwargs)

    real = sa.create_engine
    monkeypatch.setattr(sa, "create_engine", small)
    engine = db.init(settings)
    monkeypatch.setattr(sa, "create_engine", real)
    yield engine
    engine.dispose()


def rows() -> list[OutboxTask]:
    with db.transaction() as s:
        return list(s.exec(select(OutboxTask).order_by(OutboxTask.id)))  # type: ignore[arg-type]


def test_a_commit_runs_its_task_with_a_single_connection_in_the_pool(one_connection: sa.Engine) -> None:
    with db.transaction() as s:
        outbox.enqueue(s, PROBE, key="alone")
    assert CALLS == ["alone"]
    [row] = rows()
    assert row.completed_at is not None and row.dispatched_at is not None and row.attempts == 1


def test_a_commit_sends_its_task_to_the_broker_with_a_single_connection_in_the_pool(
    settings: Settings, one_connection: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(settings.model_copy(update={"task_mode": "celery"}))
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, kwargs: sent.append({"name": name, **kwargs}))
    with db.transaction() as s:
        outbox.enqueue(s, PROBE, key="to-redis")
    [row] = rows()
    assert sent == [{"name": PROBE, "key": "to-redis", "outbox_id": row.id, "request_id": ""}]
    # On record as dispatched from the start: the send itself wrote nothing.
    assert row.dispatched_at is not None and row.attempts == 1 and row.completed_at is None

    def broker_down(name: str, kwargs: dict[str, Any]) -> None:
        raise ConnectionError("redis: connection refused")

    monkeypatch.setattr(celery_app, "send_task", broker_down)
    with db.transaction() as s:  # the refusal is written after the commit, on the one connection
        outbox.enqueue(s, PROBE, key="refused")
    refused = rows()[-1]
    assert refused.dispatched_at is None and "connection refused" in refused.last_error
    use_settings(settings)


def test_a_task_that_completes_its_row_commits_the_completion_with_its_work() -> None:
    with db.transaction() as s:
        outbox.enqueue(s, SELF_COMPLETING, key="ok")
    task_row, made = rows()
    assert CALLS == ["ok"] and made.task == "made-by:ok"
    assert task_row.completed_at is not None

    # Delivered again (the re-drive, a broker duplicate): the row stays completed as it was.
    completed_at = task_row.completed_at
    self_completing(key="ok", outbox_id=task_row.id, request_id="")
    assert rows()[0].completed_at == completed_at


def test_a_task_whose_work_fails_leaves_its_row_for_the_redrive() -> None:
    with db.transaction() as s:
        outbox.enqueue(s, SELF_COMPLETING, key="broken", fail=True)
    [task_row] = rows()  # the work rolled back, and the completion with it
    assert task_row.completed_at is None and CALLS == []
    assert outbox.redrive(now_offset=timedelta(seconds=-1)) == 1  # sent again, failing again
    [task_row] = rows()
    assert task_row.completed_at is None and task_row.attempts == 2


def test_redrive_records_its_sends_in_one_go(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []
    monkeypatch.setattr(outbox, "_run_local", lambda outbox_id, *a: sent.append(outbox_id))
    with db.transaction() as s:
        for key in ("a", "b", "c"):
            s.add(OutboxTask(task=PROBE, arguments={"key": key}))
    assert outbox.redrive(now_offset=timedelta(seconds=-1)) == 3
    assert sorted(sent) == [r.id for r in rows()]
    assert all(r.dispatched_at is not None and r.attempts == 1 for r in rows())
