"""What the shipper tests run against: the real portal served by uvicorn on a loopback port, a small
receiver that answers like the portal and misbehaves on cue (503, 429, 413, dropped connections), log
lines in each format, and the shipper running in a thread of the test or as a process of its own.

Waiting is polling with a deadline (:func:`wait_for`), never a bare sleep.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from vmportal.alerts import signing
from vmportal.shipper import Shipper, ShipperConfig, Stats
from vmportal.shipper.config import build

T = TypeVar("T")
_seq = itertools.count(1)


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.02) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def free_port() -> int:
    with contextlib.closing(listening_socket()) as sock:
        return int(sock.getsockname()[1])


# ---- the real portal ---------------------------------------------------------------------------------


@dataclass
class LivePortal:
    """The FastAPI app under uvicorn in a thread of the test, on its own port."""

    url: str
    admin: dict[str, str]  # a center admin's Authorization header

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.admin, timeout=30, trust_env=False)

    def source(self, kind: str, *, auth: str | None = "hmac") -> dict[str, Any]:
        body: dict[str, Any] = {"name": f"{kind}-sensor-{next(_seq)}", "kind": kind}
        if auth:
            body["auth"] = auth
        with self.api() as api:
            r = api.post("/api/v1/alert-sources", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def alerts(self, source: dict[str, Any]) -> list[dict[str, Any]]:
        """Every stored alert of the source, oldest first."""
        out: list[dict[str, Any]] = []
        with self.api() as api:
            while True:
                r = api.get(
                    "/api/v1/alerts", params={"source_id": source["id"], "limit": 500, "offset": len(out)}
                )
                assert r.status_code == 200, r.text
                page = r.json()
                out.extend(page["items"])
                if len(out) >= page["total"] or not page["items"]:
                    break
        return sorted(out, key=lambda a: a["id"])

    def records(self, source: dict[str, Any], *, failed: bool | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"source_id": source["id"], "limit": 500}
        if failed is not None:
            params["failed"] = failed
        with self.api() as api:
            r = api.get("/api/v1/alert-records", params=params)
        assert r.status_code == 200, r.text
        return sorted(r.json()["items"], key=lambda a: a["id"])


@contextlib.contextmanager
def serve_portal(settings: Any, admin_username: str, password: str) -> Iterator[LivePortal]:
    from vmportal.app.factory import create_app

    app = create_app(settings, migrate=False)
    sock = listening_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for("the portal to start", lambda: server.started, timeout=30)
        url = f"http://127.0.0.1:{port}"
        r = httpx.post(
            f"{url}/api/v1/auth/login",
            json={"username": admin_username, "password": password},
            trust_env=False,
        )
        assert r.status_code == 200, r.text
        yield LivePortal(url, {"Authorization": f"Bearer {r.json()['access_token']}"})
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


# ---- a receiver that misbehaves on cue -----------------------------------------------------------------


@dataclass
class Post:
    webhook_id: str
    body: bytes
    answered: int | None  # the status sent, None when the connection was dropped
    at: float = field(default_factory=time.monotonic)


@dataclass
class Receiver:
    """Answers like the portal (signature checked, webhook-ids remembered: a repeat is answered 200
    ``duplicate``), or forwards to ``upstream`` (the real portal) and hands back its answer.

    ``script`` holds what to do with the next posts, one action each, then ``"ok"``:

    * ``("status", code, headers)`` — answer that, store nothing;
    * ``"drop"`` — read the body, close the connection without answering, store nothing;
    * ``"store_then_drop"`` — store (or forward) the post, then close without answering: the sender
      cannot know it arrived;
    * ``"store_then_hold"`` — store (or forward), set ``held``, wait for ``release``, then close.
    """

    secret: str | None = None
    token: str | None = None
    upstream: str | None = None
    max_bytes: int | None = None
    script: deque[Any] = field(default_factory=deque)
    posts: list[Post] = field(default_factory=list)
    stored: list[bytes] = field(default_factory=list)  # records, in the order stored (standalone)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    _ids: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def records(self) -> list[bytes]:
        with self._lock:
            return list(self.stored)

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        """What the portal would answer (standalone mode)."""
        webhook_id = headers.get("webhook-id", "")
        try:
            if self.secret:
                signing.verify(headers, body, self.secret)
            else:
                signing.verify_bearer(headers.get("authorization"), self.token or "")
        except signing.WebhookAuthError as exc:
            return 401, {"error": {"code": "unauthorized", "message": exc.message}}, {}
        if self.max_bytes is not None and len(body) > self.max_bytes:
            return 413, {"error": {"code": "payload_too_large", "message": "too large"}}, {}
        with self._lock:
            if webhook_id and webhook_id in self._ids:
                return 200, {"duplicate": True, "webhook_id": webhook_id}, {}
            if webhook_id:
                self._ids.add(webhook_id)
            records = [line for line in body.split(b"\n") if line.strip()]
            self.stored.extend(records)
        results = [{"index": i, "status": "accepted"} for i in range(len(records))]
        return 202, {"records": len(records), "accepted": len(records), "results": results}, {}

    def forward(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        assert self.upstream is not None
        keep = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
        r = httpx.post(self.upstream, content=body, headers=keep, timeout=30, trust_env=False)
        return r.status_code, r.content, {"Content-Type": r.headers.get("content-type", "application/json")}

    def handle(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]] | None:
        """The answer to send, or None to drop the connection."""
        with self._lock:
            action = self.script.popleft() if self.script else "ok"
        webhook_id = headers.get("webhook-id", "")
        if isinstance(action, tuple) and action[0] == "status":
            _, code, extra = action
            self.posts.append(Post(webhook_id, body, code))
            return (
                code,
                json.dumps({"error": {"code": "injected", "message": "injected"}}).encode(),
                dict(extra),
            )
        if action == "drop":
            self.posts.append(Post(webhook_id, body, None))
            return None
        if self.upstream:
            status, content, extra = self.forward(headers, body)
        else:
            status, data, extra = self.answer(headers, body)
            content = json.dumps(data).encode()
            extra = {"Content-Type": "application/json", **extra}
        if action in ("store_then_drop", "store_then_hold"):
            self.posts.append(Post(webhook_id, body, None))
            if action == "store_then_hold":
                self.held.set()
                self.release.wait(60)
            return None
        self.posts.append(Post(webhook_id, body, status))
        return status, content, extra


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    receiver: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        result = self.receiver.handle(self.path, headers, body)
        if result is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, content, extra = result
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


@contextlib.contextmanager
def serve_receiver(receiver: Receiver, port: int = 0) -> Iterator[Receiver]:
    handler = type("Handler", (_Handler,), {"receiver": receiver})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# ---- the shipper -------------------------------------------------------------------------------------


def config(
    tmp: Path,
    log: Path,
    portal: str,
    source: str,
    *,
    secret: str | None = None,
    token: str | None = None,
    **extra: Any,
) -> ShipperConfig:
    """A configuration with test timings: quick polls, short back-off, no jitter."""
    values: dict[str, Any] = {
        "file": log,
        "format": "suricata",
        "portal": portal,
        "source": source,
        "secret": secret,
        "token": token,
        "state_file": tmp / "state" / f"{source}.state",
        "poll_interval": 0.02,
        "rotate_wait": 0.3,
        "timeout": 10,
        "backoff_initial": 0.05,
        "backoff_max": 0.4,
        "jitter": False,
    }
    values.update(extra)
    return build(values)


class Running:
    """The shipper in a thread of the test: ``with Running(cfg) as r: …``; leaving stops it and
    re-raises whatever it raised."""

    def __init__(self, cfg: ShipperConfig) -> None:
        self.shipper = Shipper(cfg)
        self.stop = threading.Event()
        self.stats: Stats | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.stats = self.shipper.run(self.stop)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the shipper did not stop"
        if self.error is not None:
            raise self.error


def ship_once(cfg: ShipperConfig) -> Stats:
    """Run until the file is shipped to its end (``once``), in this thread."""
    from dataclasses import replace

    return Shipper(replace(cfg, once=True)).run(threading.Event())


# ---- log lines ---------------------------------------------------------------------------------------

C2 = "203.0.113.80"


def eve_alert(n: int, *, vm_ip: str = "10.20.0.15", sid: int = 2035468, pad: int = 0) -> bytes:
    record: dict[str, Any] = {
        "timestamp": f"2026-03-16T14:{n // 60 % 60:02d}:{n % 60:02d}.123456+0800",
        "flow_id": 1_500_000_000 + n,
        "in_iface": "ens224",
        "event_type": "alert",
        "src_ip": vm_ip,
        "src_port": 40000 + n % 20000,
        "dest_ip": C2,
        "dest_port": 443,
        "proto": "TCP",
        "tx_id": 0,
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": sid,
            "rev": 2,
            "signature": "ET TROJAN Observed Malicious SSL Cert (Cobalt Strike CnC)",
            "category": "A Network Trojan was detected",
            "severity": 1,
        },
    }
    if pad:
        record["payload_printable"] = "x" * pad
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def eve_flow(n: int) -> bytes:
    record = {
        "timestamp": "2026-03-16T14:10:00.000000+0800",
        "flow_id": 1_600_000_000 + n,
        "event_type": "flow",
        "src_ip": "10.20.0.16",
        "src_port": 50000 + n % 10000,
        "dest_ip": "198.51.100.7",
        "dest_port": 80,
        "proto": "TCP",
        "app_proto": "http",
        "flow": {"pkts_toserver": 5, "pkts_toclient": 4, "bytes_toserver": 420, "bytes_toclient": 3210},
    }
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def eve_dns(n: int) -> bytes:
    record = {
        "timestamp": "2026-03-16T14:10:01.000000+0800",
        "flow_id": 1_700_000_000 + n,
        "event_type": "dns",
        "src_ip": "10.20.0.16",
        "dest_ip": "10.0.0.53",
        "proto": "UDP",
        "dns": {"type": "query", "id": n % 65536, "rrname": f"host{n}.example.edu.cn", "rrtype": "A"},
    }
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def zeek_notice(n: int, *, scanner: str = "10.20.0.31") -> bytes:
    record = {
        "ts": 1773641400.0 + n,
        "note": "Scan::Port_Scan",
        "msg": f"{scanner} scanned at least 15 unique ports of host 198.51.100.{n % 250 + 1} in 0m2s",
        "sub": "local",
        "src": scanner,
        "dst": f"198.51.100.{n % 250 + 1}",
        "peer_descr": "worker-1",
        "actions": ["Notice::ACTION_LOG"],
        "suppress_for": 3600.0,
    }
    return json.dumps(record).encode() + b"\n"


def wazuh_alert(n: int, *, level: int, agent_ip: str = "10.20.0.40") -> bytes:
    record = {
        "timestamp": "2026-03-16T14:20:11.418+0800",
        "rule": {
            "level": level,
            "description": "Web server 400 error code." if level < 7 else "SQL injection attempt.",
            "id": "31101" if level < 7 else "31106",
            "firedtimes": n,
            "groups": ["web", "accesslog", "attack"] if level >= 7 else ["web", "accesslog"],
        },
        "agent": {"id": "017", "name": "kyc-web02", "ip": agent_ip},
        "manager": {"name": "wazuh-manager"},
        "id": f"1773642011.{1000 + n}",
        "full_log": f'198.51.100.23 - - [16/Mar/2026:14:20:11 +0800] "GET /index.php?id={n}%27 HTTP/1.1" 400',
        "decoder": {"name": "web-accesslog"},
        "data": {"srcip": "198.51.100.23", "url": f"/index.php?id={n}'", "id": "400"},
        "location": "/var/log/nginx/access.log",
    }
    return json.dumps(record).encode() + b"\n"


def append(path: Path, *chunks: bytes) -> None:
    with open(path, "ab") as f:
        for chunk in chunks:
            f.write(chunk)
        f.flush()


def flow_ids(records: list[bytes]) -> list[int]:
    return [int(json.loads(r)["flow_id"]) for r in records]
