"""Per-address limit on failed log-ins (the ``limits`` library): an address that fails too often in
a window is answered 429 with Retry-After before any password is checked, whichever name it tries.

Counted in memory on the embedded default (one process) and in Redis in production
(``rate_limit_storage``), so every API process sees the same count.
"""

from __future__ import annotations

import math
import threading
import time

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
