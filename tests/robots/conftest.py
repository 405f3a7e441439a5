"""A group-robot receiver on a free loopback port that checks requests as DingTalk and WeCom do.

DingTalk (custom robot, 加签): ``POST /robot/send?access_token=…&timestamp=…&sign=…``; the token must be
a known robot's, the timestamp (ms) within an hour of now, and ``sign`` the base64 HMAC-SHA256 of
``f"{timestamp}\\n{secret}"`` under the secret, else errcode 310000. WeCom: ``POST
/cgi-bin/webhook/send?key=…``; an unknown key is errcode 93000. Both answer 200 with errcode/errmsg
JSON, as the services do. The signature is recomputed here from the secret, not with the portal's code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from vmportal.kit.settings import Settings


@dataclass
class Posted:
    kind: str  # dingtalk | wecom
    token: str
    query: dict[str, str]
    body: dict[str, Any]

    @property
    def text(self) -> str:
        md = self.body.get("markdown", {})
        return str(md.get("text") or md.get("content") or "")


@dataclass
class Receiver:
    url: str
    dingtalk: dict[str, str] = field(default_factory=dict)  # access_token -> secret ("" unsigned)
    wecom: set[str] = field(default_factory=set)  # keys
    accepted: list[Posted] = field(default_factory=list)
    refused: list[tuple[Posted, int, str]] = field(default_factory=list)
    rate_limit_next: int = 0  # answer this many posts with DingTalk's "send too fast"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def dingtalk_url(self, token: str) -> str:
        return f"{self.url}/robot/send?access_token={token}"

    def wecom_url(self, key: str) -> str:
        return f"{self.url}/cgi-bin/webhook/send?key={key}"

    def judge(self, path: str, query: dict[str, str], body: dict[str, Any]) -> tuple[Posted | None, int, str]:
        if path == "/robot/send":
            token = query.get("access_token", "")
            posted = Posted("dingtalk", token, query, body)
            if token not in self.dingtalk:
                return posted, 300001, "token is not exist"
            secret = self.dingtalk[token]
            if secret:
                stamp = query.get("timestamp", "")
                if not stamp.isdigit() or abs(int(stamp) - time.time() * 1000) > 3600 * 1000:
                    return posted, 310000, "invalid timestamp"
                expected = base64.b64encode(
                    hmac.new(secret.encode(), f"{stamp}\n{secret}".encode(), hashlib.sha256).digest()
                ).decode()
                if not hmac.compare_digest(expected, query.get("sign", "")):
                    return posted, 310000, "sign not match"
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                return posted, 130101, "send too fast, exceed 20 times per minute"
            md = body.get("markdown", {})
            if body.get("msgtype") != "markdown" or not md.get("title") or not md.get("text"):
                return posted, 40035, "缺少参数 json"
            return posted, 0, "ok"
        if path == "/cgi-bin/webhook/send":
            key = query.get("key", "")
            posted = Posted("wecom", key, query, body)
            if key not in self.wecom:
                return posted, 93000, "invalid webhook url"
            content = body.get("markdown", {}).get("content", "")
            if body.get("msgtype") != "markdown" or not content:
                return posted, 40008, "invalid message type"
            if len(content.encode()) > 4096:
                return posted, 40058, "markdown.content exceed max length 4096"
            return posted, 0, "ok"
        return None, 404, "not found"


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parts.query))  # URL-decodes sign, as the service does
            length = int(self.headers.get("content-length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = {}
            with receiver.lock:
                posted, errcode, errmsg = receiver.judge(parts.path, query, body)
                if posted is not None and errcode == 0:
                    receiver.accepted.append(posted)
                elif posted is not None:
                    receiver.refused.append((posted, errcode, errmsg))
            answer = json.dumps({"errcode": errcode, "errmsg": errmsg}).encode()
            self.send_response(404 if posted is None else 200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver(settings: Settings) -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(Receiver("")))
    port = server.server_address[1]
    rec = Receiver(f"http://127.0.0.1:{port}")
    server.RequestHandlerClass = _handler(rec)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.robot_allowed_hosts = [*settings.robot_allowed_hosts, "127.0.0.1"]
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
