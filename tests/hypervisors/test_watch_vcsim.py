"""The change stream against vcsim: a change made out of band (another client's power-off, a NIC
cut) comes out of ``watch`` as one CHANGED record naming the field, and a stream restarted from its
version reports what changed meanwhile, without a resync."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from hypervisors.base import ChangeBatch, ChangeKind, PowerAction, PowerState
from hypervisors.registry import create
from hypervisors.vsphere.adapter import VSphereAdapter
from tests.support.vcsim import VcsimServer

pytestmark = pytest.mark.vcsim


def _next(stream: Iterator[ChangeBatch]) -> ChangeBatch:
    return next(stream)


def test_an_out_of_band_power_off_and_a_resume_from_the_version(vcsim: VcsimServer) -> None:
    watcher = create(vcsim.config())
    other = create(vcsim.config())  # "vCenter's own client": a second session
    assert isinstance(watcher, VSphereAdapter) and watcher.capabilities.watch
    stop = threading.Event()
    stream = watcher.watch(stop)
    first = _next(stream)
    assert first.resync and first.inventory
    running = next(
        vm for vm in first.inventory if vm.power_state is PowerState.RUNNING and not vm.is_template
    )

    other.power(running.ref, PowerAction.STOP)
    batch = _next(stream)
    [change] = [c for c in batch.changes if c.ref == running.ref]
    assert change.kind is ChangeKind.CHANGED and change.fields["power_state"] is PowerState.STOPPED
    stop.set()  # the first stream ends

    other.power(running.ref, PowerAction.START)  # while nobody watches
    stop = threading.Event()
    resumed = watcher.watch(stop, since=batch.version)
    again = _next(resumed)
    assert not again.resync
    assert [c.fields["power_state"] for c in again.changes if c.ref == running.ref] == [PowerState.RUNNING]
    stop.set()
    watcher.close()
    other.close()


def test_a_change_undone_before_the_stream_reads_it_is_still_reported(vcsim: VcsimServer) -> None:
    """A NIC cut and reconnected between two reads (the watcher busy with an earlier batch, as
    under load) leaves the VM as the stream last reported it, but vCenter says it changed: the
    consumer must hear of the VM, since its own record may have moved meanwhile (the portal's
    containment wrote "disconnected" after cutting it). Without this a reconnect by hand right
    after a containment went unnoticed until the periodic sync."""
    watcher = create(vcsim.config())
    other = create(vcsim.config())
    stop = threading.Event()
    # Were the change swallowed, the stream would wait for ever: end it after a generous minute.
    timer = threading.Timer(60, stop.set)
    timer.start()
    stream = watcher.watch(stop)
    first = _next(stream)
    vm = next(
        vm
        for vm in first.inventory
        if vm.power_state is PowerState.RUNNING and not vm.is_template and vm.nics
    )
    if not vm.network_connected:  # vcsim's own VMs may start with their NICs unticked
        other.set_network(vm.ref, True)
        assert [c.vm.network_connected for c in _next(stream).changes if c.ref == vm.ref and c.vm] == [True]

    other.set_network(vm.ref, False)
    other.set_network(vm.ref, True)  # undone before the stream reads again
    batch = next(stream, None)
    assert batch is not None, "the stream never reported the VM whose NIC was cut and reconnected"
    [change] = [c for c in batch.changes if c.ref == vm.ref]
    assert change.kind is ChangeKind.CHANGED and change.vm is not None
    assert change.vm.network_connected is True
    timer.cancel()
    stop.set()
    watcher.close()
    other.close()
