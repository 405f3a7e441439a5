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
