"""How the portal holds up when many people act at once (issue: no 5xx, no stall).

Run: ``python -m bench.concurrency [--database sqlite|postgres|both] [--rounds 3]`` (about a minute;
PostgreSQL: the local server, trust auth).

Each round starts ``vmportal serve --demo`` as a user does (embedded: SQLite, the simulator,
in-process tasks; or the same on a fresh PostgreSQL database) and sends, all at once, 200 requests:
120 reads (``/auth/me`` and ``/vms`` of a unit admin), 40 approvals of one request by the operator on
duty and 40 power operations on one VM. It prints the status counts (target: no 5xx), the reads' p50
and p99 (target: p99 under 2 s), the writes' p50/p99, the burst's wall time, and the machine's load
average before the run (say it beside any figure you record). Bounded: 200 requests per round; every
process it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from cryptography.fernet import Fernet

VENV_BIN = Path(sys.executable).parent
PG = os.environ.get("VMPORTAL_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
API = "/api/v1"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("VMPORTAL_")}
    full.update({"VMPORTAL_DATA_DIR": str(workdir / "data"), "VMPORTAL_LOG_LEVEL": "WARNING", **env})
    log = open(workdir / "portal.log", "wb")  # noqa: SIM115  (kept open for the child's life)
    proc = subprocess.Popen(
        [str(VENV_BIN / "vmportal"), "serve", "--demo", "--port", str(port)],
        env=full,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the portal exited: {(workdir / 'portal.log').read_text()[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the portal did not start within 90 s")


def _login(base: str, username: str, password: str) -> dict[str, str]:
    r = httpx.post(f"{base}{API}/auth/login", json={"username": username, "password": password}, timeout=30)
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _prepare(base: str) -> tuple[dict[str, str], dict[str, str], int, int]:
    from policies.roles import Role
    from vmportal.app.demo import PASSWORDS

    admin = _login(base, "cs-admin", PASSWORDS[Role.UNIT_ADMIN])
    operator = _login(base, "operator", PASSWORDS[Role.CENTER_OPERATOR])
    with httpx.Client(base_url=base, timeout=30) as c:
        template = c.get(f"{API}/templates", headers=admin).json()[0]
        req = c.post(
            f"{API}/requests",
            json={
                "system_name": "并发基准实验平台",
                "purpose": "teaching",
                "description": "并发基准测试用的教学实验环境",
                "hostname": "bench-lab",
                "connection_id": template["connection_id"],
                "template_ref": template["ref"],
                "vcpus": 1,
                "memory_gib": 1,
                "disk_gib": 40,
            },
            headers=admin,
        )
        req.raise_for_status()
        vms = c.get(f"{API}/vms", headers=admin).json()["items"]
    return admin, operator, int(req.json()["id"]), int(vms[0]["id"])


async def _burst(
    base: str, calls: list[tuple[str, str, str, dict[str, str], Any]]
) -> list[tuple[str, int, float]]:
    limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        gate = asyncio.Event()

        async def one(
            kind: str, method: str, path: str, headers: dict[str, str], body: Any
        ) -> tuple[str, int, float]:
            await gate.wait()
            started = time.perf_counter()
            r = await client.request(method, path, headers=headers, json=body)
            return kind, r.status_code, time.perf_counter() - started

        tasks = [asyncio.create_task(one(*c)) for c in calls]
        await asyncio.sleep(0.2)
        gate.set()
        return list(await asyncio.gather(*tasks))


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_round(database: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vmportal-bench-") as tmp:
        env: dict[str, str] = {}
        name = f"vmportal_bench_{os.getpid()}_{int(time.time())}"
        admin_engine = None
        if database == "postgres":
            admin_engine = sa.create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
            with admin_engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            env = {
                "VMPORTAL_DATABASE_URL": f"{PG}/{name}",
                "VMPORTAL_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            }
        proc, base = _serve(Path(tmp), env)
        try:
            admin, operator, request_id, vm_id = _prepare(base)
            calls: list[tuple[str, str, str, dict[str, str], Any]] = []
            calls += [("read", "GET", f"{API}/auth/me", admin, None)] * 60
            calls += [("read", "GET", f"{API}/vms", admin, None)] * 60
            calls += [("write", "POST", f"{API}/requests/{request_id}/approve", operator, None)] * 40
            calls += [
                ("write", "POST", f"{API}/vms/{vm_id}/power", admin, {"action": a})
                for a in ["stop", "start"] * 20
            ]
            started = time.perf_counter()
            results = asyncio.run(_burst(base, calls))
            wall = time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait(30)
            if admin_engine is not None:
                with admin_engine.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin_engine.dispose()
    reads = [d for k, _, d in results if k == "read"]
    writes = [d for k, _, d in results if k == "write"]
    return {
        "statuses": dict(Counter(s for _, s, _ in results)),
        "server_errors": sum(1 for _, s, _ in results if s >= 500),
        "read_p50": statistics.median(reads),
        "read_p99": _pct(reads, 0.99),
        "write_p50": statistics.median(writes),
        "write_p99": _pct(writes, 0.99),
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per database (bounded: 1-10)")
    args = parser.parse_args()
    rounds = max(1, min(args.rounds, 10))
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; cpus: {os.cpu_count()}")
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    print(
        f"{'database':<9} {'round':>5} {'5xx':>4} {'read p50':>9} {'read p99':>9} {'write p50':>10} {'write p99':>10} {'wall':>6}  statuses"
    )
    for database in databases:
        for i in range(rounds):
            r = run_round(database)
            print(
                f"{database:<9} {i + 1:>5} {r['server_errors']:>4} {r['read_p50']:>8.3f}s {r['read_p99']:>8.3f}s "
                f"{r['write_p50']:>9.3f}s {r['write_p99']:>9.3f}s {r['wall']:>5.2f}s  {r['statuses']}"
            )


if __name__ == "__main__":
    main()
