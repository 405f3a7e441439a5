"""One post of a batch to the portal, and what its answer means for the shipper.

The portal's answers (``POST /api/v1/alerts/{source}``) and what the shipper does with them:

======================== ================ ==========================================================
answer                   outcome          the shipper
======================== ================ ==========================================================
202                      ``DELIVERED``    moves on; records the portal refused in it are dead-lettered
200 ``duplicate: true``  ``DELIVERED``    moves on: the webhook-id was stored before (a re-post after
                                          a crash or a lost answer), nothing was stored twice
422 (no record read)     ``REJECTED``     dead-letters the batch and moves on: the body is the
400 (not records)                         problem, sending it again changes nothing (the portal keeps
                                          422'd records for inspection too)
413 (too large)          ``TOO_LARGE``    splits the batch in two and posts the halves
408, 425, 429, 5xx,      ``RETRY``        waits (``Retry-After`` when given, else exponential back-off)
no answer at all                          and posts the same batch again, with the same webhook-id
401, 403, 404, other 4xx ``REFUSED``      the configuration is wrong (secret, token, source name,
                                          address range): logs the portal's reason and tries again
                                          at the longest back-off; nothing is dropped
======================== ================ ==========================================================
"""

from __future__ import annotations

import enum
import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib import metadata
from typing import Any

import requests

from vmportal.alerts import signing


def _version() -> str:
    try:
        return metadata.version("vmportal")
    except metadata.PackageNotFoundError:
        return "dev"


USER_AGENT = f"vmportal-ship/{_version()}"
_RETRY_STATUSES = frozenset({408, 425, 429})


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    REJECTED = "rejected"
    TOO_LARGE = "too_large"
    RETRY = "retry"
    REFUSED = "refused"


@dataclass(frozen=True)
class RecordRefusal:
    index: int  # the record's position in the body
    code: str
    reason: str


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    status: int | None  # None: no HTTP answer (connection refused, dropped, timed out)
    message: str  # the portal's reason, or the network error, for the log
    duplicate: bool = False
    retry_after: float | None = None
    refusals: tuple[RecordRefusal, ...] = field(default_factory=tuple)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = json.loads(response.content)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _message(response: requests.Response, data: dict[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        parts = [str(error.get(k)) for k in ("message_zh", "message") if error.get(k)]
        reason = error.get("reason") or error.get("code")
        text = " / ".join(parts) or response.text[:300]
        return f"{text} ({reason})" if reason else text
    if data.get("message"):
        return str(data["message"])
    return response.text[:300].strip() or str(response.reason or response.status_code)


def _refusals(data: dict[str, Any]) -> tuple[RecordRefusal, ...]:
    summary = data.get("error") if isinstance(data.get("error"), dict) else data
    assert isinstance(summary, dict)
    results = summary.get("results")
    if not isinstance(results, list):
        return ()
    out: list[RecordRefusal] = []
    for result in results:
        if isinstance(result, dict) and result.get("status") == "rejected":
            index = result.get("index")
            if isinstance(index, int):
                out.append(RecordRefusal(index, str(result.get("code")), str(result.get("reason"))))
    return tuple(out)


class Poster:
    """Signs (or carries the bearer token) and posts one body; never raises for what the network or
    the portal does, it answers an :class:`Answer`."""

    def __init__(
        self,
        endpoint: str,
        *,
        secret: str | None,
        token: str | None,
        timeout: float,
        ca_file: str | None = None,
        proxy: str | None = None,
    ) -> None:
        if not secret and not token:
            raise ValueError("a secret or a token is needed")
        self.endpoint = endpoint
        self.secret = secret
        self.token = token
        self._timeout = (min(timeout, 10.0), timeout)  # (connect, read)
        self._session = requests.Session()
        # The environment's proxy and CA settings are not used (trust_env off): the portal is on the
        # campus network, and a sensor whose shell has a proxy set for updates must not send its
        # alerts through it. An explicit proxy and CA bundle are options.
        self._session.trust_env = False
        self._session.verify = ca_file or True
        if proxy:
            self._session.proxies = {"http": proxy, "https": proxy}
        self._session.headers["User-Agent"] = USER_AGENT

    @property
    def signs(self) -> bool:
        """Whether posts carry a webhook-id: only signed posts are remembered against replay."""
        return bool(self.secret)

    def close(self) -> None:
        self._session.close()

    def headers(self, body: bytes, webhook_id: str) -> dict[str, str]:
        headers = {"Content-Type": "application/x-ndjson"}
        if self.secret:
            # A fresh timestamp on every attempt: a retry hours later must still be inside the
            # portal's five-minute window. The id stays the batch's own, so a repeat is recognised.
            headers.update(
                signing.signed_headers(body, self.secret, msg_id=webhook_id, timestamp=int(time.time()))
            )
        else:
            # A token authenticates the sender but the portal remembers no webhook-id for it (a
            # webhook-id header would even make it expect a signature): repeats after a crash are
            # then caught only by each alert's own id (counted as a repeat of the stored alert).
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def post(self, body: bytes, webhook_id: str) -> Answer:
        try:
            response = self._session.post(
                self.endpoint, data=body, headers=self.headers(body, webhook_id), timeout=self._timeout
            )
        except requests.RequestException as exc:  # refused, reset, dropped, timed out, TLS, DNS
            return Answer(Outcome.RETRY, None, f"{type(exc).__name__}: {exc}")
        return self.classify(response)

    @staticmethod
    def classify(response: requests.Response) -> Answer:
        status = response.status_code
        data = _json(response)
        message = _message(response, data)
        if 200 <= status < 300:
            return Answer(
                Outcome.DELIVERED,
                status,
                message,
                duplicate=data.get("duplicate") is True,
                refusals=_refusals(data),
            )
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status in _RETRY_STATUSES or status >= 500:
            return Answer(Outcome.RETRY, status, message, retry_after=retry_after)
        if status in (400, 422):
            return Answer(Outcome.REJECTED, status, message, refusals=_refusals(data))
        if status == 413:
            return Answer(Outcome.TOO_LARGE, status, message)
        return Answer(Outcome.REFUSED, status, message, retry_after=retry_after)


def backoff(attempt: int, *, initial: float, maximum: float, jitter: float) -> float:
    """The wait before retry ``attempt`` (1, 2, …): doubling from ``initial`` up to ``maximum``, each
    cut by up to half at random (``jitter``, 0…1) so sensors that lost the portal together do not all
    come back in the same second."""
    if attempt <= 0:
        return 0.0
    exponent = min(attempt - 1, 62)
    delay = min(maximum, initial * math.pow(2, exponent))
    return delay * (1 - 0.5 * jitter)


def utc_now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
