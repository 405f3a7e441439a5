"""Page latencies beside the JSON API's: ``python -m bench.pages`` starts ``vmportal serve --demo``
(SQLite, demo data) on a free loopback port, logs a unit admin in through the login form and
through the API, and times GET /vms (page), the same page's HTMX table, and GET /api/v1/vms,
printing p50/p99 and the load average. (The issue's 20,000-VM PostgreSQL run is not done here.)"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from policies.roles import Role
from vmportal.app.demo import logins

N = int(os.environ.get("BENCH_N", "200"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _time(client: httpx.Client, url: str, **kw: object) -> tuple[float, float]:
    samples = []
    for _ in range(N):
        t = time.perf_counter()
        r = client.get(url, **kw)  # type: ignore[arg-type]
        samples.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (url, r.status_code)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    port = _port()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMPORTAL_")}
    env.update(VMPORTAL_DATA_DIR=str(tmp / "data"), VMPORTAL_LOG_LEVEL="WARNING")
    exe = Path(sys.executable).parent / "vmportal"
    argv = [str(exe), "serve", "--demo", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(argv, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        admin = next(d for d in logins() if d.role == Role.UNIT_ADMIN)
        with httpx.Client(base_url=base, timeout=30) as page, httpx.Client(base_url=base, timeout=30) as api:
            page.post("/login", data={"username": admin.username, "password": admin.password, "next": "/"})
            token = api.post(
                "/api/v1/auth/login", json={"username": admin.username, "password": admin.password}
            )
            api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            rows = [
                ("page GET /vms", _time(page, "/vms")),
                ("htmx GET /vms (table)", _time(page, "/vms", headers={"HX-Request": "true"})),
                ("api  GET /api/v1/vms", _time(api, "/api/v1/vms")),
            ]
        print(f"n={N} per URL, sequential, one client; load average {os.getloadavg()}")
        for name, (p50, p99) in rows:
            print(f"{name:28s} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
