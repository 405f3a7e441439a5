"""The outbox claim on PostgreSQL (``vmportal.jobs.outbox.claim``): one run of a task at a time, a
claim freed by PostgreSQL when its holder dies, claimed rows left alone by the re-drive, a waiting retry
not duplicated. In-process against the test's own database; the fault tests show the same through
real workers."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.production.harness import PG_BASE, Stack, wait_for
from vmportal.jobs import outbox
from vmportal.jobs.models import OutboxTask
from vmportal.kit import db


def new_row(**fields: Any) -> int:
    with db.transaction() as s:
        row = OutboxTask(task="tests.production.noop", arguments={}, **fields)
        s.add(row)
        s.flush()
        assert row.id is not None
        return row.id


def test_one_run_at_a_time_then_done(stack: Stack) -> None:
    row_id = new_row()
    holding, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def first() -> None:
        with outbox.claim(row_id) as claim:
            seen.append(claim)
            holding.set()
            release.wait(timeout=30)
            outbox.mark_completed(row_id)

    holder = threading.Thread(target=first)
    holder.start()
    assert holding.wait(timeout=30)
    try:
        with db.transaction() as s:
            assert row_id in outbox.claimed_ids(s)
        with outbox.claim(row_id, wait=0.3) as second:
            assert second == "running"
    finally:
        release.set()
        holder.join(timeout=30)
    assert seen == ["run"]
    with outbox.claim(row_id, wait=0) as late:
        assert late == "done"  # completed: a late copy does nothing
    with db.transaction() as s:
        assert row_id not in outbox.claimed_ids(s)


def test_a_killed_holder_frees_its_claim(stack: Stack) -> None:
    row_id = new_row()
    url = stack.database_url.replace("postgresql+psycopg://", "postgresql://")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import psycopg, sys, time\n"
            f"c = psycopg.connect({url!r}, autocommit=True)\n"
            f"c.execute('SELECT pg_advisory_lock({outbox.CLAIM_NAMESPACE}, {row_id})')\n"
            "print('held', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with outbox.claim(row_id, wait=0.2) as claim:
            assert claim == "running"
        holder.kill()  # kill -9 of the process holding it: its connection closes
        holder.wait(timeout=30)
        with outbox.claim(row_id) as claim:  # waits up to 5 s for PostgreSQL to notice
            assert claim == "run"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)


def test_redrive_leaves_claimed_rows_and_waiting_retries_alone(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    monkeypatch.setattr(outbox, "dispatch", lambda rows: sent.extend(r[0] for r in rows))
    long_ago = db.utcnow() - timedelta(minutes=10)
    running = new_row(created_at=long_ago, dispatched_at=long_ago, attempts=1)
    retrying = new_row(created_at=long_ago, dispatched_at=long_ago, attempts=1)
    lost = new_row(created_at=long_ago, dispatched_at=long_ago, attempts=1)
    outbox.note_retry(retrying, 120, "hypervisor busy")  # its retry is due in two minutes
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with outbox.claim(running) as claim:
            assert claim == "run"
            holding.set()
            release.wait(timeout=30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(timeout=30)
    # The same key held in another database of the cluster claims nothing here.
    elsewhere = psycopg.connect(f"{PG_BASE.replace('+psycopg', '')}/postgres", autocommit=True)
    try:
        elsewhere.execute("SELECT pg_advisory_lock(%s, %s)", (outbox.CLAIM_NAMESPACE, lost))
        assert outbox.redrive() == 1
        assert sent == [lost]
    finally:
        elsewhere.close()
        release.set()
        holder.join(timeout=30)
    sent.clear()
    wait_for(lambda: outbox.redrive() >= 1, timeout=10, what="the released row to be re-driven")
    assert sent == [running, lost]  # the retry is not due yet
    with db.transaction() as s:
        row = s.get(OutboxTask, retrying)
        assert row is not None and row.last_error == "hypervisor busy"
