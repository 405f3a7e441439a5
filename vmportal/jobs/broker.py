"""The Celery application and its configuration: what the outbox publishes to and every worker runs.

Apart from the task base (:mod:`vmportal.jobs.app`) so that the outbox, which the task base uses,
can publish without importing it back."""

from __future__ import annotations

from celery import Celery

from vmportal.kit.settings import get_settings

celery_app = Celery("vmportal")


def configure(broker_url: str = "", result_backend: str = "") -> Celery:
    settings = get_settings()
    celery_app.conf.update(
        broker_url=broker_url or settings.broker_url or "memory://",
        result_backend=result_backend or settings.result_backend or None,
        task_ignore_result=True,
        # A task is acknowledged only after it finished, and re-queued if its worker dies:
        # together with idempotent tasks this is what makes kill -9 of a worker harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(settings.task_time_limit - 30, 30),
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # Longer than the longest retry countdown (300 s) plus a run (task_time_limit): a message
            # is handed to another worker only when its worker is surely gone. Sooner than that, the
            # outbox re-drive sends a lost task again (and outbox.claim keeps two runs apart).
            "visibility_timeout": max(3600, settings.task_time_limit + 600),
            # A broker that vanishes without closing the connection must not hang a publish (an
            # API request) or the worker forever.
            "socket_timeout": 15,
            "socket_connect_timeout": 5,
            "health_check_interval": 10,
        },
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        worker_hijack_root_logger=False,
    )
    return celery_app


configure()
