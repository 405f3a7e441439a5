"""The worker's rehearsal of the alert path before it forks its pool (vmportal.app.warmup.rehearse), on
PostgreSQL: it runs the real post, processing and containment, and leaves nothing behind — no row, no
task sent, no containment figure — and never touches a VM of the portal's own, even one that holds the
rehearsal's address; the audit chain verifies after it. The pool processes keep the engine it warmed
(``db.after_fork``)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from hypervisors import ConnectionConfig, HypervisorKind, create
from hypervisors.simulator import _MEMORY_WORLDS
from tests.factories import Factory
from tests.production.harness import Stack
from vmportal.app import warmup
from vmportal.audit import service as audit
from vmportal.audit.service import Who
from vmportal.kit import db
from vmportal.kit.observability import CONTAINMENT_LATENCY
from vmportal.kit.settings import get_settings
from vmportal.vm.models import VM


def _rows() -> dict[str, int]:
    with db.engine().connect() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in SQLModel.metadata.sorted_tables
        }


def _latency_count() -> float:
    return sum(s.value for m in CONTAINMENT_LATENCY.collect() for s in m.samples if s.name.endswith("_count"))


def test_the_rehearsal_runs_the_alert_path_and_leaves_nothing(stack: Stack) -> None:
    before, figures = _rows(), _latency_count()
    assert warmup.rehearse() is True  # post, processing, containment confirmed on the simulator
    assert _rows() == before  # every table as it was (stack's fixture refuses any dispatch)
    assert _latency_count() == figures
    assert warmup._REHEARSAL_WORLD not in _MEMORY_WORLDS
    # The audit chain holds, with no gap where the rehearsal's rows would have been.
    with db.transaction() as s:
        audit.record(s, Who(actor="test", role="system"), "test.after_rehearsal", "unit", 1)
    with db.transaction() as s:
        assert audit.verify(s).ok is True
    # What the pool processes inherit: the engine, with the statements the rehearsal compiled.
    engine = db.engine()
    cache: Any = engine._compiled_cache
    compiled = len(cache)
    assert compiled > 20
    db.after_fork()
    assert db.engine() is engine and len(cache) == compiled
    pool: Any = engine.pool
    assert pool.checkedout() == 0  # nothing of this process crosses the fork


def test_a_vm_holding_the_rehearsal_address_is_never_touched(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = Factory(get_settings())
    vm = factory.vm(factory.unit())
    with db.transaction() as s:
        row = s.get(VM, vm.id)
        assert row is not None
        row.ip_address = "2001:db8:1::1"
    monkeypatch.setattr(warmup, "rehearsal_address", lambda: "2001:db8:1::1")
    before = _rows()
    warmup.rehearse()  # whatever it made of the clash, it ends without a trace
    assert _rows() == before
    conn = factory.connection()
    adapter = create(ConnectionConfig(kind=HypervisorKind.SIMULATOR, url=conn.url))
    assert all(nic.connected for nic in adapter.get_vm(vm.hypervisor_ref).nics)
