"""Who may post alerts: Standard-Webhooks signatures, or a bearer token for senders that cannot sign.

A signing source sends three headers with the exact bytes of its body:

    webhook-id: msg_2Kx9…            a unique id per message (the caller remembers it against replay)
    webhook-timestamp: 1767225600    Unix seconds when it was sent
    webhook-signature: v1,K5oZfz…=   base64 HMAC-SHA256 of f"{id}.{timestamp}.{body}" under the secret

Several space-separated signatures may be sent (``v1,abc= v1,def=``), as a sender does while its
secret is rotated; one that matches is enough, and entries of other schemes (``v1a,…``) are ignored.
The timestamp must be within five minutes of the portal's clock in either direction.

Secrets (a decision, documented for the center): a secret written ``whsec_<base64>`` — what the
Standard Webhooks libraries and :func:`new_secret` generate — signs with the base64-decoded bytes;
any other secret signs with its UTF-8 bytes as written (what a hand-written sender script using a
passphrase naturally does). ``whsec_`` followed by something that is not base64 is refused rather
than silently used as text, so a truncated copy-paste shows up at once.

Every comparison of a secret-derived value uses :func:`hmac.compare_digest`. Replay memory is the
caller's (it has the database): :func:`verify` returns the webhook id to remember for the window.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import datetime

__all__ = [
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "MalformedHeader",
    "MissingHeaders",
    "SignatureInvalid",
    "TimestampOutOfWindow",
    "TokenInvalid",
    "WebhookAuthError",
    "decode_secret",
    "new_bearer_token",
    "new_secret",
    "sign",
    "signed_headers",
    "verify",
    "verify_bearer",
]

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
TOLERANCE_SECONDS = 5 * 60
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
MAX_ID_LENGTH = 256
MAX_SIGNATURES = 16  # more than any rotation needs; bounds the work a forged header can cause


class WebhookAuthError(Exception):
    """The post is not authenticated (401). ``code`` names the kind for the answer and the audit log."""

    code = "unauthenticated"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MissingHeaders(WebhookAuthError):
    code = "missing_headers"


class MalformedHeader(WebhookAuthError):
    code = "malformed_header"


class TimestampOutOfWindow(WebhookAuthError):
    code = "timestamp_out_of_window"


class SignatureInvalid(WebhookAuthError):
    code = "signature_invalid"


class TokenInvalid(WebhookAuthError):
    code = "token_invalid"


SecretLike = str | bytes


def decode_secret(secret: SecretLike) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` decoded, any other text as its UTF-8 bytes."""
    if isinstance(secret, bytes):
        key = secret
    elif secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a secret starting with 'whsec_' must continue with base64") from None
    else:
        key = secret.encode()
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


def new_secret(nbytes: int = 32) -> str:
    """A fresh secret in the Standard Webhooks form, ``whsec_`` + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def new_bearer_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def _mac(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign(body: bytes, secret: SecretLike, *, msg_id: str, timestamp: int) -> str:
    """The ``webhook-signature`` value for ``body``: ``v1,<base64 HMAC-SHA256>``."""
    return f"v1,{_mac(decode_secret(secret), msg_id, str(int(timestamp)), body)}"


def signed_headers(
    body: bytes, secret: SecretLike, *, msg_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """All three headers a sender adds, for tests, the README's example and scripts that post alerts."""
    msg_id = msg_id or f"msg_{secrets.token_hex(12)}"
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(body, secret, msg_id=msg_id, timestamp=timestamp),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict is case-sensitive; HTTP header names are not
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value.strip() if isinstance(value, str) else None


def _now_seconds(now: datetime | float | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return now.timestamp()
    return float(now)


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secret: SecretLike | Iterable[SecretLike],
    *,
    now: datetime | float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """Check a signed post; return its webhook id (for the caller's replay memory) or raise.

    ``secret`` may be several (the source's current and previous secret during a rotation). Raises
    MissingHeaders, MalformedHeader, TimestampOutOfWindow or SignatureInvalid, each saying what is wrong.
    """
    msg_id = _header(headers, ID_HEADER)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    missing = [
        name
        for name, value in ((ID_HEADER, msg_id), (TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature))
        if not value
    ]
    if missing:
        raise MissingHeaders(
            f"missing header{'s' if len(missing) > 1 else ''} {', '.join(missing)}: a signed alert carries "
            f"{ID_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} (or use the source's bearer token)"
        )
    assert msg_id is not None and timestamp is not None and signature is not None
    if len(msg_id) > MAX_ID_LENGTH or not msg_id.isprintable() or not msg_id.isascii():
        raise MalformedHeader(f"{ID_HEADER} must be at most {MAX_ID_LENGTH} printable ASCII characters")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise MalformedHeader(
            f"{TIMESTAMP_HEADER} must be a Unix time in whole seconds, got {timestamp[:20]!r}"
        )
    skew = int(timestamp) - _now_seconds(now)
    if abs(skew) > tolerance:
        direction = "in the future" if skew > 0 else "old"
        raise TimestampOutOfWindow(
            f"{TIMESTAMP_HEADER} is {abs(int(skew))} s {direction}; it must be within {tolerance} s of the "
            "portal's clock (check the sender's clock, or this is a replay)"
        )

    keys = [decode_secret(secret)] if isinstance(secret, str | bytes) else [decode_secret(s) for s in secret]
    if not keys:
        raise ValueError("no secret to verify with")
    offered = [part[3:] for part in signature.split()[:MAX_SIGNATURES] if part.startswith("v1,")]
    if not offered:
        raise SignatureInvalid(f"{SIGNATURE_HEADER} holds no 'v1,<base64>' signature")
    matched = False
    for key in keys:
        expected = _mac(key, msg_id, timestamp, body).encode()
        for candidate in offered:
            # Every pair is compared (no early exit) so the time taken says nothing about which matched.
            matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise SignatureInvalid(
            f"{SIGNATURE_HEADER} does not match: the body, {ID_HEADER} or {TIMESTAMP_HEADER} was changed, "
            "or it was signed with another secret"
        )
    return msg_id


def verify_bearer(authorization: str | None, token: str | Iterable[str]) -> None:
    """Check ``Authorization: Bearer <token>`` against the source's token(s), in constant time."""
    if not authorization or not authorization.strip():
        raise MissingHeaders("missing header authorization: this source authenticates with 'Bearer <token>'")
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise MalformedHeader("authorization must be 'Bearer <token>'")
    tokens = [token] if isinstance(token, str) else list(token)
    if not tokens or not all(tokens):
        raise ValueError("no token to verify with")
    given_bytes = given.strip().encode()
    matched = False
    for expected in tokens:
        matched |= hmac.compare_digest(expected.encode(), given_bytes)
    if not matched:
        raise TokenInvalid("the bearer token is not this source's token")
