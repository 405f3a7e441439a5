"""How much the vSphere adapter's inventory costs over the bare PropertyCollector call.

Run: ``python -m bench.vsphere_inventory`` (builds vcsim if needed; about 30 s to start 5,000 VMs).

It starts a vcsim with 5,000 VMs, then measures, in one run:

* the bare retrieve: one ``RetrievePropertiesEx`` of the adapter's own property list
  (:data:`hypervisors.vsphere.VM_PROPERTIES`) over a ContainerView of every VM, paged with the
  same page size and followed by ``ContinueRetrievePropertiesEx``, nothing converted;
* the adapter's ``list_vms()``: the same retrieve, the bulk name resolution (hosts, clusters,
  pools, folders, port groups) and the conversion to ``VMInfo``;
* their ratio, and the peak Python memory of each (tracemalloc, measured in separate passes so
  tracing does not slow the timed ones).

``--single-call`` also times the retrieve without ``maxObjects`` (vcsim answers in one response;
a real vCenter caps pages anyway). Most of the time is pyVmomi deserialising the device lists.

For the app team: :func:`measure_inventory` takes an optional ``consumer`` called with the
``VMInfo`` list (e.g. the database sync); its time is reported as ``consumer_s``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from pyVmomi import vim, vmodl

from hypervisors.base import VMInfo
from hypervisors.vsphere import DEFAULT_PAGE_SIZE, VM_PROPERTIES, VSphereAdapter
from tests.support.vcsim import Topology, VcsimServer, start_vcsim

PC = vmodl.query.PropertyCollector

#: 5 clusters x 4 hosts, 1,000 VMs in each cluster's root pool, plus the two templates.
BENCH_TOPOLOGY = Topology(clusters=5, hosts_per_cluster=4, standalone_hosts=0, vms=1000, pools=0)


@dataclass(frozen=True)
class InventoryBench:
    vms: int
    page_size: int
    repeat: int
    bare_s: float  # best of `repeat`, paged like the adapter
    bare_single_call_s: float | None  # best of `repeat`, no maxObjects: one response (optional)
    adapter_s: float  # best of `repeat`, warm session
    adapter_cold_s: float  # first call, including login
    ratio: float  # adapter_s / bare_s
    bare_peak_mib: float
    adapter_peak_mib: float
    consumer_s: float | None = None

    def report(self) -> str:
        lines = [
            f"vcsim inventory: {self.vms} VMs, page size {self.page_size}, best of {self.repeat}",
            f"  bare RetrievePropertiesEx (paged)      {self.bare_s:8.3f} s",
        ]
        if self.bare_single_call_s is not None:
            lines.append(f"  bare RetrievePropertiesEx (one call)   {self.bare_single_call_s:8.3f} s")
        lines += [
            f"  adapter list_vms()                     {self.adapter_s:8.3f} s"
            f"   (first call, with login: {self.adapter_cold_s:.3f} s)",
            f"  ratio adapter / bare                   {self.ratio:8.2f} x",
            f"  peak memory, bare retrieve             {self.bare_peak_mib:8.1f} MiB",
            f"  peak memory, adapter list_vms()        {self.adapter_peak_mib:8.1f} MiB",
        ]
        if self.consumer_s is not None:
            lines.append(f"  consumer                               {self.consumer_s:8.3f} s")
        return "\n".join(lines)


def bare_retrieve(si: Any, *, page_size: int | None) -> list[Any]:
    """The adapter's VM property list in one PropertyCollector retrieve, pages kept as they come
    (the adapter holds them too, so both memory peaks count the same payload)."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        traverse = PC.TraversalSpec(name="viewContents", type=vim.view.ContainerView, path="view", skip=False)
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
            propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=list(VM_PROPERTIES))],
        )
        collector = content.propertyCollector
        result = collector.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=page_size))
        objects: list[Any] = []
        while result is not None:
            objects.extend(result.objects)
            if not result.token:
                break
            result = collector.ContinueRetrievePropertiesEx(result.token)
        return objects
    finally:
        view.Destroy()


def _best(fn: Callable[[], Sized], repeat: int) -> tuple[float, int]:
    """Best wall time of ``repeat`` calls and the size of what ``fn`` returned.

    Nothing a call returns is kept while the next one runs: a heap still holding 5,000 VMs makes
    every later parse pay for it in garbage collection, and the comparison would be unfair.
    """
    times: list[float] = []
    size = 0
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        size = len(fn())
        times.append(time.perf_counter() - start)
    return min(times), size


def _peak_mib(fn: Callable[[], Any]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


@contextmanager
def _server(server: VcsimServer | None, topology: Topology) -> Iterator[VcsimServer]:
    if server is not None:
        yield server
        return
    started = start_vcsim(topology, startup_timeout=900.0)
    try:
        yield started
    finally:
        started.stop_all()


def measure_inventory(
    server: VcsimServer | None = None,
    *,
    topology: Topology = BENCH_TOPOLOGY,
    page_size: int = DEFAULT_PAGE_SIZE,
    repeat: int = 2,
    single_call: bool = False,
    consumer: Callable[[list[VMInfo]], Any] | None = None,
) -> InventoryBench:
    """Measure bare retrieve vs ``list_vms()`` on ``server`` (or on a fresh vcsim of ``topology``)."""
    with _server(server, topology) as vcsim:
        si = vcsim.connect()
        adapter = VSphereAdapter(vcsim.config(timeout=300.0), page_size=page_size)
        try:
            gc.collect()
            start = time.perf_counter()
            vm_count = len(adapter.list_vms())
            adapter_cold = time.perf_counter() - start

            bare_s, count = _best(lambda: bare_retrieve(si, page_size=page_size), repeat)
            single_s = None
            if single_call:
                single_s, _ = _best(lambda: bare_retrieve(si, page_size=None), repeat)
            adapter_s, vm_count = _best(adapter.list_vms, repeat)
            if count != vm_count:
                raise RuntimeError(f"bare retrieve saw {count} VMs, list_vms {vm_count}")

            bare_peak = _peak_mib(lambda: bare_retrieve(si, page_size=page_size))
            adapter_peak = _peak_mib(adapter.list_vms)

            consumer_s = None
            if consumer is not None:
                vms = adapter.list_vms()
                gc.collect()
                start = time.perf_counter()
                consumer(vms)
                consumer_s = time.perf_counter() - start
                del vms
        finally:
            adapter.close()
            si.content.sessionManager.Logout()
    return InventoryBench(
        vms=vm_count - len(vcsim.template_refs),
        page_size=page_size,
        repeat=repeat,
        bare_s=bare_s,
        bare_single_call_s=single_s,
        adapter_s=adapter_s,
        adapter_cold_s=adapter_cold,
        ratio=adapter_s / bare_s if bare_s else float("nan"),
        bare_peak_mib=bare_peak,
        adapter_peak_mib=adapter_peak,
        consumer_s=consumer_s,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=BENCH_TOPOLOGY.clusters)
    parser.add_argument("--vms-per-cluster", type=int, default=BENCH_TOPOLOGY.vms)
    parser.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE)
    parser.add_argument("--repeat", type=int, default=2, help="timed passes; the best one counts")
    parser.add_argument("--single-call", action="store_true", help="also time an unpaged retrieve")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    topology = Topology(
        clusters=args.clusters,
        hosts_per_cluster=BENCH_TOPOLOGY.hosts_per_cluster,
        standalone_hosts=0,
        vms=args.vms_per_cluster,
        pools=0,
    )
    print(f"starting vcsim with {topology.expected_vms} VMs ...", file=sys.stderr)
    result = measure_inventory(
        topology=topology, page_size=args.page_size, repeat=args.repeat, single_call=args.single_call
    )
    print(json.dumps(asdict(result)) if args.json else result.report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
