"""How much the portal's inventory sync costs over the bare PropertyCollector retrieve.

Run: ``python -m bench.inventory_sync [--vms 5000]`` (builds vcsim if needed; several minutes).

It starts one vcsim with ``--vms`` VMs (1,000 per cluster, 4 hosts each, plus the two templates) and
measures, in one run:

* the bare retrieve: one paged ``RetrievePropertiesEx`` of the adapter's property list over a
  ContainerView of every VM, nothing converted (:func:`bench.vsphere_inventory.bare_retrieve`);
* the adapter's ``list_vms()`` (retrieve, bulk name resolution, conversion to ``VMInfo``);
* the portal's full inventory sync into the database, exactly as the ``vmportal.inventory.sync``
  task runs it (``vmportal.inventory.service.sync_connection``: ``list_vms()`` through the
  connection's cached, logged-in adapter, one read of the connection's rows, bulk writes, audit
  rows, commit), on a freshly migrated SQLite database and, unless ``--no-postgres`` or the server
  cannot be reached, on a fresh PostgreSQL database:

  - *first* sync: every VM is new and is inserted as unregistered;
  - *steady* sync: the same inventory again (what the periodic task does almost every time);
  - *drift* sync: every VM governed and recorded with the wrong power state, so each gets its own
    correction and audit row (the worst case, a whole cluster powered off behind the portal's back);

* the ratio of each sync to the bare retrieve (target: ≤ 1.5×), and the sync's peak Python memory
  (tracemalloc, in a separate pass so tracing does not slow the timed runs).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet

from bench.vsphere_inventory import InventoryBench, bare_retrieve, measure_inventory
from hypervisors.base import VMInfo
from hypervisors.vsphere import DEFAULT_PAGE_SIZE
from tests.support.vcsim import Topology, VcsimServer, start_vcsim
from vmportal.app import migrate as migrations
from vmportal.connection.models import HypervisorConnection
from vmportal.connection.service import adapter_for
from vmportal.inventory.service import SyncReport, reconcile, sync_connection
from vmportal.kit import crypto, db
from vmportal.kit.settings import Settings, use_settings
from vmportal.vm.models import VM

VMS_PER_CLUSTER = 1000
DEFAULT_PG = os.environ.get("VMPORTAL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def topology_for(vms: int) -> Topology:
    clusters = max(1, math.ceil(vms / VMS_PER_CLUSTER))
    if vms % clusters:
        raise SystemExit(
            f"--vms {vms} must split evenly over {clusters} clusters of at most {VMS_PER_CLUSTER}"
        )
    return Topology(clusters=clusters, hosts_per_cluster=4, standalone_hosts=0, vms=vms // clusters, pools=0)


# ---- databases ---------------------------------------------------------------------------------------


@dataclass
class Database:
    """One freshly migrated database of the portal, bound as the process's database."""

    backend: str
    url: str
    drop: Callable[[], None] = lambda: None


@contextmanager
def fresh_database(backend: str, pg_base: str) -> Iterator[Database]:
    key = Fernet.generate_key().decode()
    with tempfile.TemporaryDirectory(prefix="vmportal-bench-") as tmp:
        data_dir = Path(tmp)
        if backend == "sqlite":
            url = ""
            target = f"sqlite:///{data_dir / 'vmportal.sqlite3'}"
            database = Database(backend, target)
        else:
            name = f"vmportal_bench_{os.getpid()}_{time.monotonic_ns() % 10**9}"
            admin = sa.create_engine(f"{pg_base}/postgres", isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = target = f"{pg_base}/{name}"

            def drop() -> None:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()

            database = Database(backend, target, drop)
        settings = Settings(
            data_dir=data_dir,
            database_url=url,
            encryption_key=key,
            task_mode="inline",
            demo=False,
        )
        use_settings(settings)
        crypto.configure([key])
        try:
            migrations.upgrade(target)
            engine = db.init(settings)
            try:
                yield database
            finally:
                engine.dispose()
        finally:
            use_settings(None)
            database.drop()


def register(server: VcsimServer) -> int:
    with db.transaction() as s:
        conn = HypervisorConnection(
            name="bench-vcsim",
            kind="vsphere",
            url=server.url,
            username=server.username,
            secret=server.password,
        )
        s.add(conn)
        s.flush()
        assert conn.id is not None
        return conn.id


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float  # this process only: the client's work, insensitive to other processes' load


@contextmanager
def timing(into: list[Timing]) -> Iterator[None]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into.append(Timing(time.perf_counter() - wall, time.process_time() - cpu))


def timed_sync(connection_id: int, into: list[Timing] | None = None) -> tuple[float, SyncReport]:
    """One sync as the task runs it: a transaction of its own, committed."""
    times: list[Timing] = []
    with timing(times), db.transaction() as s:
        conn = s.get(HypervisorConnection, connection_id)
        assert conn is not None
        report = sync_connection(s, conn)
    if report.error:
        raise RuntimeError(f"sync failed: {report.error}")
    if into is not None:
        into.extend(times)
    return times[0].wall, report


def _warm_adapter(connection_id: int) -> None:
    """Log the connection's adapter in, as a worker that has synced before already is."""
    with db.transaction() as s:
        conn = s.get(HypervisorConnection, connection_id)
        assert conn is not None
        check = adapter_for(conn).check()
    if not check.ok:
        raise RuntimeError(check.message)


def _make_everything_drift() -> int:
    """Every VM governed (registered to no unit yet is enough for the rule) and recorded running:
    powered-off inventory rows all become drift, stopped ones all become drift the other way."""
    with db.transaction() as s:
        table = VM.__table__  # type: ignore[attr-defined]
        result = s.connection().execute(
            sa.update(table).values(
                registered=True,
                power_state=sa.case((table.c.power_state == "running", "stopped"), else_="running"),
            )
        )
        return int(result.rowcount or 0)


@dataclass
class SyncFigures:
    backend: str
    first_s: float  # best of `repeat`, each into a fresh database: every VM new, inserted
    steady_s: float  # best of `repeat`: nothing changed
    drift_s: float  # once: every VM drifted, corrected and audited
    drifted: int
    bare_s: float  # best bare retrieve measured between these syncs
    first_cpu_s: float  # the same, in this process's CPU time
    steady_cpu_s: float
    drift_cpu_s: float
    bare_cpu_s: float
    first_peak_mib: float
    steady_peak_mib: float
    seen: int
    unregistered: int


def measure_sync(server: VcsimServer, backend: str, pg_base: str, repeat: int) -> SyncFigures:
    """Syncs into fresh databases of ``backend``, each right after a bare retrieve, ``repeat``
    times; the best of each kind counts, in wall time and in this process's CPU time. vcsim's (and
    a loaded machine's) speed varies by tens of percent from one listing to the next, far more than
    the database work costs, so single wall-clock measurements would compare noise; CPU time of the
    client is what the sync adds to the same server work."""
    si = server.connect()
    bare: list[Timing] = []
    first: list[Timing] = []
    steady: list[Timing] = []
    drift: list[Timing] = []
    drifted = 0

    def bare_once() -> None:
        with timing(bare):
            bare_retrieve(si, page_size=DEFAULT_PAGE_SIZE)

    try:
        for attempt in range(repeat):
            with fresh_database(backend, pg_base):
                conn_id = register(server)
                _warm_adapter(conn_id)
                bare_once()
                _, first_report = timed_sync(conn_id, first)
                bare_once()
                _, steady_report = timed_sync(conn_id, steady)
                if steady_report.unregistered or steady_report.updated:
                    raise RuntimeError("a steady-state sync changed rows: the inventory is not stable")
                if attempt == 0:
                    drifted = _make_everything_drift()
                    bare_once()
                    _, drift_report = timed_sync(conn_id, drift)
                    if len(drift_report.drift) != drifted:
                        raise RuntimeError(f"expected {drifted} drifted VMs, got {len(drift_report.drift)}")
        with fresh_database(backend, pg_base):
            conn_id = register(server)
            _warm_adapter(conn_id)
            first_peak = _peak_mib(lambda: timed_sync(conn_id))
            steady_peak = _peak_mib(lambda: timed_sync(conn_id))
    finally:
        si.content.sessionManager.Logout()
    return SyncFigures(
        backend=backend,
        first_s=min(t.wall for t in first),
        steady_s=min(t.wall for t in steady),
        drift_s=min(t.wall for t in drift),
        drifted=drifted,
        bare_s=min(t.wall for t in bare),
        first_cpu_s=min(t.cpu for t in first),
        steady_cpu_s=min(t.cpu for t in steady),
        drift_cpu_s=min(t.cpu for t in drift),
        bare_cpu_s=min(t.cpu for t in bare),
        first_peak_mib=first_peak,
        steady_peak_mib=steady_peak,
        seen=first_report.seen,
        unregistered=len(first_report.unregistered),
    )


def _reconcile_into(connection_id: int, listed: list[VMInfo]) -> None:
    with db.transaction() as s:
        conn = s.get(HypervisorConnection, connection_id)
        assert conn is not None
        reconcile(s, conn, listed)


def _peak_mib(fn: Callable[[], Any]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def _postgres_reachable(pg_base: str) -> str:
    try:
        engine = sa.create_engine(f"{pg_base}/postgres", connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:  # any driver or network error: report and go on with SQLite
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return ""


# ---- report ------------------------------------------------------------------------------------------


def report(inventory: InventoryBench, database_s: float, syncs: list[SyncFigures], notes: list[str]) -> str:
    bare = min([inventory.bare_s, *(s.bare_s for s in syncs)])
    lines = [
        f"vcsim inventory sync benchmark: {inventory.vms} VMs (+ templates), page size {inventory.page_size}",
        f"  bare RetrievePropertiesEx (paged, same properties), best  {bare:8.3f} s",
        f"  adapter list_vms(), best                              {inventory.adapter_s:8.3f} s"
        f"   ({inventory.adapter_s / bare:.2f} x bare)",
        f"  database part of a first sync (reconcile into SQLite)  {database_s:8.3f} s",
        f"  peak memory: bare retrieve {inventory.bare_peak_mib:.1f} MiB, "
        f"list_vms {inventory.adapter_peak_mib:.1f} MiB",
    ]
    for s in syncs:
        lines += [
            f"  full sync into {s.backend} (list_vms + reconcile + commit); wall time and ratio to the best bare",
            f"  retrieve; then CPU time of this process and its ratio to the bare retrieve's ({s.bare_cpu_s:.3f} s):",
        ]
        for label, wall, cpu in (
            (f"first  (all {s.unregistered} VMs new, inserted)      ", s.first_s, s.first_cpu_s),
            ("steady (nothing changed)                   ", s.steady_s, s.steady_cpu_s),
            (f"drift  (all {s.drifted} VMs corrected + audited) ", s.drift_s, s.drift_cpu_s),
        ):
            lines.append(
                f"    {label} {wall:8.3f} s {wall / bare:5.2f} x   cpu {cpu:8.3f} s {cpu / s.bare_cpu_s:5.2f} x"
            )
        lines.append(
            f"    peak memory (tracemalloc): first sync {s.first_peak_mib:.1f} MiB, "
            f"steady sync {s.steady_peak_mib:.1f} MiB"
        )
    wall_met = all(max(s.first_s, s.steady_s) / bare <= 1.5 for s in syncs)
    cpu_met = all(max(s.first_cpu_s, s.steady_cpu_s) / s.bare_cpu_s <= 1.5 for s in syncs)
    lines.append(
        "  target first and steady sync <= 1.5 x bare retrieve: "
        f"wall {'met' if wall_met else 'NOT met'}, cpu {'met' if cpu_met else 'NOT met'}"
    )
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=5000, help="VMs in the simulator (1,000 per cluster)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed passes of each measurement; the best counts"
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL (without a database)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args(argv)

    topology = topology_for(args.vms)
    notes: list[str] = []
    backends = ["sqlite"]
    if not args.no_postgres:
        problem = _postgres_reachable(args.pg)
        if problem:
            notes.append(f"PostgreSQL skipped: {problem}")
        else:
            backends.append("postgresql")

    print(f"starting vcsim with {topology.expected_vms} VMs ...", file=sys.stderr)
    started = time.perf_counter()
    with start_vcsim(topology, startup_timeout=1800.0) as server:
        print(
            f"vcsim up in {time.perf_counter() - started:.0f} s; measuring the retrieve ...", file=sys.stderr
        )
        # measure_inventory's consumer gets the adapter's VMInfo list: the database part of a sync
        # (reconcile into a freshly migrated SQLite, every VM new), timed on its own.
        with fresh_database("sqlite", args.pg):
            conn_id = register(server)
            inventory = measure_inventory(
                server, repeat=args.repeat, consumer=lambda vms: _reconcile_into(conn_id, vms)
            )
        syncs = []
        for backend in backends:
            print(f"syncing into {backend} ...", file=sys.stderr)
            syncs.append(measure_sync(server, backend, args.pg, args.repeat))
    print(report(inventory, inventory.consumer_s or 0.0, syncs, notes))
    if args.json:
        print(
            json.dumps({"inventory": asdict(inventory), "syncs": [asdict(s) for s in syncs], "notes": notes})
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
