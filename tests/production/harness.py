"""Real processes for the production-path tests: a private redis-server, a PostgreSQL database of the
test's own, ``celery worker`` / ``celery beat`` subprocesses and the API under uvicorn.

Everything here is started by the test and stopped by it, by process id (each child runs in a
session of its own, so ``kill -9`` of a worker takes its pool processes with it and nothing else).
The machine's Redis on 6379 is never touched: every test gets a redis-server on a free loopback port.

Waiting is always polling with a deadline (:func:`wait_for`), never a bare sleep.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa

T = TypeVar("T")

VENV_BIN = Path(sys.executable).parent
PG_BASE = os.environ.get("VMPORTAL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


class Timeout(AssertionError):
    """A condition did not come true in time; the message says what was awaited and what was seen."""


def wait_for(
    predicate: Callable[[], T | bool | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout`` s.

    Exceptions raised by the predicate count as "not yet" (a server still starting refuses
    connections); the last one is reported if time runs out.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    delay = interval
    while True:
        try:
            value = predicate()
            if value:
                return value  # type: ignore[return-value]
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            seen = describe() if describe else ""
            raise Timeout(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f"; last error: {last_error!r}" if last_error else "")
                + (f"\n{seen}" if seen else "")
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


# ------------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------------


@dataclass
class Proc:
    """One subprocess in a session of its own, its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    ready_text: str = ""  # printed once the process serves (empty: running is enough)
    popen: subprocess.Popen[bytes] | None = None
    _offset: int = 0  # log position at the last start: readiness is looked for after it

    def start(self) -> Proc:
        if self.running:
            return self
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self._offset = out.tell()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill -9 reaches its children only
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self, *, since_start: bool = False) -> str:
        if not self.log.exists():
            return ""
        with open(self.log, "rb") as f:
            if since_start:
                f.seek(self._offset)
            return f.read().decode(errors="replace")

    def tail(self, chars: int = 4000) -> str:
        lines = [line for line in self.output().splitlines() if '" 200 OK' not in line]
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(lines)[-chars:]

    def wait_ready(self, timeout: float = 60) -> Proc:
        if self.ready_text:
            self.wait_output(self.ready_text, timeout=timeout)
        return self

    def wait_output(self, text: str, *, timeout: float) -> None:
        def seen() -> bool:
            if not self.running:
                raise Timeout(f"{self.name} exited with {self.popen and self.popen.returncode}")
            return text in self.output(since_start=True)

        wait_for(seen, timeout=timeout, what=f"{self.name} to print {text!r}", describe=self.tail)

    def descendants(self) -> list[int]:
        """Process ids below this one (read from /proc: a prefork worker's pool processes)."""
        found: list[int] = []
        frontier = [self.pid]
        while frontier:
            pid = frontier.pop()
            for task in Path(f"/proc/{pid}/task").glob("*"):
                with contextlib.suppress(OSError):
                    kids = [int(k) for k in (task / "children").read_text().split()]
                    found.extend(kids)
                    frontier.extend(kids)
        return found

    def kill9(self) -> None:
        """SIGKILL the whole process group at once: no clean-up, no acknowledgements, like a power cut."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        self._reap_group()

    def terminate(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (warm shutdown), then SIGKILL if it does not exit in time."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=30)
        self._reap_group()

    def _reap_group(self) -> None:
        # Pool processes outlive their parent for a moment; make sure none of the group still runs.
        assert self.popen is not None
        pgid = self.popen.pid

        def gone() -> bool:
            members = group_members(pgid)
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return not members

        wait_for(gone, timeout=30, what=f"process group of {self.name} to end")


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its last ')'
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return found


# ------------------------------------------------------------------------------------------------
# Redis
# ------------------------------------------------------------------------------------------------


@dataclass
class PrivateRedis:
    """A redis-server of the test's own on a free loopback port, without persistence: killing it
    loses every message it held (the harshest broker outage; the outbox must make up for it)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        assert binary, (
            "redis-server is missing (Debian package redis-server; scripts/bootstrap.sh installs it)"
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.proc is None:
            self.proc = Proc("redis", argv, dict(os.environ), self.workdir, self.workdir / "redis.log")
        self.proc.start()
        wait_for(self.ping, timeout=20, what=f"redis on port {self.port}", describe=self.proc.tail)
        return self

    def ping(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def kill(self) -> None:
        """kill -9: the queue and every unacknowledged message are gone with it."""
        assert self.proc is not None
        self.proc.kill9()
        wait_for(lambda: not port_open(self.port), timeout=10, what="redis port to close")

    def restart(self) -> None:
        self.kill()
        self.start()

    def queue_length(self, queue: str = "celery") -> int:
        import redis

        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            return int(client.llen(queue))  # type: ignore[arg-type]
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=5)


# ------------------------------------------------------------------------------------------------
# PostgreSQL
# ------------------------------------------------------------------------------------------------


def admin_engine() -> sa.Engine:
    return sa.create_engine(f"{PG_BASE}/postgres", isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def create_database(name: str, *, template: str | None = None) -> str:
    engine = admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            suffix = f' TEMPLATE "{template}"' if template else ""
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        engine.dispose()
    return f"{PG_BASE}/{name}"


def drop_database(name: str) -> None:
    engine = admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


def unique_name(prefix: str) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"{prefix}_{worker}_{os.getpid()}_{secrets.token_hex(3)}".lower().replace("-", "_")


# ------------------------------------------------------------------------------------------------
# The production stack
# ------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """API, workers and beat of one test, sharing one database and one private Redis."""

    workdir: Path
    database_url: str
    redis: PrivateRedis
    encryption_key: str
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VMPORTAL_", "PYTEST_", "COV_"))}
        env.update(
            {
                "VMPORTAL_DATABASE_URL": self.database_url,
                "VMPORTAL_BROKER_URL": self.redis.url,
                "VMPORTAL_ENCRYPTION_KEY": self.encryption_key,
                "VMPORTAL_DATA_DIR": str(self.workdir / "data"),
                "VMPORTAL_LOG_JSON": "true",
                "VMPORTAL_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def _proc(self, name: str, argv: list[str], **env: str) -> Proc:
        proc = Proc(name, argv, self.env(**env), self.workdir, self.workdir / "logs" / f"{name}.log")
        self.procs.append(proc)
        return proc

    # ---- Celery -----------------------------------------------------------------------------

    def worker(self, name: str = "w1", *, concurrency: int = 2, wait: bool = True, **env: str) -> Proc:
        """A ``celery -A vmportal.app.worker worker``, started (and, with ``wait``, ready)."""
        argv = [
            str(VENV_BIN / "celery"), "-A", "vmportal.app.worker", "worker",
            f"--concurrency={concurrency}", "--pool=prefork", f"--hostname={name}@%h",
            "--without-gossip", "--without-mingle", "--loglevel=INFO",
        ]  # fmt: skip
        proc = self._proc(f"worker-{name}", argv, **env)
        proc.ready_text = " ready."
        proc.start()
        return proc.wait_ready() if wait else proc

    def beat(self, *, wait: bool = True, **env: str) -> Proc:
        """``celery -A vmportal.app.worker beat`` with the portal's schedule."""
        argv = [
            str(VENV_BIN / "celery"), "-A", "vmportal.app.worker", "beat",
            f"--schedule={self.workdir / 'beat-schedule'}", "--loglevel=INFO",
        ]  # fmt: skip
        proc = self._proc("beat", argv, **env)
        proc.ready_text = "beat: Starting"
        proc.start()
        return proc.wait_ready() if wait else proc

    @staticmethod
    def restart(proc: Proc, timeout: float = 60) -> Proc:
        return proc.start().wait_ready(timeout)

    # ---- API --------------------------------------------------------------------------------

    def api(self, *, workers: int = 1, wait: bool = True, **env: str) -> Api:
        """``vmportal serve`` on a free port (``--workers`` > 1: uvicorn's process manager)."""
        port = free_port()
        argv = [
            str(VENV_BIN / "vmportal"), "serve", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers),
        ]  # fmt: skip
        proc = self._proc(f"api-{port}", argv, **env)
        api = Api(proc, f"http://127.0.0.1:{port}")
        proc.start()
        return api.wait_ready() if wait else api

    def up(self, *parts: Proc | Api, timeout: float = 90) -> None:
        """Wait until every process given (started with ``wait=False``) is ready: they start in
        parallel, which saves seconds per test."""
        for part in parts:
            part.wait_ready(timeout)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a ``vmportal`` command against this stack (e.g. ``redrive``)."""
        return subprocess.run(
            [str(VENV_BIN / "vmportal"), *args],
            env=self.env(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def logs(self) -> str:
        return "\n".join(p.tail(6000) for p in self.procs)

    def stop_all(self) -> None:
        """Teardown: kill -9 every process of the test (nothing here needs a warm shutdown)."""
        for proc in self.procs:
            if proc.popen is not None and proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.kill9()


@dataclass
class Api:
    proc: Proc
    base_url: str

    def wait_ready(self, timeout: float = 90) -> Api:
        def healthy() -> bool:
            if not self.proc.running:
                raise Timeout(f"the API exited with {self.proc.popen and self.proc.popen.returncode}")
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200

        wait_for(healthy, timeout=timeout, what=f"the API at {self.base_url}", describe=self.proc.tail)
        return self

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=kwargs.pop("timeout", 30), **kwargs)


@contextlib.contextmanager
def clients(api: Api, n: int) -> Iterator[list[httpx.Client]]:
    opened = [api.client() for _ in range(n)]
    try:
        yield opened
    finally:
        for c in opened:
            c.close()
