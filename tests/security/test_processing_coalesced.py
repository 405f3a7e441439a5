"""Coalesced alert processing (issue 12): posts that arrive while a processing run is pending send no
message of their own; one run takes every waiting post's alerts, completes their outbox rows, and
loops until none is left. What a center user would notice stays as before: a lone alert is sent for
processing at once, nothing accepted is lost (broker down, message lost, run failed), and nothing is
done twice (one incident, one containment per VM) however runs and deliveries overlap."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlmodel import col, select

from tests.factories import Factory
from tests.security.helpers import center_admin, incidents, post, register, suricata_c2
from vmportal.alerts import ingest
from vmportal.alerts.ingest import PROCESS_TASK
from vmportal.incidents.containment import CONTAIN_TASK
from vmportal.jobs import outbox
from vmportal.jobs.app import celery_app
from vmportal.jobs.models import OutboxTask
from vmportal.kit import db
from vmportal.kit.settings import use_settings

REDIS = "redis://127.0.0.1:6379/15"
Messages = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def broker(factory: Factory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Messages]:
    """Celery mode on a real Redis for the run-pending flag (a key of this test's own), the messages
    kept here instead of sent; the test delivers them."""
    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.fail(
            "no Redis on 127.0.0.1:6379: the run-pending flag needs the real one (make bootstrap starts it)"
        )
    key = f"vmportal:test-run-pending:{uuid.uuid4().hex}"
    monkeypatch.setattr(outbox, "_pending_key", lambda task: f"{key}:{task}")
    sent: Messages = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, kwargs: sent.append((name, dict(kwargs))))
    use_settings(factory.settings.model_copy(update={"task_mode": "celery", "broker_url": REDIS}))
    yield sent
    use_settings(factory.settings)
    redis.Redis.from_url(REDIS).delete(f"{key}:{PROCESS_TASK}")


def deliver(message: tuple[str, dict[str, Any]]) -> Any:
    name, kwargs = message
    return celery_app.tasks[name](**kwargs)


def processing(messages: Messages) -> Messages:
    return [m for m in messages if m[0] == PROCESS_TASK]


def rows() -> list[OutboxTask]:
    with db.transaction() as s:
        return list(
            s.exec(select(OutboxTask).where(OutboxTask.task == PROCESS_TASK).order_by(col(OutboxTask.id)))
        )


def test_posts_while_a_run_is_pending_share_it_and_a_post_after_it_starts_sends_again(
    client: TestClient, factory: Factory, broker: Messages
) -> None:
    h = center_admin(client, factory)
    vms = [factory.vm(factory.unit()) for _ in range(4)]
    source = register(client, h, "suricata")
    for vm in vms[:3]:
        assert post(client, source, suricata_c2(str(vm.ip_address))).status_code == 202
    # The first post sent its run at once (a lone alert waits no longer than before); the next two,
    # arriving while that run was pending, sent nothing: their rows are on record, waiting.
    [run] = processing(broker)
    waiting = rows()
    assert len(waiting) == 3 and all(r.dispatched_at is not None and r.completed_at is None for r in waiting)

    assert deliver(run) == "3 matched, 0 unmatched"
    assert all(r.completed_at is not None for r in rows())
    assert deliver(run) == "nothing to do"  # delivered twice: its row and its alerts are done

    # The run cleared the flag when it started: the next post sends a run of its own.
    assert post(client, source, suricata_c2(str(vms[3].ip_address))).status_code == 202
    [_, second] = processing(broker)
    assert deliver(second) == "1 matched, 0 unmatched"

    for contain in [m for m in broker if m[0] == CONTAIN_TASK]:
        assert deliver(contain) == "contained"
        assert deliver(contain) is None
    for vm in vms:
        [incident] = incidents(client, h, vm_id=vm.id)
        assert incident["alert_count"] == 1 and incident["state"] == "contained"


def test_a_lost_run_holds_nothing_back_for_good(
    client: TestClient, factory: Factory, broker: Messages, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = center_admin(client, factory)
    vms = [factory.vm(factory.unit()) for _ in range(3)]
    source = register(client, h, "suricata")
    monkeypatch.setattr(outbox, "PENDING_TTL_MS", 200)
    assert post(client, source, suricata_c2(str(vms[0].ip_address))).status_code == 202
    assert post(client, source, suricata_c2(str(vms[1].ip_address))).status_code == 202
    assert len(processing(broker)) == 1
    broker.clear()  # the pending run's message is lost (Redis restarted empty)

    # The flag lapses: the next post sends a run, and that run takes the held-back rows too.
    threading.Event().wait(0.3)
    assert post(client, source, suricata_c2(str(vms[2].ip_address))).status_code == 202
    [run] = processing(broker)
    assert deliver(run) == "3 matched, 0 unmatched"
    assert all(r.completed_at is not None for r in rows())
    for vm in vms:
        assert len(incidents(client, h, vm_id=vm.id)) == 1


def test_the_redrive_sends_rows_a_lost_run_held_back(
    client: TestClient, factory: Factory, broker: Messages
) -> None:
    h = center_admin(client, factory)
    vms = [factory.vm(factory.unit()) for _ in range(2)]
    source = register(client, h, "suricata")
    for vm in vms:
        assert post(client, source, suricata_c2(str(vm.ip_address))).status_code == 202
    broker.clear()  # lost, and no post follows
    # The re-drive sends every row dispatched and not completed, flag or no flag.
    assert outbox.redrive(now_offset=timedelta(seconds=-1)) == 2
    first, second = processing(broker)
    assert deliver(first) == "2 matched, 0 unmatched"
    assert deliver(second) == "nothing to do"
    assert all(r.completed_at is not None for r in rows())
    for vm in vms:
        assert len(incidents(client, h, vm_id=vm.id)) == 1


def test_a_post_while_redis_is_down_is_kept_and_processed_by_the_redrive(
    client: TestClient, factory: Factory, broker: Messages, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata")
    # Redis gone: neither the flag nor the send can be had; the post is stored all the same.
    monkeypatch.setattr(outbox, "_redis_clients", {REDIS: redis.Redis.from_url("redis://127.0.0.1:1")})

    def refused(name: str, kwargs: dict[str, Any]) -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(celery_app, "send_task", refused)
    assert post(client, source, suricata_c2(str(vm.ip_address))).status_code == 202
    [row] = rows()
    assert row.dispatched_at is None and "refused" in row.last_error and row.completed_at is None

    monkeypatch.undo()
    monkeypatch.setattr(outbox, "_pending_key", lambda task: f"vmportal:test:{uuid.uuid4().hex}")
    monkeypatch.setattr(celery_app, "send_task", lambda name, kwargs: broker.append((name, dict(kwargs))))
    assert outbox.redrive(now_offset=timedelta(seconds=-1)) == 1
    [run] = processing(broker)
    assert deliver(run) == "1 matched, 0 unmatched"
    assert len(incidents(client, h, vm_id=vm.id)) == 1


def test_a_failed_run_rolls_back_its_batch_and_the_next_run_takes_it(
    client: TestClient, factory: Factory, broker: Messages, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = center_admin(client, factory)
    vms = [factory.vm(factory.unit()) for _ in range(3)]
    source = register(client, h, "suricata")
    for vm in vms[:2]:
        assert post(client, source, suricata_c2(str(vm.ip_address))).status_code == 202
    [run] = processing(broker)

    def database_gone(*_: Any, **__: Any) -> Any:
        raise ConnectionError("the database went away mid-run")

    with monkeypatch.context() as m:
        m.setattr(ingest, "attach", database_gone)
        with pytest.raises(ConnectionError):
            deliver(run)
    # Nothing of the batch committed: both rows wait, the alerts are kept as received.
    assert all(r.completed_at is None for r in rows())
    assert incidents(client, h, vm_id=vms[0].id) == []
    # The run had cleared the flag: the next post sends a run, which takes all three.
    assert post(client, source, suricata_c2(str(vms[2].ip_address))).status_code == 202
    [_, second] = processing(broker)
    assert deliver(second) == "3 matched, 0 unmatched"
    assert all(r.completed_at is not None for r in rows())


def test_a_run_takes_bounded_batches_until_none_is_left(
    client: TestClient, factory: Factory, broker: Messages, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = center_admin(client, factory)
    vms = [factory.vm(factory.unit()) for _ in range(5)]
    source = register(client, h, "suricata")
    for vm in vms:
        assert post(client, source, suricata_c2(str(vm.ip_address))).status_code == 202
    monkeypatch.setattr(ingest, "PROCESS_CHUNK", 2)
    batches: list[int] = []
    real = ingest._process

    def counting(s: Any, found: list[Any]) -> dict[str, int]:
        batches.append(len(found))
        return real(s, found)

    monkeypatch.setattr(ingest, "_process", counting)
    [run] = processing(broker)
    assert deliver(run) == "5 matched, 0 unmatched"
    assert batches == [2, 2, 1]
    assert all(r.completed_at is not None for r in rows())


def test_two_runs_at_once_take_different_alerts_and_never_wait_for_each_other(
    client: TestClient, factory: Factory, broker: Messages, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.engine().dialect.name != "postgresql":
        pytest.skip(
            "SKIP LOCKED: on SQLite the writer lock runs two writing transactions one after the other"
        )
    h = center_admin(client, factory)
    vms = [factory.vm(factory.unit()) for _ in range(2)]
    source = register(client, h, "suricata")
    assert post(client, source, suricata_c2(str(vms[0].ip_address))).status_code == 202
    [first] = processing(broker)

    inside, release = threading.Event(), threading.Event()
    real = ingest._process

    def held(s: Any, found: list[Any]) -> dict[str, int]:
        if threading.current_thread().name == "run-a":
            inside.set()
            assert release.wait(30)
        return real(s, found)

    monkeypatch.setattr(ingest, "_process", held)
    results: dict[str, Any] = {}
    a = threading.Thread(target=lambda: results.setdefault("a", deliver(first)), name="run-a")
    a.start()
    try:
        assert inside.wait(30)
        # Run A holds the first post's row. A second delivery of the same message, and a post
        # arriving meanwhile (run A cleared the flag: it sends), do not wait for A.
        assert deliver(first) == "nothing to do"
        assert post(client, source, suricata_c2(str(vms[1].ip_address))).status_code == 202
        [_, second] = processing(broker)
        assert deliver(second) == "1 matched, 0 unmatched"
    finally:
        release.set()
        a.join(30)
    assert results["a"] == "1 matched, 0 unmatched"
    assert all(r.completed_at is not None for r in rows())
    for vm in vms:
        [incident] = incidents(client, h, vm_id=vm.id)
        assert incident["alert_count"] == 1


def test_the_in_process_pool_processes_every_post(client: TestClient, factory: Factory) -> None:
    """Embedded mode: the in-process pool, its flag in memory; a post while a run is pending
    submits nothing, and every alert is processed all the same."""
    use_settings(factory.settings.model_copy(update={"task_mode": "thread"}))
    try:
        h = center_admin(client, factory)
        vms = [factory.vm(factory.unit()) for _ in range(6)]
        source = register(client, h, "suricata")
        for vm in vms:
            assert post(client, source, suricata_c2(str(vm.ip_address))).status_code == 202
        outbox.wait_idle()
        assert all(r.completed_at is not None for r in rows())
        for vm in vms:
            assert len(incidents(client, h, vm_id=vm.id)) == 1
    finally:
        outbox.wait_idle()
        use_settings(factory.settings)


def test_a_send_refused_after_taking_the_flag_lets_the_next_post_send(
    client: TestClient, factory: Factory, broker: Messages, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = center_admin(client, factory)
    vms = [factory.vm(factory.unit()) for _ in range(2)]
    source = register(client, h, "suricata")
    with monkeypatch.context() as m:

        def refused(name: str, kwargs: dict[str, Any]) -> None:
            raise ConnectionError("the broker refused the message")

        m.setattr(celery_app, "send_task", refused)
        assert post(client, source, suricata_c2(str(vms[0].ip_address))).status_code == 202
    # No run is pending after all: the next post must not wait for a flag nobody will clear.
    assert post(client, source, suricata_c2(str(vms[1].ip_address))).status_code == 202
    [run] = processing(broker)
    assert deliver(run) == "2 matched, 0 unmatched"
    assert all(r.completed_at is not None for r in rows())
    assert len(incidents(client, h, vm_id=vms[0].id)) == 1


def test_a_run_past_its_budget_sends_a_run_for_the_rest(
    client: TestClient, factory: Factory, broker: Messages, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = center_admin(client, factory)
    vms = [factory.vm(factory.unit()) for _ in range(3)]
    source = register(client, h, "suricata")
    for vm in vms:
        assert post(client, source, suricata_c2(str(vm.ip_address))).status_code == 202
    monkeypatch.setattr(ingest, "PROCESS_CHUNK", 2)
    monkeypatch.setattr(ingest, "RUN_BUDGET_SECONDS", 0.0)
    [run] = processing(broker)
    assert deliver(run) == "2 matched, 0 unmatched"  # one batch, then the budget is spent
    [_, rest] = processing(broker)
    assert rest[1]["outbox_id"] == run[1]["outbox_id"]  # under the run's own (completed) row
    assert deliver(rest) == "1 matched, 0 unmatched"
    assert all(r.completed_at is not None for r in rows())
    for vm in vms:
        assert len(incidents(client, h, vm_id=vm.id)) == 1
