"""Per-address limit on failed log-ins (the ``limits`` library): an address that fails too often in
a window is answered 429 with Retry-After before any password is checked, whichever name it tries;
and the runs of failures per (name, address) that lock a name for that address only
(:func:`count_failure`), so failures from one address never add up with another's.

Counted in memory on the embedded default (one process) and in Redis in production
(``rate_limit_storage``), so every API process sees the same count.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from datetime import UTC, datetime

from limits import parse, storage, strategies

from vmportal.kit import errors
from vmportal.kit.settings import Settings


class TooManyAttempts(errors.PortalError):
    status = 429
    code = "too_many_requests"


class _Throttle:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.item = parse(settings.login_failure_rate)
        self.limiter = strategies.MovingWindowRateLimiter(
            storage.storage_from_string(settings.rate_limit_storage)
        )


_current: _Throttle | None = None
_guard = threading.Lock()


def _throttle(settings: Settings) -> _Throttle:
    # One limiter per settings object: the process has one; each test's fresh settings starts afresh.
    global _current
    with _guard:
        if _current is None or _current.settings is not settings:
            _current = _Throttle(settings)
        return _current


def check(settings: Settings, address: str) -> None:
    """429 when ``address`` has used up its failed log-ins for the window."""
    t = _throttle(settings)
    if t.limiter.test(t.item, "login-failures", address):
        return
    reset = t.limiter.get_window_stats(t.item, "login-failures", address).reset_time
    wait = max(1, math.ceil(reset - time.time()))
    raise TooManyAttempts(
        f"too many failed log-ins from this address; try again in {wait} s",
        message_zh=f"该地址登录失败次数过多，请 {wait} 秒后再试",
        retry_after=wait,
    )


def failed(settings: Settings, address: str) -> None:
    t = _throttle(settings)
    t.limiter.hit(t.item, "login-failures", address)


# ---- runs of failures per (name, address), and the locks they impose ------------------------------
#
# Counted in the same storage as the limit above (memory:// for the embedded portal, Redis in
# production), so every API process sees the same runs and locks. A real account and a name nobody
# has are counted by the same keys in the same place: their answers cannot differ (issue 13).

#: A run of failures from one address is forgotten this long after its first failure (or at a
#: successful log-in from that address); long enough that a slow guesser still locks.
RUN_WINDOW_SECONDS = 3600


def _key(kind: str, name: str, address: str) -> str:
    digest = hashlib.sha256(f"{name.casefold()}\x00{address}".encode()).hexdigest()
    return f"vmportal-{kind}/{digest}"


def count_failure(settings: Settings, name: str, address: str) -> int:
    """One more failed log-in for ``name`` from ``address``; returns the run's length so far."""
    window = max(RUN_WINDOW_SECONDS, settings.lockout_minutes * 60)
    return int(_throttle(settings).limiter.storage.incr(_key("login-run", name, address), window))


def clear_failures(settings: Settings, name: str, address: str) -> None:
    _throttle(settings).limiter.storage.clear(_key("login-run", name, address))


def impose_lock(settings: Settings, name: str, address: str) -> datetime:
    """Lock ``name`` for ``address`` for ``lockout_minutes`` (a name no account has: a real account's
    lock is its own row's); returns when the lock ends."""
    storage = _throttle(settings).limiter.storage
    key = _key("login-lock", name, address)
    storage.clear(key)
    storage.incr(key, settings.lockout_minutes * 60)
    clear_failures(settings, name, address)
    return datetime.fromtimestamp(storage.get_expiry(key), UTC)


def lock_of(settings: Settings, name: str, address: str) -> datetime | None:
    """When the lock of ``name`` for ``address`` (:func:`impose_lock`) ends; None when there is none."""
    storage = _throttle(settings).limiter.storage
    key = _key("login-lock", name, address)
    if int(storage.get(key)) <= 0:
        return None
    until = datetime.fromtimestamp(storage.get_expiry(key), UTC)
    return until if until > datetime.now(UTC) else None
