"""Encryption at rest for personal data and hypervisor secrets, and masking for display.

National ID numbers, mobile numbers and hypervisor passwords/tokens are stored as Fernet tokens
(AES-128-CBC + HMAC-SHA256) under the key from settings; MultiFernet accepts older keys during a
rotation. Masking is applied in every API answer except to center_admin.
"""

from __future__ import annotations

from threading import Lock

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_lock = Lock()
_cipher: MultiFernet | None = None


def configure(keys: list[str]) -> None:
    global _cipher
    with _lock:
        _cipher = MultiFernet([Fernet(k.encode()) for k in keys])


def _get() -> MultiFernet:
    if _cipher is None:
        from vmportal.kit.settings import get_settings

        configure(get_settings().fernet_keys())
    assert _cipher is not None
    return _cipher


def encrypt(plain: str) -> str:
    return _get().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _get().decrypt(token.encode()).decode()
    except InvalidToken as exc:  # a wrong key must not look like empty data
        raise RuntimeError("stored value cannot be decrypted with the configured encryption keys") from exc


def mask(value: str | None, keep_start: int = 3, keep_end: int = 4) -> str | None:
    """``13812345678`` → ``138****5678``; short values are masked whole."""
    if value is None:
        return None
    if len(value) <= keep_start + keep_end:
        return "*" * len(value)
    return value[:keep_start] + "*" * (len(value) - keep_start - keep_end) + value[-keep_end:]


def mask_national_id(value: str | None) -> str | None:
    return mask(value, keep_start=3, keep_end=2)
