"""Simulator-only behaviour: what the contract does not say but the portal and its tests rely on."""

from __future__ import annotations

import json
import multiprocessing
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hypervisors.base import (
    AuthFailed,
    CloneSpec,
    ConnectionConfig,
    HypervisorAdapter,
    HypervisorError,
    HypervisorKind,
    InvalidSpec,
    IPSettings,
    NotFound,
    NotSupported,
    PowerAction,
    PowerState,
    Retriable,
    TaskFailed,
    Unreachable,
)
from hypervisors.registry import create
from hypervisors.simulator import TASK_LOG_LIMIT, SimulatorAdapter

TEMPLATE = "tpl-rocky-9"


def sim(url: str = "simulator://memory", **defaults: str) -> SimulatorAdapter:
    adapter = create(ConnectionConfig(kind=HypervisorKind.SIMULATOR, url=url, defaults=defaults))
    assert isinstance(adapter, SimulatorAdapter)
    return adapter


def spec(**overrides: object) -> CloneSpec:
    suffix = uuid.uuid4().hex[:8]
    fields: dict[str, object] = {
        "name": f"sim-{suffix}",
        "template_ref": TEMPLATE,
        "marker": f"vmportal:request:{suffix}",
        "vcpus": 2,
        "memory_mib": 2048,
    }
    fields.update(overrides)
    return CloneSpec(**fields)  # type: ignore[arg-type]


@pytest.fixture
def adapter() -> SimulatorAdapter:
    return sim()


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "sim" / "state.json"


@pytest.fixture(autouse=True)
def _forget_named_worlds() -> Iterator[None]:
    yield
    SimulatorAdapter.drop_memory_worlds()


# ---- URLs, registry, seed --------------------------------------------------------------------


def test_registry_builds_a_simulator_that_satisfies_the_protocol() -> None:
    adapter = sim()
    assert isinstance(adapter, HypervisorAdapter)
    assert adapter.kind is HypervisorKind.SIMULATOR
    assert adapter.capabilities.web_block


def test_seed_templates_and_networks(adapter: SimulatorAdapter) -> None:
    templates = {t.name: t for t in adapter.list_templates()}
    assert {"CentOS 7.9", "Rocky Linux 9", "Ubuntu 22.04 LTS", "Debian 12", "Windows Server 2019"} <= set(
        templates
    )
    for template in templates.values():
        assert template.os and template.vcpus >= 1 and template.memory_mib >= 1024 and template.disk_gib > 0
    vm = adapter.clone(spec(network="campus-servers"))
    assert vm.nics[0].network == "campus-servers"
    listed = adapter.list_vms()
    assert sum(v.is_template for v in listed) == len(templates)


def test_private_memory_worlds_are_separate() -> None:
    first, second = sim(), sim()
    first.clone(spec())
    assert second.check().vm_count == 0


def test_named_memory_world_is_shared_by_adapters() -> None:
    ref = sim("simulator://memory/portal").clone(spec()).ref
    assert sim("simulator://memory/portal").get_vm(ref).ref == ref
    SimulatorAdapter.drop_memory_worlds()
    with pytest.raises(NotFound):
        sim("simulator://memory/portal").get_vm(ref)


@pytest.mark.parametrize("url", ["simulator://elsewhere/x.json", "simulator:relative.json", "vsphere://x"])
def test_bad_url_is_reported_by_check_and_raised_by_calls(url: str) -> None:
    adapter = sim(url)
    result = adapter.check()
    assert not result.ok
    assert "simulator" in result.message
    with pytest.raises(InvalidSpec):
        adapter.list_vms()


# ---- persistence ----------------------------------------------------------------------------


def test_file_state_survives_reconstruction(state_file: Path) -> None:
    url = f"simulator://{state_file}"
    first = sim(url)
    vm = first.clone(spec(ip=IPSettings("10.10.101.23", 24, "10.10.101.1")))
    first.power(vm.ref, PowerAction.STOP)
    first.set_network(vm.ref, False)
    first.close()
    first.close()

    SimulatorAdapter.drop_memory_worlds()
    again = sim(url)
    reread = again.get_vm(vm.ref)
    assert reread.power_state is PowerState.STOPPED
    assert not reread.network_connected
    assert reread.ips == ("10.10.101.23",)
    assert again.find_by_marker(vm.marker or "") == reread
    assert again.state_path == state_file


def test_state_written_by_another_process_is_reread(state_file: Path) -> None:
    adapter = sim(f"simulator://{state_file}")
    ref = adapter.clone(spec(name="before")).ref
    state = json.loads(state_file.read_text())
    state["vms"][ref]["name"] = "renamed-by-another-process"
    state_file.write_text(json.dumps(state))
    assert adapter.get_vm(ref).name == "renamed-by-another-process"


def test_no_temporary_files_left_behind(state_file: Path) -> None:
    adapter = sim(f"simulator://{state_file}")
    for _ in range(5):
        adapter.clone(spec())
    assert sorted(p.name for p in state_file.parent.iterdir()) == ["state.json", "state.json.lock"]


def test_unreadable_state_file_is_kept_and_reported(state_file: Path) -> None:
    state_file.parent.mkdir(parents=True)
    state_file.write_text("{not json")
    adapter = sim(f"simulator://{state_file}")
    result = adapter.check()
    assert not result.ok
    assert "unreadable" in result.message
    with pytest.raises(HypervisorError):
        adapter.list_vms()
    assert state_file.read_text() == "{not json"


def test_threads_sharing_a_file_lose_nothing(state_file: Path) -> None:
    url = f"simulator://{state_file}"
    errors: list[BaseException] = []

    def clone_many() -> None:
        try:
            adapter = sim(url)
            for _ in range(15):
                adapter.clone(spec())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=clone_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    state = json.loads(state_file.read_text())
    assert len(state["vms"]) == 60
    assert len({vm["ref"] for vm in state["vms"].values()}) == 60


def _clone_in_child(url: str, count: int, go: Any) -> None:
    adapter = SimulatorAdapter(url)
    go.wait(30)
    for _ in range(count):
        adapter.clone(spec())


def test_processes_sharing_a_file_do_not_corrupt_it(state_file: Path) -> None:
    url = f"simulator://{state_file}"
    sim(url).list_vms()  # create the file before the race
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    children = [context.Process(target=_clone_in_child, args=(url, 40, go)) for _ in range(3)]
    for child in children:
        child.start()
    go.set()  # all at once, so that they really contend for the file
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    state = json.loads(state_file.read_text())
    assert len(state["vms"]) == 120
    assert sim(url).check().vm_count == 120


# ---- clone details --------------------------------------------------------------------------


def test_clone_customises_vm(adapter: SimulatorAdapter) -> None:
    ip = IPSettings("10.10.101.50", 24, "10.10.101.1", ("10.10.0.53",))
    vm = adapter.clone(
        spec(
            name="jwc-course-site",
            hostname="course",
            ip=ip,
            admin_user="root",
            admin_password="S3cret!init",
            disk_gib=60,
        )
    )
    assert vm.ips == ("10.10.101.50",)
    assert vm.disk_gib == 60
    assert vm.nics and all(n.mac and n.mac.startswith("00:50:56:") for n in vm.nics)
    assert vm.extra["hostname"] == "course"
    assert vm.extra["admin_user"] == "root"
    assert vm.extra["managed"] is True
    assert adapter.verify_admin_password(vm.ref, "S3cret!init")
    assert not adapter.verify_admin_password(vm.ref, "guess")


def test_password_never_stored_in_clear(state_file: Path) -> None:
    adapter = sim(f"simulator://{state_file}")
    adapter.clone(spec(admin_user="admin", admin_password="Pl4in-Text-Canary"))
    assert "Pl4in-Text-Canary" not in state_file.read_text()


def test_macs_are_unique(adapter: SimulatorAdapter) -> None:
    macs = {adapter.clone(spec()).nics[0].mac for _ in range(20)}
    assert len(macs) == 20


def test_disk_smaller_than_template_is_invalid(adapter: SimulatorAdapter) -> None:
    with pytest.raises(InvalidSpec, match="disk"):
        adapter.clone(spec(disk_gib=10))


def test_template_disk_kept_without_disk_gib(adapter: SimulatorAdapter) -> None:
    template = next(t for t in adapter.list_templates() if t.ref == TEMPLATE)
    assert adapter.clone(spec()).disk_gib == template.disk_gib


def test_unknown_network_is_not_found(adapter: SimulatorAdapter) -> None:
    with pytest.raises(NotFound, match="network"):
        adapter.clone(spec(network="no-such-portgroup"))


def test_clone_without_power_on_stays_stopped(adapter: SimulatorAdapter) -> None:
    assert adapter.clone(spec(power_on=False)).power_state is PowerState.STOPPED


def test_clone_retry_completes_size_and_disk(adapter: SimulatorAdapter) -> None:
    first = adapter.clone(spec(power_on=False))
    retried = adapter.clone(
        spec(marker=first.marker, name=first.name, vcpus=4, memory_mib=8192, disk_gib=100)
    )
    assert retried.ref == first.ref
    assert (retried.vcpus, retried.memory_mib, retried.disk_gib) == (4, 8192, 100)
    assert retried.power_state is PowerState.RUNNING
    assert adapter.check().vm_count == 1


def test_failed_clone_task_is_logged(adapter: SimulatorAdapter) -> None:
    with pytest.raises(TaskFailed, match="Insufficient disk space") as failure:
        adapter.clone(spec(placement={"datastore": "sim-ds-full"}))
    result = adapter.wait_task(failure.value.detail["task_ref"])
    assert not result.ok
    assert "sim-ds-full" in result.message


def test_deleting_frees_datastore_space(adapter: SimulatorAdapter) -> None:
    small = adapter.add_unmanaged_vm("filler", disk_gib=8, placement={"datastore": "sim-ds-full"})
    with pytest.raises(NotFound):
        adapter.add_unmanaged_vm("nowhere", placement={"datastore": "no-such-ds"})
    adapter.delete(small.ref)
    assert (
        adapter.add_unmanaged_vm("fits", disk_gib=10, placement={"datastore": "sim-ds-full"}).disk_gib == 10
    )


def test_templates_cannot_be_powered_or_deleted(adapter: SimulatorAdapter) -> None:
    assert adapter.get_vm(TEMPLATE).is_template
    with pytest.raises(InvalidSpec):
        adapter.power(TEMPLATE, PowerAction.START)
    with pytest.raises(InvalidSpec):
        adapter.delete(TEMPLATE)


# ---- power ----------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [PowerAction.RESTART, PowerAction.REBOOT])
def test_actions_needing_a_running_vm_fail_on_a_stopped_one(
    adapter: SimulatorAdapter, action: PowerAction
) -> None:
    ref = adapter.clone(spec(power_on=False)).ref
    with pytest.raises(TaskFailed, match=f"cannot {action.value} .* it is stopped"):
        adapter.power(ref, action)
    assert adapter.get_vm(ref).power_state is PowerState.STOPPED
    assert adapter.task_log(ref)[-1].ok is False


def test_guest_shutdown_of_stopped_vm_is_a_noop(adapter: SimulatorAdapter) -> None:
    ref = adapter.clone(spec(power_on=False)).ref
    assert adapter.power(ref, PowerAction.SHUTDOWN).power_state is PowerState.STOPPED


def test_guest_actions_need_guest_tools(adapter: SimulatorAdapter) -> None:
    ref = adapter.add_unmanaged_vm("no-tools", guest_tools=False).ref
    with pytest.raises(TaskFailed, match="guest tools"):
        adapter.power(ref, PowerAction.SHUTDOWN)
    assert adapter.power(ref, PowerAction.STOP).power_state is PowerState.STOPPED


def test_restart_counts_boots(adapter: SimulatorAdapter) -> None:
    vm = adapter.clone(spec())
    assert vm.extra["boot_count"] == 1
    adapter.power(vm.ref, PowerAction.START)  # no-op
    assert adapter.power(vm.ref, PowerAction.RESTART).extra["boot_count"] == 2


def test_power_from_unknown_state_fails(adapter: SimulatorAdapter) -> None:
    ref = adapter.clone(spec()).ref
    adapter.set_power_state(ref, PowerState.UNKNOWN)
    with pytest.raises(TaskFailed, match="unknown"):
        adapter.power(ref, PowerAction.START)


# ---- tasks ----------------------------------------------------------------------------------


def test_every_mutation_records_a_task(adapter: SimulatorAdapter) -> None:
    ref = adapter.clone(spec()).ref
    adapter.power(ref, PowerAction.STOP)
    adapter.set_network(ref, False)
    adapter.set_web_block(ref, True)
    adapter.delete(ref)
    log = adapter.task_log(ref)
    assert [t.extra["operation"] for t in log] == ["clone", "power", "set_network", "set_web_block", "delete"]
    assert all(t.ok for t in log)
    assert adapter.wait_task(log[0].task_ref, timeout=1) == log[0]
    with pytest.raises(NotFound):
        adapter.wait_task("task-does-not-exist")


def test_task_log_is_bounded(adapter: SimulatorAdapter) -> None:
    ref = adapter.clone(spec()).ref
    for _ in range(TASK_LOG_LIMIT + 10):
        adapter.set_network(ref, True)
    assert len(adapter.task_log()) == TASK_LOG_LIMIT


# ---- faults ---------------------------------------------------------------------------------


def test_injected_fault_fires_once(adapter: SimulatorAdapter) -> None:
    adapter.inject_fault("clone", TaskFailed("datastore on fire"))
    failing = spec()
    with pytest.raises(TaskFailed, match="datastore on fire"):
        adapter.clone(failing)
    assert adapter.find_by_marker(failing.marker) is None
    assert adapter.task_log()[-1].ok is False
    assert adapter.clone(failing).marker == failing.marker
    assert adapter.pending_faults() == []


def test_injected_retriable_keeps_defer_and_count(adapter: SimulatorAdapter) -> None:
    ref = adapter.clone(spec()).ref
    adapter.inject_fault("power", Retriable("host busy", defer=30), times=2)
    for _ in range(2):
        with pytest.raises(Retriable) as failure:
            adapter.power(ref, PowerAction.STOP)
        assert failure.value.defer == 30
        assert failure.value.detail["injected"]
    assert adapter.power(ref, PowerAction.STOP).power_state is PowerState.STOPPED


def test_wildcard_fault_until_cleared(adapter: SimulatorAdapter) -> None:
    adapter.inject_fault("*", Unreachable, times=None)
    for _ in range(3):
        with pytest.raises(Unreachable):
            adapter.list_vms()
    assert not adapter.check().ok
    adapter.clear_faults()
    assert adapter.check().ok


def test_fault_by_kind_name(adapter: SimulatorAdapter) -> None:
    adapter.inject_fault("list_templates", "auth_failed")
    with pytest.raises(AuthFailed):
        adapter.list_templates()


@pytest.mark.parametrize(
    ("operation", "error", "times"),
    [("warp", TaskFailed, 1), ("clone", "explode", 1), ("clone", ValueError, 1), ("clone", TaskFailed, 0)],
)
def test_bad_fault_requests_are_refused(
    adapter: SimulatorAdapter, operation: str, error: object, times: int
) -> None:
    with pytest.raises(InvalidSpec):
        adapter.inject_fault(operation, error, times=times)  # type: ignore[arg-type]


def test_fault_injected_by_one_adapter_hits_another_on_the_same_file(state_file: Path) -> None:
    url = f"simulator://{state_file}"
    sim(url).inject_fault("delete", Retriable)
    SimulatorAdapter.drop_memory_worlds()
    state = json.loads(state_file.read_text())
    assert state["faults"][0]["operation"] == "delete"
    with pytest.raises(Retriable):
        sim(url).delete("vm-1")


def test_configured_fault_is_armed_once_per_world(state_file: Path) -> None:
    url = f"simulator://{state_file}"
    with pytest.raises(TaskFailed):
        sim(url, fail="clone").clone(spec())
    # A new adapter with the same configuration (the app builds one per call): the retry succeeds.
    assert sim(url, fail="clone").clone(spec()).power_state is PowerState.RUNNING


def test_configured_faults_with_kind_and_count() -> None:
    adapter = sim(fail="clone:retriable:2, delete:unreachable")
    for _ in range(2):
        with pytest.raises(Retriable):
            adapter.clone(spec())
    with pytest.raises(Unreachable):
        adapter.delete("vm-1")
    adapter.clone(spec())


def test_configured_always_unreachable() -> None:
    adapter = sim(fail="*:unreachable:always")
    assert not adapter.check().ok
    for _ in range(3):
        with pytest.raises(Unreachable):
            adapter.get_vm("vm-1")


@pytest.mark.parametrize("fail", ["teleport", "clone:meltdown", "clone:retriable:0", "clone:retriable:x"])
def test_bad_configured_fault_is_reported(fail: str) -> None:
    adapter = sim(fail=fail)
    result = adapter.check()
    assert not result.ok
    assert "fail" in result.message
    with pytest.raises(InvalidSpec):
        adapter.list_vms()


# ---- capabilities a connection can take away ---------------------------------------------


def test_lacking_guest_power_refuses_guest_actions_before_anything_happens() -> None:
    adapter = sim(lacks="guest_power")
    assert not adapter.capabilities.guest_power
    assert adapter.capabilities.web_block
    running = adapter.clone(spec()).ref
    stopped = adapter.clone(spec(power_on=False)).ref
    tasks_before = len(adapter.task_log())
    for ref, action in (
        (running, PowerAction.REBOOT),
        (running, PowerAction.SHUTDOWN),
        (stopped, PowerAction.SHUTDOWN),
    ):
        with pytest.raises(NotSupported, match="use stop or restart"):
            adapter.power(ref, action)
    assert len(adapter.task_log()) == tasks_before  # refused up front: no task, no state change
    assert adapter.get_vm(running).power_state is PowerState.RUNNING
    assert adapter.power(running, PowerAction.RESTART).power_state is PowerState.RUNNING
    assert adapter.power(running, PowerAction.STOP).power_state is PowerState.STOPPED


def test_lacking_web_block_refuses_the_block_and_leaves_the_vm_reachable() -> None:
    adapter = sim(lacks="web_block")
    assert not adapter.capabilities.web_block
    ref = adapter.clone(spec()).ref
    with pytest.raises(NotSupported, match="isolate"):
        adapter.set_web_block(ref, True)
    vm = adapter.get_vm(ref)
    assert not vm.web_blocked
    assert vm.network_connected
    assert not adapter.set_network(ref, False).network_connected  # the fallback still works


def test_unknown_lacking_capability_is_reported() -> None:
    adapter = sim(lacks="guest_power,teleport")
    result = adapter.check()
    assert not result.ok
    assert "teleport" in result.message
    with pytest.raises(InvalidSpec, match="lacks"):
        adapter.list_vms()


# ---- drift helpers --------------------------------------------------------------------------


def test_unmanaged_vm_appears_without_marker_or_task(adapter: SimulatorAdapter) -> None:
    vm = adapter.add_unmanaged_vm(
        "hand-made", power_state="stopped", vcpus=8, memory_mib=16384, ips=["10.10.101.99"]
    )
    assert vm.marker is None
    assert vm.extra["managed"] is False
    assert vm.power_state is PowerState.STOPPED
    listed = {v.ref: v for v in adapter.list_vms()}
    assert listed[vm.ref].ips == ("10.10.101.99",)
    assert adapter.task_log(vm.ref) == []


def test_set_power_state_simulates_drift(adapter: SimulatorAdapter) -> None:
    ref = adapter.clone(spec()).ref
    before = len(adapter.task_log())
    assert adapter.set_power_state(ref, PowerState.SUSPENDED).power_state is PowerState.SUSPENDED
    assert adapter.get_vm(ref).power_state is PowerState.SUSPENDED
    assert len(adapter.task_log()) == before
    assert adapter.power(ref, PowerAction.START).power_state is PowerState.RUNNING
    with pytest.raises(NotFound):
        adapter.set_power_state("vm-nope", PowerState.RUNNING)


def test_reset_returns_to_seed(adapter: SimulatorAdapter) -> None:
    adapter.clone(spec())
    adapter.inject_fault("clone")
    adapter.reset()
    assert adapter.check().vm_count == 0
    assert adapter.pending_faults() == []
    assert adapter.list_templates()


def test_many_clones_stay_cheap(adapter: SimulatorAdapter) -> None:
    for i in range(500):
        adapter.clone(spec(marker=f"vmportal:request:bulk-{i}"))
    assert adapter.check().vm_count == 500
    assert adapter.find_by_marker("vmportal:request:bulk-499") is not None
