"""Readiness, Prometheus metrics and structured logs.

``/healthz`` says the process is alive; ``/readyz`` that the database (and, in production, the
broker) answer; ``/metrics`` is Prometheus text. Gauges that describe shared state (queue depth,
overdue requests, undelivered outbox tasks) are read from the database/broker at scrape time, so
every API process reports the same truth. Counters and histograms are per process (scrape each).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vmportal import context, db
from vmportal.settings import get_settings

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
        from vmportal.request.models import VMRequest
        from vmportal.tasks.models import OutboxTask

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


def queue_depth() -> int | None:
    settings = get_settings()
    if not settings.broker_url.startswith("redis"):
        return None
    try:
        import redis

        client = redis.Redis.from_url(settings.broker_url, socket_timeout=1, socket_connect_timeout=1)
        return int(client.llen("celery"))  # type: ignore[arg-type]
    except Exception:
        return None


REGISTRY.register(SharedStateCollector())


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


def install(app: FastAPI) -> None:
    @app.middleware("http")
    async def timing(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        HTTP_LATENCY.labels(request.method, path, str(response.status_code)).observe(
            time.perf_counter() - start
        )
        return response

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        ok, checks = readiness()
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503
        )

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


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
