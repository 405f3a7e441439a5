"""The portal's outer guards, as plain ASGI (they see every request, so they must cost nothing on the
common path): request body limits, authentication before a large body is read, security headers.

Body limits are enforced while the body is read, not after: a declared ``Content-Length`` over the
limit is answered 413 before a byte is read, and a chunked body is counted as it streams in and cut
off with 413 the moment it passes the limit. Nothing is parsed first, so a 50 MB JSON body costs the
portal nothing but the bytes up to the limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmportal.kit import errors
from vmportal.kit.http import bearer_from_header
from vmportal.kit.settings import Settings

API = "/api/v1"
#: Routes that authenticate from the body itself (a log-in's credentials, an alert's signature).
_AUTH_FROM_BODY = (f"{API}/auth/login", f"{API}/alerts/")
#: A body this small is read before authentication without a thought (the route's own dependency
#: refuses a bad token right after); a larger one is let in only with a valid token.
_PRE_AUTH_BYTES = 64 * 1024


def _envelope(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> list[Message]:
    payload = json.dumps({"error": body}, ensure_ascii=False).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return [
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": payload},
    ]


def _too_large(limit: int) -> list[Message]:
    exc = errors.PayloadTooLarge(
        f"the request body is larger than {limit} bytes",
        message_zh=f"请求体超过 {limit} 字节的上限",
        limit=limit,
    )
    return _envelope(413, exc.body(), {"connection": "close"})


class BodyLimit:
    """413 for a request body over its limit: ``limit_for(scope, headers)`` says which limit applies."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope, Headers], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = self.limit_for(scope, headers)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            for message in _too_large(limit):
                await send(message)
            return
        received = 0
        refused = False  # the 413 has been sent: whatever the app still says is dropped

        async def counted() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer now, and tell the app the client left: it stops reading (the framework
                    # would turn an exception raised here into its own 400).
                    refused = True
                    for answer in _too_large(limit):
                        await send(answer)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, guarded)


def limits(settings: Settings) -> Callable[[Scope, Headers], int]:
    """The limit of each kind of body: alert webhooks, multipart uploads, and JSON or forms."""

    def limit_for(scope: Scope, headers: Headers) -> int:
        if scope["path"].startswith(f"{API}/alerts/"):
            return settings.alert_max_bytes
        if headers.get("content-type", "").lower().startswith("multipart/"):
            return settings.multipart_max_bytes
        return settings.json_max_bytes

    return limit_for


class AuthBeforeBody:
    """A large request body is read only once its bearer token is known to be good: nobody can make the
    portal take in a 100 MB upload without an account. ``check(token)`` raises ``Unauthorized``."""

    def __init__(self, app: ASGIApp, check: Callable[[str | None], None]) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE")
            or not scope["path"].startswith(f"{API}/")
            or scope["path"].startswith(_AUTH_FROM_BODY)
        ):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        small = declared is not None and declared.isdigit() and int(declared) <= _PRE_AUTH_BYTES
        if not small:
            try:
                await run_in_threadpool(self.check, bearer_from_header(headers.get("authorization", "")))
            except errors.Unauthorized as exc:
                for message in _envelope(
                    401, exc.body(), {"www-authenticate": "Bearer", "connection": "close"}
                ):
                    await send(message)
                return
        await self.app(scope, receive, send)


class Admission:
    """At most ``slots`` requests inside the application at once; the others wait their turn, up to
    ``wait`` seconds, then answer 503 with ``Retry-After``.

    Why: a request holds its database connection from its first dependency to its answer, while the
    framework runs at most a fixed number of handlers at a time; with more requests in flight than the
    pool has connections, the extra ones would each wait out the pool's timeout and fail. Queueing them
    here instead keeps every connection working, and a burst of 200 requests is served in turn.

    Reads and writes queue apart: a quarter of the slots serve writes (on SQLite they run one at a
    time anyway, and a writer waiting for the lock would only hold a connection readers could use), the
    rest serve reads, so a burst of writes never makes the lists and pages wait. Static files and
    health checks never queue.
    """

    def __init__(self, app: ASGIApp, slots: int, wait: float) -> None:
        import asyncio

        self.app = app
        self.wait = wait
        slots = max(slots, 2)
        writes = max(1, slots // 4)
        self._writes = asyncio.Semaphore(writes)
        self._reads = asyncio.Semaphore(slots - writes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        import asyncio

        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/static/") or path in ("/healthz", "/metrics"):
            await self.app(scope, receive, send)
            return
        slots = self._reads if scope["method"] in ("GET", "HEAD", "OPTIONS") else self._writes
        try:
            await asyncio.wait_for(slots.acquire(), timeout=self.wait)
        except TimeoutError:
            body = {
                "code": "busy",
                "message": "the portal is busy right now; try again in a moment",
                "message_zh": "服务繁忙，请稍后再试",
            }
            for message in _envelope(503, body, {"retry-after": "2"}):
                await send(message)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            slots.release()


#: For the JSON API: nothing of an answer is a page, so nothing may load, run or frame it.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
#: For the pages: every asset comes from the portal itself (campus intranets are often offline).
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeaders:
    """The headers every answer carries; a route that sets its own CSP (``/docs``) keeps it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith(f"{API}/") or scope["path"] in ("/openapi.json", "/metrics")
        https = scope.get("scheme") == "https"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {k.lower() for k, _ in raw}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", (API_CSP if api else PAGE_CSP).encode()),
                ]
                if https:
                    extra.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
                raw += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, with_headers)
