"""The gauges ``/metrics`` reads from the database at scrape time: open requests past their deadline,
and outbox tasks committed but not completed (what an operator's alert rules watch)."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient

from tests.factories import Factory
from vmportal.jobs.models import OutboxTask
from vmportal.kit import db
from vmportal.request.models import RequestState, VMRequest


def gauge(client: TestClient, name: str) -> float:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    found = re.search(rf"^{name} (\S+)$", answer.text, re.MULTILINE)
    assert found is not None, f"{name} missing from the scrape"
    return float(found.group(1))


def test_overdue_requests_and_pending_tasks_are_counted_at_scrape_time(
    client: TestClient, factory: Factory
) -> None:
    unit = factory.unit()
    user = factory.user("unit_admin", unit)
    conn = factory.connection()
    now = db.utcnow()
    overdue_before = gauge(client, "vmportal_requests_overdue")
    pending_before = gauge(client, "vmportal_outbox_pending")

    def request(state: RequestState, due_in: timedelta) -> None:
        with db.transaction() as s:
            s.add(
                VMRequest(
                    unit_id=unit.id or 0,
                    requested_by=user.id or 0,
                    state=state.value,
                    purpose="teaching",
                    system_name="教学平台",
                    hostname="teach-01",
                    connection_id=conn.id or 0,
                    template_ref="tpl",
                    vcpus=2,
                    memory_gib=4,
                    disk_gib=40,
                    due_at=now + due_in,
                )
            )

    request(RequestState.SUBMITTED, -timedelta(hours=1))  # open and late: counted
    request(RequestState.FAILED, -timedelta(days=1))  # failed is still open (to be retried): counted
    request(RequestState.SUBMITTED, timedelta(days=2))  # open, not yet due
    request(RequestState.DELIVERED, -timedelta(days=3))  # late but finished
    with db.transaction() as s:
        s.add(OutboxTask(task="vmportal.test.noop", arguments={}, created_at=now))  # not completed
        s.add(OutboxTask(task="vmportal.test.noop", arguments={}, created_at=now, completed_at=now))

    assert gauge(client, "vmportal_requests_overdue") == overdue_before + 2
    assert gauge(client, "vmportal_outbox_pending") == pending_before + 1
