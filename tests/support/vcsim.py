"""govmomi's vCenter simulator (vcsim) as a real vSphere endpoint for tests and benchmarks.

``tests/vcsim/vcsim.go`` is a small Go main of the project's own. It is built in GOPATH mode against
Debian's ``golang-github-vmware-govmomi-dev`` sources, cached under ``.cache/vcsim/`` (keyed by a hash
of the Go source, the govmomi package version and the Go toolchain), and started on a loopback port.
It prints one JSON line (URL, credentials, template refs) and serves until its stdin closes.

Use from tests (the fixture is not in a conftest yet: import it into the test module, or list
``tests.support.vcsim`` in the root conftest's ``pytest_plugins``)::

    from tests.support.vcsim import vcsim_fixture  # noqa: F401  (provides the "vcsim" fixture)

    def test_something(vcsim: VcsimServer) -> None:
        adapter = create(vcsim.config())          # a VSphereAdapter on the session's simulator
        ref = vcsim.template_refs["tpl-debian12"]
        other = vcsim.spawn(Topology(clusters=1, vms=50))   # stopped at session end
        vcsim.stop(); vcsim.start()                # same port, fresh inventory (see restart())

Use from a script or benchmark: ``with start_vcsim(Topology(...)) as server: ...``.

Missing toolchain or sources is a hard error (:class:`VcsimUnavailable`) naming the Debian package to
install, never a skip: a suite that silently skips its vSphere half proves nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from hypervisors.base import ConnectionConfig, HypervisorKind

REPO_ROOT = Path(__file__).resolve().parents[2]
GO_SOURCE = REPO_ROOT / "tests" / "vcsim" / "vcsim.go"
CACHE_DIR = REPO_ROOT / ".cache" / "vcsim"
GOCODE = Path("/usr/share/gocode")
GOVMOMI_SRC = GOCODE / "src" / "github.com" / "vmware" / "govmomi"
GOVMOMI_PACKAGE = "golang-github-vmware-govmomi-dev"
GO_PACKAGE = "golang-go"

DEFAULT_USERNAME = "administrator@vsphere.local"
#: The template the contract suite clones (a Linux guest: LinuxPrep / cloud-init customization).
LINUX_TEMPLATE = "tpl-debian12"
WINDOWS_TEMPLATE = "tpl-win2019"


class VcsimUnavailable(RuntimeError):
    """vcsim cannot be built or started here; the message says what to install or look at."""


@dataclass(frozen=True)
class Topology:
    """The inventory a vcsim instance starts with (flags of ``tests/vcsim/vcsim.go``).

    VMs: ``datacenters * (clusters + standalone_hosts) * vms``, plus the templates, which live in
    DC0's ``vm/Templates`` folder on cluster DC0_C0. Names follow govmomi's scheme: ``DC0_C1_RP0_VM2``
    is VM 2 in the root pool of cluster 1; ``DC0_H0_VM1`` VM 1 on standalone host 0.
    """

    datacenters: int = 1
    clusters: int = 2
    hosts_per_cluster: int = 2
    standalone_hosts: int = 1
    vms: int = 3
    pools: int = 1
    datastores: int = 1
    templates: tuple[tuple[str, str], ...] = (
        (LINUX_TEMPLATE, "debian10_64Guest"),
        (WINDOWS_TEMPLATE, "windows9Server64Guest"),
    )
    autostart: bool = True
    page_cap: int = 0  # server-side PropertyCollector page limit, as vCenter applies one
    tls: bool = False

    @property
    def expected_vms(self) -> int:
        return self.datacenters * (self.clusters + self.standalone_hosts) * self.vms

    def args(self) -> list[str]:
        return [
            f"-datacenter={self.datacenters}",
            f"-clusters={self.clusters}",
            f"-hosts={self.hosts_per_cluster}",
            f"-standalone={self.standalone_hosts}",
            f"-vms={self.vms}",
            f"-pools={self.pools}",
            f"-datastores={self.datastores}",
            "-templates=" + ",".join(f"{name}:{guest}" for name, guest in self.templates),
            f"-autostart={'true' if self.autostart else 'false'}",
            f"-page-cap={self.page_cap}",
            f"-tls={'true' if self.tls else 'false'}",
        ]


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------


def _require_toolchain() -> str:
    go = shutil.which("go")
    if go is None:
        raise VcsimUnavailable(
            f"the Go toolchain is missing: install Debian's {GO_PACKAGE} (apt-get install {GO_PACKAGE})"
        )
    if not (GOVMOMI_SRC / "simulator" / "model.go").is_file():
        raise VcsimUnavailable(
            f"govmomi's simulator sources are missing under {GOVMOMI_SRC}: install Debian's "
            f"{GOVMOMI_PACKAGE} (apt-get install {GOVMOMI_PACKAGE})"
        )
    return go


def _govmomi_version() -> str:
    """The installed govmomi package version; a content hash when dpkg cannot tell."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", GOVMOMI_PACKAGE],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    digest = hashlib.sha256()
    for path in sorted((GOVMOMI_SRC / "simulator").rglob("*.go")):
        digest.update(path.read_bytes())
    return "src-" + digest.hexdigest()[:16]


def _go_version(go: str) -> str:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60, check=False)
    return out.stdout.strip() or "unknown"


def build_vcsim(*, force: bool = False) -> Path:
    """Build (or reuse) the vcsim binary and return its path.

    Safe to call from several processes at once (pytest-xdist workers): builds are serialised by a
    lock file and the binary appears atomically.
    """
    go = _require_toolchain()
    key_material = GO_SOURCE.read_bytes() + _govmomi_version().encode() + _go_version(go).encode()
    key = hashlib.sha256(key_material).hexdigest()[:16]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    binary = CACHE_DIR / f"vcsim-{key}"
    if binary.is_file() and not force:
        return binary

    with open(CACHE_DIR / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file() and not force:
            return binary  # another worker built it while we waited
        gopath = CACHE_DIR / "gopath"
        gopath.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "GO111MODULE": "off",
            # Our own GOPATH entry first: GOPATH mode wants a writable one; Debian's tree supplies
            # govmomi and its dependencies.
            "GOPATH": f"{gopath}:{GOCODE}",
            "GOCACHE": str(CACHE_DIR / "go-build"),
            "GOFLAGS": "",
        }
        partial = binary.with_suffix(".partial")
        result = subprocess.run(
            [go, "build", "-o", str(partial), GO_SOURCE.name],
            cwd=GO_SOURCE.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            raise VcsimUnavailable(
                f"building {GO_SOURCE.relative_to(REPO_ROOT)} failed (is {GOVMOMI_PACKAGE} complete?):\n"
                + (result.stderr or result.stdout)[-4000:]
            )
        os.replace(partial, binary)
        for stale in CACHE_DIR.glob("vcsim-*"):
            if stale != binary and stale.suffix != ".partial":
                with contextlib.suppress(OSError):
                    stale.unlink()
    return binary


# --------------------------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------------------------


@dataclass
class VcsimServer:
    """One vcsim process. ``start()`` runs it; ``stop()`` / ``start()`` restart it on the same port.

    A restart builds a fresh inventory from the same topology: the model's VMs and the templates
    come back with the same instance UUIDs (vcsim derives them from the VM's path), VMs created
    by tests do not.
    """

    topology: Topology = field(default_factory=Topology)
    username: str = DEFAULT_USERNAME
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    startup_timeout: float = 300.0
    port: int = 0  # 0 until first started; then kept for restarts
    host: str = "127.0.0.1"
    url: str = ""
    pid: int = 0
    cert_pem: str = ""
    ca_file: str | None = None
    template_refs: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _workdir: Path | None = field(default=None, repr=False)
    _log: Path | None = field(default=None, repr=False)
    _children: list[VcsimServer] = field(default_factory=list, repr=False)

    # ---- lifecycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def tls(self) -> bool:
        return self.topology.tls

    def start(self, *, port: int | None = None) -> VcsimServer:
        """Start (or restart, on the previous port) the simulator; returns once it serves."""
        if self.running:
            return self
        binary = build_vcsim()
        if port is not None:
            self.port = port
        self._workdir = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE_DIR))
        self._log = self._workdir / "vcsim.log"
        args = [
            str(binary),
            f"-listen={self.host}:{self.port}",
            f"-username={self.username}",
            f"-password={self.password}",
            *self.topology.args(),
        ]
        # vcsim keeps each datastore as a temp directory: keep them in our workdir, not /tmp.
        env = {**os.environ, "TMPDIR": str(self._workdir)}
        deadline = time.monotonic() + self.startup_timeout
        line = b""
        # A restart may race the old socket's teardown; retry a bind failure briefly.
        for attempt in range(20):
            with open(self._log, "ab") as log:
                self._process = subprocess.Popen(
                    args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env
                )
            line = self._read_line(deadline)
            if line or self.port == 0 or attempt == 19:
                break
            if "address already in use" not in self._log.read_text(errors="replace"):
                break
            time.sleep(0.25)
        if not line:
            tail = self._log.read_text(errors="replace")[-3000:] if self._log.exists() else ""
            self.stop()
            raise VcsimUnavailable(f"vcsim did not start ({' '.join(args[:2])} ...):\n{tail}")
        self.info = json.loads(line)
        self.url = self.info["url"]
        self.host = self.info["host"]
        self.port = int(self.info["port"])
        self.pid = int(self.info["pid"])
        self.template_refs = dict(self.info.get("templates") or {})
        self.cert_pem = self.info.get("cert_pem", "")
        self.ca_file = None
        if self.cert_pem:
            ca = self._workdir / "vcsim-ca.pem"
            ca.write_text(self.cert_pem)
            self.ca_file = str(ca)
        return self

    def _read_line(self, deadline: float) -> bytes:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 0.2)
            if ready:
                return stdout.readline().strip()
            if self._process.poll() is not None:
                return b""
        return b""

    def stop(self) -> None:
        """Stop the process (EOF on stdin, then SIGTERM, then SIGKILL) and remove its files."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(OSError):
                    if process.stdin is not None:
                        process.stdin.close()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.terminate()
                    try:
                        process.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(timeout=5)
            for stream in (process.stdin, process.stdout):
                with contextlib.suppress(OSError):
                    if stream is not None:
                        stream.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def restart(self) -> VcsimServer:
        """Stop and start again on the same port (fresh inventory; sessions are gone)."""
        self.stop()
        return self.start()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections hang instead of being refused."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def spawn(self, topology: Topology | None = None, **changes: Any) -> VcsimServer:
        """Start another, independent instance (different topology, TLS, credentials...).

        It is stopped with this one (or earlier by the caller). ``changes`` are Topology fields.
        """
        child = VcsimServer(
            topology=replace(topology or self.topology, **changes),
            username=self.username,
            startup_timeout=self.startup_timeout,
        )
        self._children.append(child)
        return child.start()

    def stop_all(self) -> None:
        for child in self._children:
            child.stop()
        self._children.clear()
        self.stop()

    def __enter__(self) -> VcsimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    # ---- what clients need ------------------------------------------------------------------

    def config(self, **overrides: Any) -> ConnectionConfig:
        """A ConnectionConfig for the vSphere adapter against this instance."""
        fields: dict[str, Any] = {
            "kind": HypervisorKind.VSPHERE,
            "url": self.url,
            "username": self.username,
            "secret": self.password,
            "ca_file": self.ca_file,
            "timeout": 30.0,
            "task_timeout": 120.0,
        }
        fields.update(overrides)
        return ConnectionConfig(**fields)

    def connect(self) -> Any:
        """A raw pyVmomi ServiceInstance, for tests that look behind the adapter."""
        import ssl

        from pyVim.connect import SmartConnect

        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=self.ca_file)
        return SmartConnect(
            protocol="https" if self.tls else "http",
            host=self.host,
            port=self.port,
            user=self.username,
            pwd=self.password,
            sslContext=context,
        )


def start_vcsim(topology: Topology | None = None, **kwargs: Any) -> VcsimServer:
    """Build if needed and start one vcsim; use as a context manager or call ``stop_all()``."""
    return VcsimServer(topology=topology or Topology(), **kwargs).start()


# --------------------------------------------------------------------------------------------
# pytest fixture (import vcsim_fixture into a test module, or list this module in the root
# conftest's pytest_plugins)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", name="vcsim")
def vcsim_fixture() -> Iterator[VcsimServer]:
    """The session's vcsim: 2 clusters x 2 hosts, 1 standalone host, 3 VMs each, 2 templates.

    Shared by every test of the session: create uniquely named VMs and delete them. A test that
    must stop or restart a simulator should ``spawn()`` its own rather than stop this one.
    """
    server = start_vcsim(Topology())
    try:
        yield server
    finally:
        server.stop_all()
