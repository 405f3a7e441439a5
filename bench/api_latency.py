"""How fast the API answers "list my VMs" and "get one VM" on PostgreSQL, against this machine's ceiling.

Run: ``python -m bench.api_latency`` (about a minute; needs the local PostgreSQL, trust auth).

In one run it:

1. creates a fresh PostgreSQL database, migrates it, and bulk-inserts 20,000 VMs across 300 units (one
   unit admin per unit, a live bearer token for some of them);
2. serves it with ``vmportal serve --workers 2`` (uvicorn, two processes), configured as production
   (``VMPORTAL_DATABASE_URL``, JSON logs), and beside it a *bare* FastAPI app returning the same JSON
   from memory, served the same way (uvicorn, two workers, same log level): the machine's ceiling;
3. drives each with the same bounded load generator on loopback (``--connections`` keep-alive HTTP/1.1
   connections, at most ``--requests`` requests or ``--seconds`` seconds per target and scenario,
   after a warm-up, in ``--rounds`` rounds alternating ceiling and portal, so that a burst of other
   work on this shared machine weighs on both; the ratio is that of the requests/s over all rounds,
   and each round's ratio is printed beside it);
   each connection acts as one unit admin (round robin over ``--admins`` of them);
4. prints requests/s, p50 and p99 for both and the ratio portal/ceiling (targets of issue 9: "list my
   VMs" at least 0.7, "get one VM" at least 0.9), as a table and, with ``--json``, as one JSON
   object; the database is dropped afterwards.

With ``--without-lane`` a third server joins the same alternating rounds: the same portal built
without its plain-ASGI read lane (``vmportal.vm.lane``; the factory below drops that one
middleware, no setting involved), so that what the lane is worth is measured in the same run and
on the same database: keep it only if removing it costs more than a tenth of the list ratio.

The load generator is a small asyncio HTTP/1.1 client (raw streams, no client library): at a few
thousand requests per second a general-purpose client would measure itself more than the server. It
runs in this process, on the same (small) machine as the servers and PostgreSQL, so absolute figures
are modest; the ratio is what the target is about.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from bench.vmdb import VENV_BIN, create_dataset, drop_dataset, free_port, serve

#: The share of the ceiling's requests/s each scenario must reach (issue 9).
TARGETS = {"list my VMs": 0.7, "get one VM": 0.9}

# --------------------------------------------------------------------------------------------------
# The ceiling: a bare FastAPI app returning, from memory, the JSON the portal returned
# --------------------------------------------------------------------------------------------------


def portal_without_lane() -> Any:
    """``uvicorn --factory bench.api_latency:portal_without_lane``: the portal exactly as
    ``vmportal serve`` builds it, less the read lane, so every request goes through FastAPI's router
    (the middleware stack is built at the first request, so dropping the entry here is enough)."""
    from vmportal.app.factory import create_app
    from vmportal.vm.lane import ReadLane

    app = create_app()
    app.user_middleware = [m for m in app.user_middleware if m.cls is not ReadLane]
    return app


def ceiling_app() -> Any:
    """``uvicorn --factory bench.api_latency:ceiling_app``: the two endpoints, no database, no auth,
    no middleware; the payloads come from the file named by ``BENCH_CEILING_PAYLOADS``."""
    from fastapi import FastAPI

    payloads = json.loads(Path(os.environ["BENCH_CEILING_PAYLOADS"]).read_text())
    listing, one = payloads["list"], payloads["get"]
    app = FastAPI()

    @app.get("/api/v1/vms")
    def list_vms() -> dict[str, Any]:
        return dict(listing)

    @app.get("/api/v1/vms/{vm_id}")
    def get_vm(vm_id: int) -> dict[str, Any]:
        return dict(one)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


# The 20,000-VM database and the server runner are shared with bench.pages (bench/vmdb.py).
_free_port = free_port


# --------------------------------------------------------------------------------------------------
# Load generator
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    target: str
    scenario: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    bytes_per_response: int


async def _connection(
    port: int,
    paths: list[str],
    token: str,
    budget: list[int],
    stop_at: float,
    latencies: list[float],
    errors: list[int],
    sizes: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    requests = [
        (f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
        for p in paths
    ]
    i = 0
    try:
        while budget[0] > 0 and time.perf_counter() < stop_at:
            budget[0] -= 1
            request = requests[i % len(requests)]
            i += 1
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(status)
            sizes.append(len(body))
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _drive(
    port: int, paths_per_conn: list[list[str]], tokens: list[str], requests: int, seconds: float
) -> tuple[list[float], list[int], list[int], float]:
    budget = [requests]
    latencies: list[float] = []
    errors: list[int] = []
    sizes: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(port, paths, token, budget, started + seconds, latencies, errors, sizes)
            for paths, token in zip(paths_per_conn, tokens, strict=True)
        )
    )
    return latencies, errors, sizes, time.perf_counter() - started


@dataclass
class Round:
    latencies: list[float]
    errors: int
    sizes: list[int]
    elapsed: float


def load(
    base: str,
    paths_per_conn: list[list[str]],
    tokens: list[str],
    *,
    requests: int,
    seconds: float,
    warmup: int,
) -> Round:
    port = int(base.rsplit(":", 1)[1])
    if warmup:
        asyncio.run(_drive(port, paths_per_conn, tokens, warmup, seconds))
    latencies, errors, sizes, elapsed = asyncio.run(_drive(port, paths_per_conn, tokens, requests, seconds))
    return Round(latencies, len(errors), sizes, elapsed)


def summarise(target: str, scenario: str, rounds: list[Round]) -> Result:
    latencies = sorted(x for r in rounds for x in r.latencies)
    sizes = [x for r in rounds for x in r.sizes]
    elapsed = sum(r.elapsed for r in rounds)
    n = len(latencies)
    return Result(
        target=target,
        scenario=scenario,
        requests=n,
        seconds=round(elapsed, 2),
        rps=round(n / elapsed, 1),
        p50_ms=round(statistics.median(latencies) * 1000, 2),
        p99_ms=round(latencies[min(n - 1, int(n * 0.99))] * 1000, 2),
        errors=sum(r.errors for r in rounds),
        bytes_per_response=int(statistics.mean(sizes)) if sizes else 0,
    )


def compare(
    scenario: str,
    targets: dict[str, str],
    paths: list[list[str]],
    tokens: list[str],
    args: argparse.Namespace,
) -> tuple[list[Result], dict[str, list[float]]]:
    """The targets (``ceiling`` first) measured in alternating rounds, so that a burst of other work
    on this shared machine falls on all alike; each round's ratio to the ceiling is kept and printed
    beside the overall one."""
    per_round = {"requests": max(1, args.requests // args.rounds), "seconds": args.seconds / args.rounds}
    for base in targets.values():
        load(base, paths, tokens, requests=args.warmup, seconds=args.seconds, warmup=0)
    rounds: dict[str, list[Round]] = {name: [] for name in targets}
    ratios: dict[str, list[float]] = {name: [] for name in targets if name != "ceiling"}
    for _ in range(args.rounds):
        for name, base in targets.items():
            rounds[name].append(load(base, paths, tokens, warmup=0, **per_round))
        c = rounds["ceiling"][-1]
        for name in ratios:
            r = rounds[name][-1]
            ratios[name].append((len(r.latencies) / r.elapsed) / (len(c.latencies) / c.elapsed))
    return [summarise(name, scenario, rounds[name]) for name in targets], ratios


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    key = Fernet.generate_key().decode()
    t0 = time.monotonic()
    data = create_dataset(args.vms, args.units, args.admins, key)
    loaded = time.monotonic() - t0
    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("VMPORTAL_")}
    portal_env = {
        **base_env,
        "VMPORTAL_DATABASE_URL": data.url,
        "VMPORTAL_ENCRYPTION_KEY": key,
        "VMPORTAL_DATA_DIR": str(workdir / "data"),
        "VMPORTAL_LOG_JSON": "true",
        "VMPORTAL_LOG_LEVEL": args.log_level,
        "VMPORTAL_TASK_MODE": "inline",  # nothing here starts a task; no thread pool, no re-drive thread
    }
    portal_port, ceiling_port = _free_port(), _free_port()
    portal_argv = [str(VENV_BIN / "vmportal"), "serve", "--host", "127.0.0.1", "--port", str(portal_port),
                   "--workers", str(args.workers)]  # fmt: skip
    results: list[Result] = []
    round_ratios: dict[str, dict[str, list[float]]] = {}
    try:
        with serve(portal_argv, portal_env, portal_port, workdir / "portal.log") as portal:
            # What the ceiling must return: the portal's own answers for the first admin.
            head = {"Authorization": f"Bearer {data.tokens[0]}"}
            listing = httpx.get(f"{portal}/api/v1/vms", headers=head, timeout=30)
            one = httpx.get(f"{portal}/api/v1/vms/{data.vm_ids[0][0]}", headers=head, timeout=30)
            assert listing.status_code == 200 and one.status_code == 200, (listing.text, one.text)
            assert len(listing.json()["items"]) == min(50, len(data.vm_ids[0]))
            payloads = workdir / "payloads.json"
            payloads.write_text(json.dumps({"list": listing.json(), "get": one.json()}, ensure_ascii=False))
            ceiling_env = {**base_env, "BENCH_CEILING_PAYLOADS": str(payloads), "PYTHONPATH": str(Path.cwd())}
            ceiling_argv = [str(VENV_BIN / "uvicorn"), "--factory", "bench.api_latency:ceiling_app",
                            "--host", "127.0.0.1", "--port", str(ceiling_port), "--workers", str(args.workers),
                            "--log-level", args.log_level.lower()]  # fmt: skip
            with contextlib.ExitStack() as servers:
                targets = {"ceiling": servers.enter_context(
                    serve(ceiling_argv, ceiling_env, ceiling_port, workdir / "ceiling.log")
                ), "portal": portal}  # fmt: skip
                if args.without_lane:
                    # The same database, already migrated by the portal above.
                    bare_port = _free_port()
                    bare_env = {
                        **portal_env,
                        "VMPORTAL_STARTUP_PREPARED": "true",
                        "PYTHONPATH": str(Path.cwd()),
                    }
                    bare_argv = [str(VENV_BIN / "uvicorn"), "--factory", "bench.api_latency:portal_without_lane",
                                 "--host", "127.0.0.1", "--port", str(bare_port), "--workers", str(args.workers),
                                 "--log-level", args.log_level.lower(), "--no-server-header"]  # fmt: skip
                    targets["no lane"] = servers.enter_context(
                        serve(bare_argv, bare_env, bare_port, workdir / "no-lane.log")
                    )
                conns = args.connections
                tokens = [data.tokens[i % len(data.tokens)] for i in range(conns)]
                list_paths = [["/api/v1/vms"] for _ in range(conns)]
                rng = random.Random(7)
                get_paths = []
                for i in range(conns):
                    ids = data.vm_ids[i % len(data.tokens)]
                    get_paths.append([f"/api/v1/vms/{rng.choice(ids)}" for _ in range(64)])
                for scenario, paths in (("list my VMs", list_paths), ("get one VM", get_paths)):
                    measured, ratios = compare(scenario, targets, paths, tokens, args)
                    results += measured
                    round_ratios[scenario] = {k: [round(r, 3) for r in v] for k, v in ratios.items()}
    finally:
        if not args.keep:
            drop_dataset(data)
    summary: dict[str, Any] = {
        "vms": data.vms,
        "units": data.units,
        "workers": args.workers,
        "connections": args.connections,
        "load_seconds": round(loaded, 1),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "results": [asdict(r) for r in results],
        "ratios": {},
    }
    summary["round_ratios"] = round_ratios
    for scenario, per_target in round_ratios.items():
        ceiling_r = next(r for r in results if r.target == "ceiling" and r.scenario == scenario)
        summary["ratios"][scenario] = {
            name: round(
                next(r for r in results if r.target == name and r.scenario == scenario).rps / ceiling_r.rps, 3
            )
            for name in per_target
        }
    summary["target_met"] = all(summary["ratios"][s]["portal"] >= TARGETS[s] for s in summary["ratios"])
    return summary


def print_table(summary: dict[str, Any]) -> None:
    print(
        f"{summary['vms']} VMs, {summary['units']} units on PostgreSQL; {summary['workers']} uvicorn workers each; "
        f"{summary['connections']} connections; {summary['cpus']} CPUs, load average {summary['load_average_1m']}"
    )
    print(
        f"{'scenario':<14} {'target':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9} {'errors':>7}"
    )
    for r in summary["results"]:
        print(
            f"{r['scenario']:<14} {r['target']:<8} {r['rps']:>9.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['requests']:>9} {r['errors']:>7}"
        )
    for scenario, per_target in summary["ratios"].items():
        target = TARGETS[scenario]
        for name, ratio in per_target.items():
            verdict = ("meets" if ratio >= target else "BELOW") + f" the {target:.0%} target; "
            rounds = ", ".join(f"{r:.2f}" for r in summary["round_ratios"][scenario][name])
            print(
                f"ratio {name}/ceiling, {scenario}: {ratio:.2f} ({verdict if name == 'portal' else ''}"
                f"round by round {rounds})"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--vms", type=int, default=20_000)
    parser.add_argument("--units", type=int, default=300)
    parser.add_argument("--admins", type=int, default=16, help="unit admins the connections act as")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes of each server")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument(
        "--requests", type=int, default=20_000, help="at most this many requests per scenario"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="at most this long per scenario")
    parser.add_argument("--warmup", type=int, default=1_000, help="requests before each scenario's rounds")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="alternating ceiling/portal rounds sharing the bounds per scenario",
    )
    parser.add_argument("--log-level", default="INFO", help="log level of both servers (access log at INFO)")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON too")
    parser.add_argument(
        "--without-lane",
        action="store_true",
        help="also measure the portal without its read lane, in the same rounds (what the lane is worth)",
    )
    args = parser.parse_args(argv)
    summary = run(args)
    print_table(summary)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    return 0 if summary["target_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
