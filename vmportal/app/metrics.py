"""The gauges the portal reads at scrape time from its database and broker: outbox rows pending,
requests overdue, the broker's queue. They read several domains' tables, so they are registered here,
in the application package, onto the kit's metrics registry."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vmportal.jobs.models import OutboxTask
from vmportal.kit import db
from vmportal.kit.observability import REGISTRY, SHARED_STATE
from vmportal.kit.settings import get_settings
from vmportal.request.lifecycle import OPEN_STATES
from vmportal.request.models import VMRequest

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
                n_overdue = session.execute(
                    sa.select(sa.func.count())
                    .select_from(VMRequest)
                    .where(
                        VMRequest.due_at < now,  # type: ignore[arg-type]
                        VMRequest.state.in_([s.value for s in OPEN_STATES]),  # type: ignore[attr-defined]
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


_registered = False


def register() -> None:
    """Register the collector once per process (the API and the worker's main process call this)."""
    global _registered
    if not _registered:
        collector = SharedStateCollector()
        REGISTRY.register(collector)
        SHARED_STATE.append(collector)
        _registered = True
