"""Fixtures of the web foundation tests: the vendored files in place (the install step, instant when
already done), the demo app through TestClient, the demo app under a real uvicorn on a loopback
port, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[2]
ASSET_CACHE = Path(os.environ.get("VMPORTAL_ASSET_CACHE", REPO / ".cache" / "web-assets"))
if not ASSET_CACHE.is_absolute():
    ASSET_CACHE = REPO / ASSET_CACHE
AXE = ASSET_CACHE / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def vendored() -> None:
    """What `make install` does: vendor the npm files and compile the catalogs (a no-op when the
    stamp says nothing changed; a file lock keeps two test workers from racing)."""
    subprocess.run([str(REPO / "scripts" / "vendor-assets.sh")], cwd=REPO, check=True)


@pytest.fixture
def client(vendored: None) -> Iterator[TestClient]:
    from tests.web_foundation.demo_app import create_app

    with TestClient(create_app()) as c:
        yield c


@pytest.fixture(scope="module")
def live_server(vendored: None) -> Iterator[str]:
    """The demo app in its own uvicorn process, on a socket bound here (port 0: the kernel picks a
    free one, and no other process can take it between choosing and listening)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.web_foundation.demo_app:app",
            "--fd",
            str(sock.fileno()),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO,
        pass_fds=(sock.fileno(),),
    )
    sock.close()  # the server holds its own copy
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not answer within 30 s")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
