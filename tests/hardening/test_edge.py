"""Probes of the running portal from outside, as an attacker or a fuzzer would: oversized and
malformed bodies, unknown addresses, forged proxy headers, the headers every answer carries, and the
private data folder. Each answer is the JSON envelope with both messages, never a 5xx or plain text."""

from __future__ import annotations

import re
import socket
import stat
import threading
import time
from pathlib import Path

import httpx

from policies.roles import Role
from tests.hardening.conftest import API, Live

LATIN_WORD = re.compile(r"[A-Za-z]{3,}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def raw_request(live: Live, head: str, body: bytes = b"", *, read_timeout: float = 10) -> tuple[int, bytes]:
    """Send ``head`` (and ``body``) on a plain socket and read the status and the answer's body: the
    way to declare a body larger than what is sent."""
    port = int(live.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def _length(data: bytes) -> int:
    match = re.search(rb"content-length: (\d+)", data.split(b"\r\n\r\n", 1)[0], re.IGNORECASE)
    return int(match.group(1)) if match else 0


def test_a_50_mb_json_body_is_refused_unread_and_costs_no_memory(live: Live) -> None:
    pid = live.pid
    before = rss_mib(pid)
    big = b'{"username": "' + b"a" * (50 * 1024 * 1024) + b'", "password": "x"}'

    def send() -> int:
        with live.client() as c:
            try:
                return c.post(
                    f"{API}/auth/login", content=big, headers={"content-type": "application/json"}
                ).status_code
            except httpx.TransportError:  # the portal closed the connection after its 413: also refused
                return 413

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(send())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [413] * 4
    assert rss_mib(pid) - before < 50
    # Declared too large: answered before a byte of the body is read.
    status, body = raw_request(
        live,
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 52428800\r\n",
    )
    assert status == 413 and b"payload_too_large" in body
    with live.client() as c:
        assert c.get("/healthz").status_code == 200


def test_a_chunked_body_is_cut_off_at_the_limit(live: Live) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):  # 40 × 64 KiB = 2.5 MiB, over the 1 MiB JSON limit
            yield b" " * 65536

    with live.client() as c:
        try:
            r = c.post(f"{API}/auth/login", content=chunks(), headers={"content-type": "application/json"})
            assert r.status_code == 413
            assert r.json()["error"]["code"] == "payload_too_large"
            assert "字节" in r.json()["error"]["message_zh"]
        except httpx.TransportError:
            pass  # closed right after the 413
        assert c.get("/healthz").status_code == 200


def test_a_large_upload_without_a_valid_token_is_refused_before_it_is_read(live: Live) -> None:
    started = time.monotonic()
    status, body = raw_request(
        live,
        "POST /api/v1/incidents/1/rectifications HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 104857600\r\n"
        "Authorization: Bearer not-a-token\r\n",
        b"--xyz\r\n",
    )
    assert status == 401 and b"unauthorized" in body
    assert time.monotonic() - started < 10  # it did not wait for 100 MB that never come


def test_unknown_addresses_and_methods_answer_in_both_languages(live: Live) -> None:
    with live.client() as c:
        missing = c.get(f"{API}/no-such-thing")
        assert missing.status_code == 404
        error = missing.json()["error"]
        assert error["message_zh"] == "请求的地址不存在" and not LATIN_WORD.search(error["message_zh"])
        wrong = c.delete(f"{API}/auth/login")
        assert wrong.status_code == 405
        assert "POST" in wrong.headers["allow"]
        assert not LATIN_WORD.search(wrong.json()["error"]["message_zh"])


def test_malformed_json_names_the_line_and_column(live: Live) -> None:
    with live.client() as c:
        r = c.post(
            f"{API}/auth/login",
            content=b'{\n  "username": "operator",\n  "password": \n}',
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "malformed_json"
    assert (error["line"], error["column"]) == (4, 1)
    assert "第 4 行第 1 列" in error["message_zh"]
    assert not LATIN_WORD.search(error["message_zh"].replace("JSON", ""))


def test_validation_errors_name_the_field_in_chinese(live: Live) -> None:
    with live.client() as c:
        r = c.post(f"{API}/auth/login", json={"username": "operator"})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["fields"][0]["field"] == "password"
    assert error["message_zh"] == "输入校验失败：密码：必填"


def test_every_answer_carries_the_security_headers(live: Live) -> None:
    headers = live.login("operator", Role.CENTER_OPERATOR)
    with live.client() as c:
        for r in (c.get(f"{API}/vms", headers=headers), c.get(f"{API}/nothing"), c.get("/docs")):
            assert r.headers["x-content-type-options"] == "nosniff"
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
            assert r.headers["referrer-policy"]
            assert "strict-transport-security" not in r.headers  # plain HTTP on loopback: no HSTS
        assert (
            c.get(f"{API}/vms", headers=headers)
            .headers["content-security-policy"]
            .startswith("default-src 'none'")
        )


def test_a_forwarded_for_header_is_not_believed_without_a_trusted_proxy(live: Live) -> None:
    admin = live.login("center-admin", Role.CENTER_ADMIN)
    with live.client() as c:
        created = c.post(
            f"{API}/alert-sources",
            json={
                "name": "ids-behind-proxy",
                "kind": "suricata",
                "auth": "bearer",
                "allowed_cidrs": ["10.9.0.0/16"],
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text
        token = created.json()["token"]
        r = c.post(
            f"{API}/alerts/ids-behind-proxy",
            content=b'{"event_type": "flow"}',
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "X-Forwarded-For": "10.9.1.2",
                "X-Real-IP": "10.9.1.2",
            },
        )
    assert r.status_code == 403
    assert r.json()["error"]["reason"] == "address_not_allowed"


def test_the_data_folder_is_private(live: Live) -> None:
    paths = [live.data_dir, *live.data_dir.rglob("*")]
    assert any(p.name.startswith("vmportal.sqlite3") for p in paths)
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
