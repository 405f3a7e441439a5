"""Per-request context carried into logs, audit rows and the tasks a request starts."""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("vmportal_request_id", default="")
