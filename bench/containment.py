"""Alert → confirmed containment latency, on vcsim, through a running portal.

Run: ``python -m bench.containment [--mode embedded|production] [--alerts 500] [--vms 100] [--rate 20]
[--inventory 20000] [--busy 2] [--restart] [--keep DIR]``. The portal runs as docker-compose.yml
runs it in production: ``vmportal worker --concurrency 4`` and ``vmportal serve --workers 2`` in
``production`` mode (``BENCH_WORKER_CONCURRENCY`` and ``BENCH_API_WORKERS`` change them).

What it does, in one run:

1. starts a vcsim with ``--vms`` VMs (govmomi's simulator, built from Debian's sources);
2. starts a portal: ``embedded`` = ``vmportal serve`` on a fresh SQLite data directory with
   in-process tasks; ``production`` = a fresh PostgreSQL database, the local Redis (database 11),
   one ``vmportal worker`` process and ``vmportal serve``;
3. registers the vcsim as a connection, syncs its inventory and assigns every VM to one unit with
   an address from 10.77.0.0/16 (written straight into the database: vcsim VMs report none), and
   registers a Suricata source;
4. with ``--restart``, stops the worker and the API and starts them again, and waits until the API
   is ready and the worker answers a ping (new processes over a configured portal, as after a
   restart or a deployment; without it the alerts go to the processes started in step 2, which
   served the set-up); ``--busy N`` starts N CPU-bound processes that compete until the end;
5. posts ``--alerts`` signed EVE alerts ("A Network Trojan was
   detected", severity 1: the default table isolates the VM) at a steady ``--rate`` per second, in
   a shuffled order over the VMs so that the rest are duplicates;
6. waits until every VM's incident is contained — the portal marks it so only after reading the
   VM back from vcsim with every NIC disconnected — and reports, per alert, the time from sending
   its POST to that confirmation (0 for a duplicate whose VM was already contained);
7. reconnects the same VMs and times the bare adapter call (``set_network(ref, False)``, which
   also waits for the task and reads the VM back) on each.

Besides the latencies it prints what explains them: how long the POSTs took to be answered, where
each VM's first alert spent its time (from the timestamps the portal wrote: arrival, processing,
incident, containment task), that latency by fifths of the run (a slow start shows in the first),
the CPU seconds each process used from the first post to the last containment (API, worker with its
pool processes, this database's PostgreSQL backends, vcsim, this load generator) and the load
average. ``--keep DIR`` runs in ``DIR`` and leaves the processes' logs there.

Everything listens on 127.0.0.1, the load is bounded by ``--alerts`` and a time limit, and every
process started is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from hypervisors.base import ConnectionConfig, HypervisorKind
from hypervisors.vsphere import VSphereAdapter
from tests.support.vcsim import Topology, start_vcsim
from vmportal.alerts import signing

ROOT = Path(__file__).resolve().parents[1]
VMPORTAL = str(Path(sys.executable).with_name("vmportal"))
PASSWORD = "Bench-Passw0rd!"
PG = os.environ.get("VMPORTAL_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(_percentile(values, 50) * 1000, 1),
        "p95_ms": round(_percentile(values, 95) * 1000, 1),
        "p99_ms": round(_percentile(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1) if values else float("nan"),
        "mean_ms": round(statistics.fmean(values) * 1000, 1) if values else float("nan"),
    }


class Portal:
    """The portal processes of one mode, their environment and a logged-in HTTP client."""

    def __init__(self, mode: str, workdir: Path) -> None:
        self.mode = mode
        self.workdir = workdir
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "VMPORTAL_DATA_DIR": str(workdir / "data"),
            "VMPORTAL_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "VMPORTAL_LOG_LEVEL": "WARNING",
            "VMPORTAL_TASK_WORKERS": "8",
        }
        self.pg_name = ""
        if mode == "production":
            self.pg_name = f"vmportal_bench_{os.getpid()}"
            self.env["VMPORTAL_DATABASE_URL"] = f"{PG}/{self.pg_name}"
            self.env["VMPORTAL_BROKER_URL"] = "redis://127.0.0.1:6379/11"
        self.client = httpx.Client(base_url=self.base, timeout=30)

    def _run(self, *args: str) -> None:
        subprocess.run([VMPORTAL, *args], env=self.env, check=True, cwd=self.workdir, capture_output=True)

    def _spawn(self, *args: str, log: str) -> None:
        out = open(self.workdir / log, "ab")  # noqa: SIM115  (closed with the process; kept across a restart)
        self.procs.append(
            subprocess.Popen([VMPORTAL, *args], env=self.env, cwd=self.workdir, stdout=out, stderr=out)
        )

    def start(self) -> None:
        if self.mode == "production":
            import sqlalchemy as sa

            admin = sa.create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{self.pg_name}"')
            admin.dispose()
            import redis

            redis.Redis.from_url(self.env["VMPORTAL_BROKER_URL"]).flushdb()
        self._run("migrate")
        self._run("create-admin", "bench-admin", "--password", PASSWORD)
        if self.mode == "production":
            self._spawn(
                "worker", "--concurrency", os.environ.get("BENCH_WORKER_CONCURRENCY", "4"), log="worker.log"
            )
        self._spawn("serve", "--port", str(self.port), *self._api_workers(), log="api.log")
        self._wait_ready()
        r = self.client.post("/api/v1/auth/login", json={"username": "bench-admin", "password": PASSWORD})
        r.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def _api_workers(self) -> list[str]:
        """Production's API processes (docker-compose.yml); the embedded portal is one process."""
        if self.mode != "production":
            return []
        return ["--workers", os.environ.get("BENCH_API_WORKERS", "2")]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with suppress(httpx.HTTPError):
                if self.client.get("/readyz").status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the portal did not become ready; see {self.workdir}/api.log")
        if self.mode != "production":
            return
        from celery import Celery

        control = Celery(broker=self.env["VMPORTAL_BROKER_URL"])
        try:
            while time.monotonic() < deadline:
                if control.control.ping(timeout=1.0):
                    return  # the worker consumes: its pool processes are forked
            raise RuntimeError(f"the worker did not answer; see {self.workdir}/worker.log")
        finally:
            control.close()

    def restart(self) -> None:
        """Stop the worker and the API and start them afresh against the configured portal, as after
        a restart or a deployment: new processes, nothing of the set-up's requests warm in them."""
        self._stop_processes()
        self.procs = []
        if self.mode == "production":
            self._spawn(
                "worker", "--concurrency", os.environ.get("BENCH_WORKER_CONCURRENCY", "4"), log="worker.log"
            )
        self._spawn("serve", "--port", str(self.port), *self._api_workers(), log="api.log")
        self._wait_ready()

    def _stop_processes(self) -> None:
        for proc in self.procs:
            with suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    def stop(self) -> None:
        self._stop_processes()
        self.client.close()
        if self.pg_name:
            import sqlalchemy as sa

            admin = sa.create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
            admin.dispose()

    def sql(
        self, statement: str, params: tuple[Any, ...] | list[tuple[Any, ...]] = ()
    ) -> list[tuple[Any, ...]]:
        """Arrange or read rows directly (the bench's own bookkeeping, not part of what is timed)."""
        if self.mode == "production":
            import psycopg

            with psycopg.connect(self.env["VMPORTAL_DATABASE_URL"].replace("+psycopg", "")) as conn:
                cur = conn.cursor()
                if isinstance(params, list):
                    cur.executemany(statement.replace("?", "%s"), params)
                    return []
                cur.execute(statement.replace("?", "%s"), params)
                return cur.fetchall() if cur.description else []
        with sqlite3.connect(Path(self.env["VMPORTAL_DATA_DIR"]) / "vmportal.sqlite3", timeout=30) as conn:
            if isinstance(params, list):
                conn.executemany(statement, params)
                return []
            return conn.execute(statement, params).fetchall()


@contextmanager
def portal(mode: str, keep: Path | None = None) -> Iterator[Portal]:
    """The portal of ``mode`` in a fresh directory: a temporary one, or ``keep`` (left behind with the
    processes' logs, for a look after the run)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        p = Portal(mode, keep)
        try:
            p.start()
            yield p
        finally:
            p.stop()
        return
    with tempfile.TemporaryDirectory(prefix="vmportal-bench-") as tmp:
        p = Portal(mode, Path(tmp))
        try:
            p.start()
            yield p
        finally:
            p.stop()


def _eve(ip: str, n: int) -> dict[str, Any]:
    return {
        "timestamp": datetime.now(UTC).isoformat(),
        "flow_id": 1_000_000 + n,
        "event_type": "alert",
        "src_ip": ip,
        "src_port": 49152 + n % 1000,
        "dest_ip": "203.0.113.9",
        "dest_port": 443,
        "proto": "TCP",
        "tx_id": 0,
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": 2024897,
            "rev": 3,
            "signature": "ET MALWARE Win32/Agent CnC Checkin",
            "category": "A Network Trojan was detected",
            "severity": 1,
        },
    }


def _ts(at: Any) -> float:
    """A stored time as Unix seconds (PostgreSQL gives aware datetimes, SQLite naive UTC text)."""
    value = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).timestamp()


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _cpu_by_process(p: Portal, vcsim_pid: int) -> dict[str, float]:
    """CPU seconds so far of the portal's processes (with their pool processes), of this database's
    PostgreSQL backends, of vcsim and of this benchmark process (the load generator)."""
    out: dict[str, float] = {}
    for proc in p.procs:
        name = "api" if "serve" in proc.args else "worker"  # type: ignore[operator]
        out[name] = out.get(name, 0.0) + sum(_proc_cpu(pid) for pid in _descendants(proc.pid))
    if p.mode == "production":
        pids = p.sql("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        out["postgresql_backends"] = sum(_proc_cpu(int(pid)) for (pid,) in pids)
    out["vcsim"] = sum(_proc_cpu(pid) for pid in _descendants(vcsim_pid))
    out["bench_client"] = _proc_cpu(os.getpid())
    return out


def _stages(p: Portal, first_sent: dict[int, float]) -> dict[str, dict[str, float]]:
    """Where the time of each VM's first alert went, from the rows the portal wrote (one clock: the
    same machine). Stages that a run does not have (no processing task) are left out."""
    alerts: dict[int, tuple[int, float, float | None]] = {}  # vm -> (alert id, received, processed)
    for alert_id, vm_id, received_at, processed_at in p.sql(
        "SELECT id, vm_id, received_at, processed_at FROM security_alert WHERE vm_id IS NOT NULL ORDER BY id"
    ):
        if vm_id not in alerts:
            alerts[int(vm_id)] = (
                int(alert_id),
                _ts(received_at),
                _ts(processed_at) if processed_at else None,
            )
    incidents = {
        int(vm_id): (int(inc_id), _ts(created), _ts(contained))
        for inc_id, vm_id, created, contained in p.sql(
            "SELECT id, vm_id, created_at, contained_at FROM incident WHERE contained_at IS NOT NULL"
        )
    }
    process_queued: dict[int, float] = {}
    contain_rows: dict[int, tuple[float | None, float | None]] = {}
    for task, arguments, queued, completed in p.sql(
        "SELECT task, arguments, created_at, completed_at FROM outbox_task"
    ):
        args = _json(arguments) or {}
        if task == "vmportal.security.process_alerts" and queued:
            for alert_id in args.get("alert_ids", []):
                process_queued[int(alert_id)] = _ts(queued)
        elif task == "vmportal.security.contain":
            contain_rows[int(args["incident_id"])] = (
                _ts(queued) if queued else None,
                _ts(completed) if completed else None,
            )
    spans: dict[str, list[float]] = {}

    def add(name: str, start: float | None, end: float | None) -> None:
        if start is not None and end is not None:
            spans.setdefault(name, []).append(end - start)

    for vm_id, t0 in first_sent.items():
        if vm_id not in alerts or vm_id not in incidents:
            continue
        alert_id, received, processed = alerts[vm_id]
        inc_id, opened, contained = incidents[vm_id]
        contain_queued, contain_done = contain_rows.get(inc_id, (None, None))
        add("1 post sent -> arrival (received_at)", t0, received)
        add("2 arrival -> processing task queued", received, process_queued.get(alert_id))
        add("3 processing task queued -> alert processed", process_queued.get(alert_id), processed)
        add("4 arrival -> incident opened", received, opened)
        add("5 incident opened -> containment task queued", opened, contain_queued)
        add("6 containment task queued -> confirmed", contain_queued, contained)
        add("7 confirmed -> containment task completed", contained, contain_done)
    return {name: _summary(values) for name, values in sorted(spans.items())}


def _columns(p: Portal, table: str) -> list[str]:
    if p.mode == "production":
        rows = p.sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            (table,),
        )
        return [str(r[0]) for r in rows]
    return [str(r[1]) for r in p.sql(f"PRAGMA table_info({table})")]


def _pad_inventory(p: Portal, conn_id: int, model_vm: int, count: int) -> None:
    """``count`` more active VMs in the inventory, each with an address of its own (10.78.0.0/15),
    on a second, inactive connection (so no sync or watcher marks them missing): what the matcher
    must look past at campus scale. Copies of one real row, written straight into the database."""
    cols = [c for c in _columns(p, "hypervisor_connection") if c != "id"]
    picked = ", ".join("? || name" if c == "name" else "false" if c == "active" else c for c in cols)
    # Column names read from the schema itself, values bound: nothing outside comes into the text.
    p.sql(
        f"INSERT INTO hypervisor_connection ({', '.join(cols)}) SELECT {picked} FROM hypervisor_connection "  # noqa: S608
        "WHERE id = ?",
        ("padding-", conn_id),
    )
    [(padding_id,)] = p.sql("SELECT max(id) FROM hypervisor_connection")
    cols = [c for c in _columns(p, "vm") if c != "id"]
    ips = "CAST(? AS json)" if p.mode == "production" else "?"  # a parameter in a SELECT list is text
    own = {"connection_id": "?", "hypervisor_ref": "?", "name": "?", "ip_address": "?", "ips": ips}
    picked = ", ".join(own.get(c, c) for c in cols)
    order = [c for c in cols if c in own]
    rows = []
    for i in range(count):
        ip = f"10.{78 + i // 65000}.{i % 65000 // 250}.{i % 250 + 1}"
        values = {
            "connection_id": padding_id,
            "hypervisor_ref": f"padding-{i}",
            "name": f"padding-{i}",
            "ip_address": ip,
            "ips": json.dumps([ip]),
        }
        rows.append((*[values[c] for c in order], model_vm))
    statement = f"INSERT INTO vm ({', '.join(cols)}) SELECT {picked} FROM vm WHERE id = ?"  # noqa: S608
    for start in range(0, len(rows), 5000):
        p.sql(statement, rows[start : start + 5000])
    if p.mode == "production":
        # What autovacuum does within a minute of a bulk load: statistics for the planner (without
        # them it reads the 20,000 rows by the lifecycle index) and the GIN index's pending list
        # merged (else every look-up scans the list). A campus inventory grows far slower than this.
        p.sql("ANALYZE vm")
        p.sql("SELECT gin_clean_pending_list('ix_vm_ips_jsonb')")


def run(
    mode: str,
    n_alerts: int,
    n_vms: int,
    rate: float,
    limit_s: float,
    keep: Path | None = None,
    inventory: int = 0,
    restart: bool = False,
    busy: int = 0,
) -> dict[str, Any]:
    topology = Topology(clusters=2, hosts_per_cluster=2, standalone_hosts=0, vms=max(n_vms // 2, 1), pools=0)
    with start_vcsim(topology) as vc, portal(mode, keep) as p:
        # 1. the connection and its inventory, owned by one unit
        r = p.client.post(
            "/api/v1/connections",
            json={
                "kind": "vsphere",
                "name": "bench-vcsim",
                "url": vc.url,
                "username": vc.username,
                "secret": vc.password,
                "verify_tls": False,
            },
        )
        r.raise_for_status()
        conn_id = r.json()["id"]
        unit = p.client.post("/api/v1/units", json={"code": "BENCH", "name_zh": "压测学院"})
        unit.raise_for_status()
        unit_id = unit.json()["id"]
        p.client.post("/api/v1/inventory/sync", json={"connection_id": conn_id}).raise_for_status()
        deadline = time.monotonic() + 120
        vms: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            vms = p.client.get("/api/v1/inventory/unregistered", params={"connection_id": conn_id}).json()
            if len(vms) >= n_vms:
                break
            time.sleep(0.5)
        vms = vms[:n_vms]
        for v in vms:
            p.client.post(
                f"/api/v1/inventory/vms/{v['id']}/assign", json={"unit_id": unit_id}
            ).raise_for_status()
        addresses = {v["id"]: f"10.77.{i // 250}.{i % 250 + 1}" for i, v in enumerate(vms)}
        p.sql(
            "UPDATE vm SET ip_address = ?, ips = ? WHERE id = ?",
            [(ip, json.dumps([ip]), vm_id) for vm_id, ip in addresses.items()],
        )
        if inventory > len(vms):
            _pad_inventory(p, conn_id, next(iter(addresses)), inventory - len(vms))

        # 2. the source, then the alerts at a steady rate
        src = p.client.post(
            "/api/v1/alert-sources", json={"name": "bench-ids", "kind": "suricata", "auth": "hmac"}
        )
        src.raise_for_status()
        secret = src.json()["secret"]
        if restart:  # the cold start: fresh processes over the configured portal
            p.restart()
        order = list(addresses) + [random.choice(list(addresses)) for _ in range(n_alerts - len(addresses))]
        random.Random(7).shuffle(order)
        sent: list[tuple[int, float]] = []
        answered: list[float] = []
        failures: list[str] = []
        sender = httpx.Client(base_url=p.base, timeout=30)

        def post(i: int, vm_id: int) -> None:
            body = json.dumps(_eve(addresses[vm_id], i)).encode()
            t0 = time.time()
            try:
                resp = sender.post(
                    "/api/v1/alerts/bench-ids",
                    content=body,
                    headers={**signing.signed_headers(body, secret), "Content-Type": "application/json"},
                )
                if resp.status_code not in (200, 202):
                    failures.append(f"{resp.status_code} {resp.text[:200]}")
                answered.append(time.time() - t0)
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            sent.append((vm_id, t0))

        threads: list[threading.Thread] = []
        # Competing CPU-bound processes, stopped once the containments are in (or the limit passed).
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        cpu_before = _cpu_by_process(p, vc.pid)
        load_before = os.getloadavg()
        start = time.monotonic()
        for i, vm_id in enumerate(order):
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            t = threading.Thread(target=post, args=(i, vm_id))
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout=60)
        send_s = time.monotonic() - start

        # 3. wait for every VM's containment, confirmed by the hypervisor
        deadline = time.monotonic() + limit_s
        contained: dict[int, float] = {}
        while time.monotonic() < deadline:
            rows = p.sql("SELECT vm_id, contained_at FROM incident WHERE contained_at IS NOT NULL")
            contained = {int(vm_id): _ts(at) for vm_id, at in rows}
            if len(contained) >= len(addresses):
                break
            time.sleep(0.25)
        busy_s = time.monotonic() - start
        cpu_after = _cpu_by_process(p, vc.pid)
        load_after = os.getloadavg()
        for hog in hogs:
            hog.kill()
            hog.wait()
        first_sent: dict[int, float] = {}
        for vm_id, t0 in sorted(sent, key=lambda x: x[1]):
            first_sent.setdefault(vm_id, t0)
        all_latency = [max(contained[v] - t0, 0.0) for v, t0 in sent if v in contained]
        first_latency = [contained[v] - t0 for v, t0 in first_sent.items() if v in contained]
        # The same in the order the VMs were first accused, by fifths of the run: a slow start (pool
        # processes connecting, logging in to the hypervisor) shows in the first fifth only.
        in_order = [
            contained[v] - t0 for v, t0 in sorted(first_sent.items(), key=lambda x: x[1]) if v in contained
        ]
        fifth = max(len(in_order) // 5, 1)
        by_fifth = [
            {"p50_ms": _summary(part)["p50_ms"], "max_ms": _summary(part)["max_ms"]}
            for part in (in_order[i : i + fifth] for i in range(0, len(in_order), fifth))
            if part
        ]
        calls = p.sql("SELECT COUNT(*) FROM incident")[0][0]
        stages = _stages(p, first_sent)

        # 4. the bare adapter call on the same VMs
        adapter = VSphereAdapter(
            ConnectionConfig(
                kind=HypervisorKind.VSPHERE,
                url=vc.url,
                username=vc.username,
                secret=vc.password,
                verify_tls=False,
            )
        )
        refs = [v["hypervisor_ref"] for v in vms]
        bare: list[float] = []
        for ref in refs:
            adapter.set_network(ref, True)
            t0 = time.perf_counter()
            info = adapter.set_network(ref, False)
            bare.append(time.perf_counter() - t0)
            assert not info.network_connected
        adapter.close()

        return {
            "mode": mode,
            "alerts_sent": len(sent),
            "vms": len(addresses),
            "inventory_vms": max(inventory, len(addresses)),
            "rate_per_s": rate,
            "restarted_after_setup": restart,
            "competing_busy_loops": busy,
            "send_seconds": round(send_s, 1),
            "post_failures": len(failures),
            "load_average_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
            # CPU seconds each part used from the first post until the last containment (the
            # machine has os.cpu_count() CPUs for all of it, shared with whatever else runs).
            "cpu_seconds": {
                "window_seconds": round(busy_s, 1),
                "cpus": os.cpu_count(),
                **{k: round(cpu_after.get(k, 0.0) - v, 2) for k, v in cpu_before.items()},
            },
            "first_failures": failures[:3],
            "incidents": calls,
            "contained_vms": len(contained),
            "post_answer": _summary(answered),
            "alert_to_confirmed_containment_first_alert_per_vm": _summary(first_latency),
            "first_alert_per_vm_by_fifth_of_the_run": by_fifth,
            "stages_first_alert_per_vm": stages,
            "alert_to_confirmed_containment_all_alerts": _summary(all_latency),
            "bare_adapter_set_network": _summary(bare),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["embedded", "production"], default="embedded")
    parser.add_argument("--alerts", type=int, default=500)
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="alerts per second")
    parser.add_argument("--limit", type=float, default=180.0, help="seconds to wait for containment")
    parser.add_argument(
        "--keep", type=Path, default=None, help="run in this directory and leave it (with the logs) behind"
    )
    parser.add_argument(
        "--inventory",
        type=int,
        default=0,
        help="VMs in the inventory in all (the --vms on vcsim plus copies on an inactive connection), "
        "e.g. 20000: what the alert matcher must look past",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="restart the worker and the API after the set-up, so the alerts meet processes that have "
        "served nothing yet (as after a restart or a deployment)",
    )
    parser.add_argument(
        "--busy", type=int, default=0, help="CPU-bound processes competing while the alerts are sent"
    )
    args = parser.parse_args()
    result = run(
        args.mode,
        args.alerts,
        args.vms,
        args.rate,
        args.limit,
        args.keep,
        args.inventory,
        restart=args.restart,
        busy=args.busy,
    )
    print(json.dumps(result, indent=2, ensure_ascii=False))
    p99 = result["alert_to_confirmed_containment_first_alert_per_vm"]["p99_ms"]
    # The targets: under 300 ms at 20 alerts/s on its own; under 1 s at 100 alerts/s, or at
    # 20 alerts/s with two CPU-bound processes competing.
    target = 300.0 if args.rate <= 20 and not args.busy else 1000.0
    print(
        f"target p99 < {target:g} ms at {args.rate:g} alerts/s with {args.busy} busy loops: "
        f"{'met' if p99 < target else 'NOT met'} ({p99} ms)"
    )
    cpu = result["cpu_seconds"]
    portal_cpu = sum(cpu.get(k, 0.0) for k in ("worker", "api", "postgresql_backends", "vcsim"))
    per_alert = 1000 * portal_cpu / max(result["alerts_sent"], 1)
    print(
        f"CPU per alert (worker, API, PostgreSQL, vcsim): {per_alert:.1f} ms "
        f"(target 10 ms: {'met' if per_alert <= 10 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
