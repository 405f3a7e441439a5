"""The benchmarks' shared plumbing: a fresh PostgreSQL database of 20,000 VMs across 300 units, built
by bulk insert (minutes through the services, seconds this way) and dropped afterwards, and the
portal (or any server) run in a process group of its own until its /healthz answers.

``create_dataset(vms, units, admins, key)`` is what ``bench.api_latency`` builds; the keyword
arguments add what the page benchmark needs besides: center operators with a live token, and VM
requests waiting in the approval queue (and some delivered ones), spread over the units with due
times around now (some overdue, some at risk), as a real queue is.

Every user's password hash is a placeholder (nobody logs in through a form here): a benchmark
authenticates with the bearer tokens inserted beside them, which are also what a page session's
cookie carries (vmportal.web.session).
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

PG_BASE = os.environ.get("VMPORTAL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Dataset:
    url: str
    name: str
    tokens: list[str]  # one per benchmarked unit admin
    vm_ids: list[list[int]]  # that admin's unit's VM ids
    vms: int
    units: int
    operator_tokens: list[str] = field(default_factory=list)  # one per center operator
    requests_waiting: int = 0  # submitted requests in the approval queue
    requests_delivered: int = 0


def admin_engine() -> sa.Engine:
    return sa.create_engine(f"{PG_BASE}/postgres", isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def create_dataset(
    vms: int,
    units: int,
    admins: int,
    key: str,
    *,
    operators: int = 0,
    waiting: int = 0,
    delivered: int = 0,
) -> Dataset:
    """A fresh database with ``vms`` VMs over ``units`` units, inserted in bulk; ``admins`` unit
    admins (of distinct units) with a live token; ``operators`` center operators with one too;
    ``waiting`` submitted requests and ``delivered`` delivered ones over the units."""
    from vmportal.app import migrate as migrations
    from vmportal.identity.service import token_digest
    from vmportal.kit import crypto

    name = f"vmportal_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    url = f"{PG_BASE}/{name}"
    crypto.configure([key])
    migrations.upgrade(url)

    rng = random.Random(20260316)
    now = datetime.now(UTC)
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine, only=["unit", "user", "hypervisor_connection", "vm", "auth_token", "vm_request"])
    t = meta.tables
    with engine.begin() as conn:
        conn.execute(
            t["hypervisor_connection"].insert(),
            [{"name": "vc01", "kind": "vsphere", "url": "https://vc01.example.edu.cn/sdk", "username": "svc",
              "verify_tls": True, "defaults": {}, "active": True, "last_check_message": "", "token_id": "",
              "created_at": now}],
        )  # fmt: skip
        conn_id = conn.execute(sa.select(t["hypervisor_connection"].c.id)).scalar_one()
        conn.execute(
            t["unit"].insert(),
            [{"code": f"U{i:03d}", "name_zh": f"测试学院{i}", "name_en": f"College {i}", "active": True,
              "created_at": now} for i in range(units)],
        )  # fmt: skip
        unit_ids = [r[0] for r in conn.execute(sa.select(t["unit"].c.id).order_by(t["unit"].c.id))]
        # Every unit has its admin.
        conn.execute(
            t["user"].insert(),
            [{"username": f"admin{i:03d}", "password_hash": "$argon2id$placeholder", "role": "unit_admin",
              "unit_id": uid, "display_name": f"admin {i}", "email": "", "active": True,
              "failed_logins": 0, "created_at": now} for i, uid in enumerate(unit_ids)],
        )  # fmt: skip
        user_ids = [r[0] for r in conn.execute(sa.select(t["user"].c.id).order_by(t["user"].c.id))]
        powers = ["running"] * 7 + ["stopped"] * 3
        rows = []
        for n in range(vms):
            unit = unit_ids[n % units]
            rows.append(
                {"unit_id": unit, "connection_id": conn_id, "hypervisor_ref": f"{n:08x}-4f1e-5a2b-9c3d-bench",
                 "name": f"u{unit:03d}-srv-{n}", "hostname": f"srv-{n}", "template_name": "Rocky Linux 9",
                 "vcpus": rng.choice([1, 2, 4, 8]), "memory_gib": rng.choice([2, 4, 8, 16]),
                 "disk_gib": rng.choice([40, 80, 200]), "ip_address": f"10.{20 + n // 65000}.{n // 250 % 256}.{n % 250 + 2}",
                 "ips": [f"10.{20 + n // 65000}.{n // 250 % 256}.{n % 250 + 2}"], "macs": [f"00:50:56:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}"],
                 "admin_account": "vmadmin", "power_state": rng.choice(powers), "network_connected": True,
                 "security_state": "normal", "lifecycle": "active", "registered": True, "created_at": now,
                 "synced_at": now, "version": 0}
            )  # fmt: skip
        for start in range(0, len(rows), 5000):
            conn.execute(t["vm"].insert(), rows[start : start + 5000])
        chosen = rng.sample(range(units), admins)
        tokens = [secrets.token_urlsafe(32) for _ in chosen]
        conn.execute(
            t["auth_token"].insert(),
            [{"token_sha256": token_digest(tok), "user_id": user_ids[i], "created_at": now,
              "expires_at": now + timedelta(hours=8)} for tok, i in zip(tokens, chosen, strict=True)],
        )  # fmt: skip
        vm_ids = [
            [r[0] for r in conn.execute(sa.select(t["vm"].c.id).where(t["vm"].c.unit_id == unit_ids[i]))]
            for i in chosen
        ]
        operator_tokens = _operators(conn, t, operators, now, token_digest)
        _requests(conn, t, rng, now, unit_ids, user_ids, conn_id, waiting, delivered)
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return Dataset(
        url=url,
        name=name,
        tokens=tokens,
        vm_ids=vm_ids,
        vms=vms,
        units=units,
        operator_tokens=operator_tokens,
        requests_waiting=waiting,
        requests_delivered=delivered,
    )


def _operators(
    conn: sa.Connection, t: dict[str, sa.Table], n: int, now: datetime, digest: object
) -> list[str]:
    if not n:
        return []
    conn.execute(
        t["user"].insert(),
        [{"username": f"operator{i:02d}", "password_hash": "$argon2id$placeholder", "role": "center_operator",
          "unit_id": None, "display_name": f"operator {i}", "email": "", "active": True, "failed_logins": 0,
          "created_at": now} for i in range(n)],
    )  # fmt: skip
    ids = [
        r[0]
        for r in conn.execute(
            sa.select(t["user"].c.id).where(t["user"].c.role == "center_operator").order_by(t["user"].c.id)
        )
    ]
    tokens = [secrets.token_urlsafe(32) for _ in ids]
    assert callable(digest)
    conn.execute(
        t["auth_token"].insert(),
        [{"token_sha256": digest(tok), "user_id": uid, "created_at": now, "expires_at": now + timedelta(hours=8)}
         for tok, uid in zip(tokens, ids, strict=True)],
    )  # fmt: skip
    return tokens


def _requests(
    conn: sa.Connection,
    t: dict[str, sa.Table],
    rng: random.Random,
    now: datetime,
    unit_ids: list[int],
    admin_ids: list[int],
    conn_id: int,
    waiting: int,
    delivered: int,
) -> None:
    """Submitted requests due from two days ago to seven days ahead (so the queue has overdue and
    at-risk rows), and delivered ones, round robin over the units, each by its unit's admin."""
    rows = []
    for n in range(waiting + delivered):
        unit = n % len(unit_ids)
        submitted = now - timedelta(hours=rng.randint(0, 9 * 24))
        done = n >= waiting
        rows.append(
            {"unit_id": unit_ids[unit], "requested_by": admin_ids[unit],
             "state": "delivered" if done else "submitted", "purpose": "teaching", "beneficiary": "unit",
             "system_name": f"教学平台{n}", "description": "", "hostname": f"req-{n}", "connection_id": conn_id,
             "template_ref": "tpl-rocky-9", "template_name": "Rocky Linux 9", "vcpus": 2, "memory_gib": 4,
             "disk_gib": 40, "submitted_at": submitted, "due_at": submitted + timedelta(days=7),
             "decision_reason": "", "override_reason": "", "provisioning_attempts": 1 if done else 0,
             "failure_reason": "", "delivered_at": submitted + timedelta(days=1) if done else None,
             "decided_at": submitted + timedelta(hours=2) if done else None, "updated_at": now}
        )  # fmt: skip
    for start in range(0, len(rows), 5000):
        conn.execute(t["vm_request"].insert(), rows[start : start + 5000])


def drop_dataset(data: Dataset) -> None:
    admin = admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{data.name}" WITH (FORCE)')
    admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(argv: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """Run a server in a process group of its own; yield its base URL once /healthz answers."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited: {log.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not start: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
