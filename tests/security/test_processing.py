"""The alert pipeline as the production worker runs it: the post stores and queues, the processing task
is delivered (possibly twice), the containment task follows. What a center user would notice: one
incident and one containment however often a task is delivered, an alert whose processing failed is
processed again by the re-drive (nothing accepted is lost), and the source list says when each source
last posted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import Factory
from tests.security.helpers import calls, center_admin, incidents, nics, post, register, suricata_c2
from vmportal.alerts import ingest, signing
from vmportal.alerts.ingest import PROCESS_TASK
from vmportal.incidents.containment import CONTAIN_TASK
from vmportal.jobs import outbox
from vmportal.jobs.app import celery_app
from vmportal.jobs.models import OutboxTask
from vmportal.kit import db
from vmportal.kit.settings import use_settings


@pytest.fixture
def broker(factory: Factory, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Celery mode with the messages kept here instead of Redis; the test delivers them."""
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, kwargs: sent.append((name, dict(kwargs))))
    use_settings(factory.settings.model_copy(update={"task_mode": "celery"}))
    yield sent
    use_settings(factory.settings)


def deliver(message: tuple[str, dict[str, Any]]) -> Any:
    name, kwargs = message
    return celery_app.tasks[name](**kwargs)


def outbox_row(outbox_id: int) -> OutboxTask:
    with db.transaction() as s:
        row = s.get(OutboxTask, outbox_id)
        assert row is not None
        return row


def test_tasks_delivered_twice_make_one_incident_and_one_adapter_call(
    client: TestClient, factory: Factory, broker: list[tuple[str, dict[str, Any]]]
) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata")
    assert post(client, source, suricata_c2(str(vm.ip_address))).status_code == 202
    [process] = [m for m in broker if m[0] == PROCESS_TASK]
    # The answer came with the task on record as dispatched, not yet done.
    row = outbox_row(process[1]["outbox_id"])
    assert row.dispatched_at is not None and row.completed_at is None

    assert deliver(process) == "1 matched, 0 unmatched"
    assert outbox_row(process[1]["outbox_id"]).completed_at is not None
    assert deliver(process) == "nothing to do"  # a second delivery (re-drive, broker duplicate)

    [contain] = [m for m in broker if m[0] == CONTAIN_TASK]
    assert deliver(contain) == "contained"
    assert deliver(contain) is None  # the claim finds the row completed: skipped
    found = incidents(client, h, vm_id=vm.id)
    assert len(found) == 1 and found[0]["alert_count"] == 1 and found[0]["state"] == "contained"
    assert calls(factory, vm, "set_network") == 1 and not any(nics(factory, vm))


def test_an_alert_whose_processing_failed_is_processed_by_the_redrive(
    client: TestClient,
    factory: Factory,
    broker: list[tuple[str, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata")
    assert post(client, source, suricata_c2(str(vm.ip_address))).status_code == 202
    [process] = list(broker)
    broker.clear()

    def database_gone(*_: Any, **__: Any) -> Any:
        raise ConnectionError("the database went away mid-task")

    monkeypatch.setattr(ingest, "attach", database_gone)
    with pytest.raises(ConnectionError):
        deliver(process)
    # The completion rolled back with the work: the row waits for the re-drive, the alert is kept.
    assert outbox_row(process[1]["outbox_id"]).completed_at is None
    assert incidents(client, h, vm_id=vm.id) == []

    monkeypatch.undo()
    monkeypatch.setattr(celery_app, "send_task", lambda name, kwargs: broker.append((name, dict(kwargs))))
    assert outbox.redrive(now_offset=timedelta(seconds=-1)) == 1
    assert [m[0] for m in broker] == [PROCESS_TASK]
    assert deliver(broker[0]) == "1 matched, 0 unmatched"
    assert [m[0] for m in broker[1:]] == [CONTAIN_TASK]
    deliver(broker[1])
    [incident] = incidents(client, h, vm_id=vm.id)
    assert incident["state"] == "contained"


def test_the_source_list_says_when_a_source_last_posted(client: TestClient, factory: Factory) -> None:
    h = center_admin(client, factory)
    vm = factory.vm(factory.unit())
    source = register(client, h, "suricata", auth="hmac")
    assert source["last_post_at"] is None

    def last_post_at() -> datetime:
        shown = client.get(f"/api/v1/alert-sources/{source['id']}", headers=h).json()["last_post_at"]
        return datetime.fromisoformat(shown)

    def post_at(at: datetime) -> int:
        body = json.dumps(suricata_c2(str(vm.ip_address))).encode()
        headers = signing.signed_headers(body, source["secret"])
        return ingest.receive_post(source["name"], body, headers, "127.0.0.1", received_at=at).status

    first = db.utcnow()
    assert post_at(first) == 202
    assert last_post_at() == first
    # Within a second it is not written again: every post of a busy sender would queue on the row.
    assert post_at(first + timedelta(milliseconds=500)) == 202
    assert last_post_at() == first
    later = first + timedelta(seconds=2)
    assert post_at(later) == 202
    assert last_post_at() == later
