"""The portal's observability over HTTP: request latency, ``/readyz`` and ``/metrics``, and the gauges
read at scrape time from its database and broker (outbox rows pending, requests overdue, the broker's
queue). The gauges read several domains' tables, so they live here, in the application package, and
are registered onto the kit's metrics registry."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlmodel import col
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmportal.jobs.models import OutboxTask
from vmportal.kit import db
from vmportal.kit.observability import HTTP_LATENCY, REGISTRY, SHARED_STATE, readiness, scrape_registry
from vmportal.kit.settings import get_settings
from vmportal.kit.sql import count_where
from vmportal.request import repository as requests

log = logging.getLogger(__name__)


class SharedStateCollector(Collector):
    """Gauges read at scrape time from the database and the broker."""

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Registering must not touch the database (it may not be configured yet at import time).
        return []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        overdue = GaugeMetricFamily("vmportal_requests_overdue", "Requests past their provisioning deadline")
        pending = GaugeMetricFamily("vmportal_outbox_pending", "Tasks committed but not completed")
        try:
            with db.new_session() as session:
                now = db.utcnow()
                n_overdue = requests.overdue_count(session, now)
                n_pending = count_where(session, OutboxTask, [col(OutboxTask.completed_at).is_(None)])
            overdue.add_metric([], n_overdue)
            pending.add_metric([], n_pending)
        except Exception:  # a scrape must not fail because the database hiccups
            log.warning("metrics: database unavailable", exc_info=True)
        yield overdue
        yield pending
        depth = GaugeMetricFamily("vmportal_queue_depth", "Messages waiting in the Celery queue")
        value = queue_depth()
        if value is not None:
            depth.add_metric([], value)
        yield depth
        if get_settings().broker_url.startswith("redis"):
            # No depth sample while the broker is down would read as "no data"; say it plainly.
            up = GaugeMetricFamily("vmportal_broker_up", "1 when the task broker answers, else 0")
            up.add_metric([], 1 if value is not None else 0)
            yield up


def queue_depth() -> int | None:
    settings = get_settings()
    if not settings.broker_url.startswith("redis"):
        return None
    try:
        import redis

        client = redis.Redis.from_url(settings.broker_url, socket_timeout=1, socket_connect_timeout=1)
        return int(client.llen("celery"))
    except Exception:
        return None


_registered = False


def register() -> None:
    """Register the collector once per process (the API and the worker's main process call this)."""
    global _registered
    if not _registered:
        collector = SharedStateCollector()
        REGISTRY.register(collector)
        SHARED_STATE.append(collector)
        _registered = True


class _Timing:
    """Request latency by route template and status, as plain ASGI middleware (Starlette's
    ``BaseHTTPMiddleware`` runs every request through an extra task and memory streams)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            key = (scope["method"], path, status)
            child = self._children.get(key)
            if child is None:  # labels() takes a lock and builds its key on every call
                child = self._children[key] = HTTP_LATENCY.labels(scope["method"], path, str(status))
            child.observe(time.perf_counter() - start)


def install(app: FastAPI) -> None:
    app.add_middleware(_Timing)

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        ok, checks = readiness()
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503
        )

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(scrape_registry()), media_type=CONTENT_TYPE_LATEST)
