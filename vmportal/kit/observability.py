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
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client.registry import Collector

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

#: Gauges read at scrape time from the database and the broker. They read domains' tables, so the
#: application package adds them (vmportal.app.metrics); a multi-process scrape reads them too.
SHARED_STATE: list[Collector] = []


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
        for collector in SHARED_STATE:
            registry.register(collector)
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
