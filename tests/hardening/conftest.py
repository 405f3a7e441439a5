"""A live portal, started as a user starts it (``vmportal serve --demo``: SQLite, the simulator,
in-process tasks, demo data), on a free loopback port, for probes from outside: sockets, concurrent
clients, process memory. A second one on PostgreSQL for the same probes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from policies.roles import Role
from tests.production.harness import (
    PG_BASE,
    VENV_BIN,
    Proc,
    create_database,
    drop_database,
    free_port,
    unique_name,
    wait_for,
)
from vmportal.app.demo import PASSWORDS

API = "/api/v1"


@dataclass
class Live:
    base_url: str
    proc: Proc
    data_dir: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def login(self, username: str, role: Role) -> dict[str, str]:
        with self.client() as c:
            r = c.post(f"{API}/auth/login", json={"username": username, "password": PASSWORDS[role]})
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

    @property
    def pid(self) -> int:
        """The uvicorn server process (``vmportal serve`` runs it in its own process)."""
        return self.proc.pid


def _serve(tmp: Path, **env: str) -> Iterator[Live]:
    port = free_port()
    data_dir = tmp / "data"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("VMPORTAL_", "PYTEST_"))}
    base_env.update({"VMPORTAL_DATA_DIR": str(data_dir), "VMPORTAL_LOG_LEVEL": "WARNING", **env})
    argv = [str(VENV_BIN / "vmportal"), "serve", "--demo", "--host", "127.0.0.1", "--port", str(port)]
    proc = Proc(f"portal-{port}", argv, env=base_env, cwd=tmp, log=tmp / "portal.log")
    proc.start()
    live = Live(f"http://127.0.0.1:{port}", proc, data_dir)

    def healthy() -> bool:
        if not proc.running:
            raise AssertionError(f"the portal exited:\n{proc.tail()}")
        return httpx.get(f"{live.base_url}/healthz", timeout=2).status_code == 200

    wait_for(healthy, timeout=90, what="the live portal", describe=proc.tail)
    try:
        yield live
    finally:
        with contextlib.suppress(Exception):
            proc.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from _serve(tmp_path_factory.mktemp("live"))


@pytest.fixture(scope="module")
def live_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    name = unique_name("vmportal_hardening")
    url = create_database(name)
    try:
        yield from _serve(
            tmp_path_factory.mktemp("live_pg"),
            VMPORTAL_DATABASE_URL=url,
            VMPORTAL_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        )
    finally:
        drop_database(name)


__all__ = ["API", "PG_BASE", "Live"]
