"""A fresh worker pool process warms up before its first task (database connections, a session with
every hypervisor, read through the adapter contract), and never fails for it: a hypervisor that is
down is the tasks' business, with their retries."""

from __future__ import annotations

from typing import Any

import pytest

from hypervisors import create
from hypervisors.base import HypervisorAdapter, Unreachable
from tests.factories import Factory
from tests.security.helpers import simulator
from vmportal.app import warmup


@pytest.fixture
def adapters(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every adapter the warm-up makes: what it read, and whether it was closed."""
    made: list[dict[str, Any]] = []

    def recording(config: Any) -> HypervisorAdapter:
        adapter = create(config)
        seen: dict[str, Any] = {"url": config.url, "read": [], "closed": False}
        made.append(seen)
        get_vm, close = adapter.get_vm, adapter.close

        def read(ref: str) -> Any:
            seen["read"].append(ref)
            return get_vm(ref)

        def closing() -> None:
            seen["closed"] = True
            close()

        adapter.get_vm = read  # type: ignore[method-assign]
        adapter.close = closing  # type: ignore[method-assign]
        return adapter

    monkeypatch.setattr(warmup, "create", recording)
    return made


def test_a_pool_process_reads_one_vm_of_each_hypervisor_before_its_first_task(
    factory: Factory, adapters: list[dict[str, Any]]
) -> None:
    vm = factory.vm(factory.unit())
    warmup.warm_up()
    assert [(a["read"], a["closed"]) for a in adapters] == [([vm.hypervisor_ref], True)]


def test_the_warm_up_shrugs_off_a_hypervisor_that_is_down(
    factory: Factory, adapters: list[dict[str, Any]]
) -> None:
    factory.vm(factory.unit())
    simulator(factory).inject_fault("*", Unreachable("vCenter did not answer"), times=None)
    warmup.warm_up()  # no exception: the first containment meets the outage and retries
    assert len(adapters) == 1 and adapters[0]["closed"]


def test_nothing_to_warm_up_without_vms(factory: Factory, adapters: list[dict[str, Any]]) -> None:
    factory.connection()
    warmup.start().join(timeout=30)
    assert adapters == []


def test_the_rehearsal_is_for_the_production_worker_only(factory: Factory) -> None:
    # SQLite is the embedded portal's, which runs its tasks in-process and forks no pool.
    factory.vm(factory.unit())
    assert warmup.rehearse() is False
