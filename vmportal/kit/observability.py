"""Readiness, Prometheus metrics and structured logs.

``/healthz`` says the process is alive; ``/readyz`` that the database (and, in production, the
broker) answer; ``/metrics`` is Prometheus text. Gauges that describe shared state (queue depth,
broker up, overdue requests, undelivered outbox tasks) are read from the database/broker at scrape
time, so every API process reports the same truth. Counters and histograms are per process, or
summed over processes in prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``): set it
for ``vmportal serve --workers N`` (several processes behind one port), and every Celery worker sets
its own, serving its pool processes' task metrics on ``VMPORTAL_METRICS_PORT``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmportal.kit import context, db
from vmportal.kit.settings import get_settings

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_LATENCY = Histogram(
    "vmportal_http_request_seconds", "API request latency", ["method", "route", "status"], registry=REGISTRY
)
TASKS = Counter("vmportal_tasks_total", "Tasks run", ["task", "outcome"], registry=REGISTRY)
TASK_LATENCY = Histogram("vmportal_task_seconds", "Task run time", ["task"], registry=REGISTRY)
CONTAINMENT_LATENCY = Histogram(
    "vmportal_containment_seconds",
    "From an alert's arrival to the hypervisor confirming containment",
    registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)


class SharedStateCollector(Collector):
    """Gauges read at scrape time from the database and the broker."""

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Registering must not touch the database (it may not be configured yet at import time).
        return []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        from vmportal.jobs.models import OutboxTask
        from vmportal.request.models import VMRequest

        overdue = GaugeMetricFamily("vmportal_requests_overdue", "Requests past their provisioning deadline")
        pending = GaugeMetricFamily("vmportal_outbox_pending", "Tasks committed but not completed")
        try:
            with db.new_session() as session:
                now = db.utcnow()
                n_overdue = session.execute(
                    sa.select(sa.func.count())
                    .select_from(VMRequest)
                    .where(
                        VMRequest.due_at < now,  # type: ignore[arg-type]
                        VMRequest.state.in_(["submitted", "endorsed", "approved", "provisioning", "failed"]),  # type: ignore[attr-defined]
                    )
                ).scalar_one()
                n_pending = session.execute(
                    sa.select(sa.func.count())
                    .select_from(OutboxTask)
                    .where(OutboxTask.completed_at.is_(None))  # type: ignore[union-attr]
                ).scalar_one()
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


REGISTRY.register(SharedStateCollector())


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def scrape_registry(*, shared_state: bool = True) -> CollectorRegistry:
    """What a scrape reads. With ``PROMETHEUS_MULTIPROC_DIR`` set (``vmportal serve --workers N``
    with that variable, every Celery worker) the counters and histograms of all the processes that
    share the directory, summed; otherwise this process's own."""
    if not _multiprocess():
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    if shared_state:
        registry.register(SharedStateCollector())
    return registry


def serve_worker_metrics(host: str, port: int) -> None:
    """A Celery worker's metrics on ``host:port`` (its pool processes' task counts and latencies).
    The database and broker gauges are the API's to serve: the worker's main process stays off the
    database, whose connections its forked pool processes must not inherit."""
    start_http_server(port, addr=host, registry=scrape_registry(shared_state=False))
    log.info("worker metrics on http://%s:%s/metrics", host, port)


def readiness() -> tuple[bool, dict[str, Any]]:
    checks: dict[str, Any] = {}
    try:
        with db.engine().connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    settings = get_settings()
    if settings.broker_url:
        try:
            import redis

            redis.Redis.from_url(settings.broker_url, socket_timeout=1, socket_connect_timeout=1).ping()
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"unavailable: {type(exc).__name__}"
    else:
        checks["broker"] = "in-process"
    ok = all(v in ("ok", "in-process") for v in checks.values())
    return ok, checks


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


class JSONFormatter(logging.Formatter):
    """One JSON object per line, carrying the request id into the tasks the request started."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = context.request_id.get()
        if rid:
            body["request_id"] = rid
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


def configure_logging() -> None:
    settings = get_settings()
    handler = logging.StreamHandler()
    if settings.log_json:
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
