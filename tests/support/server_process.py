"""A test server run as a child process: free loopback ports, readiness waits, logs, and teardown.

Shared by the identity servers (``tests/support/slapd.py``, ``tests/support/cas_server.py``). The
rules they follow: listen on loopback only, on ports the kernel handed out; wait for readiness
against a deadline while watching that the child is still alive; keep the child's output in a log
file whose tail goes into every error; and never leave a child behind, even when pytest itself is
killed (the child is asked to die with its parent).
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


class ServerProcessError(RuntimeError):
    """A test server could not be started; the message carries the tail of its log."""


def free_port(host: str = LOOPBACK) -> int:
    """A port the kernel considers free right now.

    Servers that bind their own sockets (slapd) race other processes for it between this call and
    their bind: callers retry on "address in use" rather than assume the port stays free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def die_with_parent() -> None:
    """``preexec_fn`` for Popen: the kernel sends the child SIGTERM when the test process dies.

    Without it a pytest run killed by a timeout (SIGKILL, no fixture teardown) would leave slapd or
    the CAS server listening on the machine until someone noticed.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool],
    process: subprocess.Popen[bytes],
    *,
    timeout: float,
    interval: float = 0.05,
) -> bool:
    """Poll ``ready()`` until it is true, the child exits, or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(interval)
    return False


def log_tail(path: Path | None, chars: int = 4000) -> str:
    """The last ``chars`` characters of a log file, for error messages and failure reports."""
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_text(errors="replace")
    return text[-chars:] if text else "(log is empty)"


def stop_process(process: subprocess.Popen[bytes] | None, *, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps the child."""
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)
    for stream in (process.stdin, process.stdout, process.stderr):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()
