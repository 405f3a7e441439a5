"""Standard-Webhooks-style signatures and bearer tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmportal.alerts.signing import (
    MalformedHeader,
    MissingHeaders,
    SignatureInvalid,
    TimestampOutOfWindow,
    TokenInvalid,
    WebhookAuthError,
    decode_secret,
    new_bearer_token,
    new_secret,
    sign,
    signed_headers,
    verify,
    verify_bearer,
)

NOW = 1_773_640_800  # 2026-03-16T06:00:00Z
SECRET = "whsec_" + base64.b64encode(b"campus-ids-0123456789abcdef-key!").decode()
BODY = b'{"event_type":"alert","src_ip":"10.20.1.15"}'
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def headers(
    body: bytes = BODY, secret: str = SECRET, *, ts: int = NOW, msg_id: str = MSG_ID
) -> dict[str, str]:
    return signed_headers(body, secret, msg_id=msg_id, timestamp=ts)


def test_a_valid_signature_returns_the_webhook_id() -> None:
    assert verify(headers(), BODY, SECRET, now=NOW) == MSG_ID


def test_the_signature_is_hmac_sha256_over_id_timestamp_and_body() -> None:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"{MSG_ID}.{NOW}.".encode() + BODY, hashlib.sha256).digest()
    ).decode()
    assert sign(BODY, SECRET, msg_id=MSG_ID, timestamp=NOW) == f"v1,{expected}"


def test_raw_secrets_sign_with_their_utf8_bytes() -> None:
    raw = "a passphrase the center typed"
    assert decode_secret(raw) == raw.encode()
    assert verify(headers(secret=raw), BODY, raw, now=NOW) == MSG_ID
    # a whsec_ secret and the raw text of its base64 are different keys
    with pytest.raises(SignatureInvalid):
        verify(headers(), BODY, SECRET.removeprefix("whsec_"), now=NOW)


def test_whsec_secret_that_is_not_base64_is_refused() -> None:
    with pytest.raises(ValueError, match="must continue with base64"):
        decode_secret("whsec_not base64!")
    with pytest.raises(ValueError, match="must not be empty"):
        decode_secret("")


def test_wrong_secret() -> None:
    with pytest.raises(SignatureInvalid, match="signed with another secret") as caught:
        verify(headers(), BODY, new_secret(), now=NOW)
    assert caught.value.code == "signature_invalid"


def test_tampered_body_or_id_or_timestamp() -> None:
    with pytest.raises(SignatureInvalid):
        verify(headers(), BODY.replace(b"10.20.1.15", b"10.20.1.16"), SECRET, now=NOW)
    forged = headers()
    forged["webhook-id"] = "msg_other"
    with pytest.raises(SignatureInvalid):
        verify(forged, BODY, SECRET, now=NOW)
    shifted = headers()
    shifted["webhook-timestamp"] = str(NOW + 1)
    with pytest.raises(SignatureInvalid):
        verify(shifted, BODY, SECRET, now=NOW)


@pytest.mark.parametrize(
    ("sent", "message"),
    [(NOW - 301, "301 s old"), (NOW + 301, "301 s in the future"), (NOW - 86_400, "86400 s old")],
)
def test_stale_and_future_timestamps(sent: int, message: str) -> None:
    with pytest.raises(TimestampOutOfWindow, match=message) as caught:
        verify(headers(ts=sent), BODY, SECRET, now=NOW)
    assert "within 300 s" in caught.value.message


@pytest.mark.parametrize("sent", [NOW - 300, NOW + 300, NOW])
def test_the_window_is_five_minutes_both_ways(sent: int) -> None:
    assert verify(headers(ts=sent), BODY, SECRET, now=NOW) == MSG_ID


def test_now_may_be_a_datetime() -> None:
    assert verify(headers(), BODY, SECRET, now=datetime.fromtimestamp(NOW, tz=UTC)) == MSG_ID
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(headers(), BODY, SECRET, now=datetime(2026, 3, 16, 6, 0))


@pytest.mark.parametrize("drop", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_each_missing_header_is_named(drop: str) -> None:
    sent = headers()
    del sent[drop]
    with pytest.raises(MissingHeaders, match=f"missing header {drop}:"):
        verify(sent, BODY, SECRET, now=NOW)


def test_no_headers_at_all() -> None:
    with pytest.raises(
        MissingHeaders, match="missing headers webhook-id, webhook-timestamp, webhook-signature"
    ):
        verify({}, BODY, SECRET, now=NOW)
    with pytest.raises(MissingHeaders):
        verify({"webhook-id": " ", "webhook-timestamp": "", "webhook-signature": ""}, BODY, SECRET, now=NOW)


def test_header_names_are_case_insensitive() -> None:
    sent = {name.upper(): value for name, value in headers().items()}
    assert verify(sent, BODY, SECRET, now=NOW) == MSG_ID


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("webhook-timestamp", "1773640800.5", "whole seconds"),
        ("webhook-timestamp", "2026-03-16T06:00:00Z", "whole seconds"),
        ("webhook-timestamp", "-1", "whole seconds"),
        ("webhook-id", "x" * 300, "at most 256"),
        ("webhook-id", "msg\x00id", "printable ASCII"),
    ],
)
def test_malformed_headers(name: str, value: str, message: str) -> None:
    sent = headers()
    sent[name] = value
    with pytest.raises(MalformedHeader, match=message):
        verify(sent, BODY, SECRET, now=NOW)


def test_several_signatures_one_valid_is_enough() -> None:
    good = sign(BODY, SECRET, msg_id=MSG_ID, timestamp=NOW)
    other = sign(BODY, new_secret(), msg_id=MSG_ID, timestamp=NOW)
    sent = headers()
    sent["webhook-signature"] = f"v1a,c29tZXRoaW5nIGVsc2U= {other}  {good} v1,bm9wZQ=="
    assert verify(sent, BODY, SECRET, now=NOW) == MSG_ID
    sent["webhook-signature"] = f"{other} v1,bm9wZQ=="
    with pytest.raises(SignatureInvalid):
        verify(sent, BODY, SECRET, now=NOW)


def test_a_header_without_any_v1_signature() -> None:
    sent = headers()
    sent["webhook-signature"] = "v1a,abc= sha256=deadbeef"
    with pytest.raises(SignatureInvalid, match="no 'v1,<base64>' signature"):
        verify(sent, BODY, SECRET, now=NOW)


def test_secret_rotation_accepts_either_secret() -> None:
    old, new = new_secret(), new_secret()
    assert verify(headers(secret=old), BODY, [new, old], now=NOW) == MSG_ID
    with pytest.raises(ValueError, match="no secret"):
        verify(headers(), BODY, [], now=NOW)


def test_all_auth_errors_share_a_base_for_the_401_handler() -> None:
    for error in (MissingHeaders, MalformedHeader, TimestampOutOfWindow, SignatureInvalid, TokenInvalid):
        assert issubclass(error, WebhookAuthError)


def test_new_secret_is_usable() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(decode_secret(secret)) == 32


@given(
    body=st.binary(max_size=512),
    msg_id=st.from_regex(r"[A-Za-z0-9_\-]{1,64}", fullmatch=True),
    skew=st.integers(min_value=-300, max_value=300),
)
def test_sign_then_verify_round_trips(body: bytes, msg_id: str, skew: int) -> None:
    sent = signed_headers(body, SECRET, msg_id=msg_id, timestamp=NOW + skew)
    assert verify(sent, body, SECRET, now=NOW) == msg_id


# --- bearer tokens, for Alertmanager and Kibana ------------------------------------------------------

TOKEN = "prom-2026-Zk3v9QxR1s"


def test_bearer_token() -> None:
    verify_bearer(f"Bearer {TOKEN}", TOKEN)
    verify_bearer(f"bearer   {TOKEN} ", TOKEN)
    verify_bearer(f"Bearer {TOKEN}", ["old-token", TOKEN])


@pytest.mark.parametrize(
    ("header", "error", "message"),
    [
        (None, MissingHeaders, "missing header authorization"),
        ("", MissingHeaders, "missing header authorization"),
        (f"Basic {TOKEN}", MalformedHeader, "'Bearer <token>'"),
        ("Bearer", MalformedHeader, "'Bearer <token>'"),
        ("Bearer wrong-token", TokenInvalid, "not this source's token"),
        (f"Bearer {TOKEN}x", TokenInvalid, "not this source's token"),
        ("Bearer 令牌", TokenInvalid, "not this source's token"),
    ],
)
def test_bad_bearer_tokens(header: str | None, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        verify_bearer(header, TOKEN)


def test_new_bearer_token() -> None:
    token = new_bearer_token()
    assert len(token) >= 40 and token != new_bearer_token()
    verify_bearer(f"Bearer {token}", token)
