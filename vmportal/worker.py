"""The Celery application as workers and beat load it: ``celery -A vmportal.worker worker``.

Importing this module prepares the process (keys, database engine; no migrations — the API or
``vmportal migrate`` runs those) and registers every task and the beat schedule.
"""

from __future__ import annotations

from celery.signals import worker_process_init

from vmportal import observability, startup
from vmportal.settings import get_settings
from vmportal.tasks import registry  # noqa: F401  (registers every task)
from vmportal.tasks.app import celery_app, configure
from vmportal.tasks.periodic import BEAT_SCHEDULE

settings = get_settings()
configure()
celery_app.conf.beat_schedule = BEAT_SCHEDULE
observability.configure_logging()
startup.prepare(settings, migrate=False, seed=False)


@worker_process_init.connect
def _fresh_engine(**_: object) -> None:
    # A forked pool process must not share the parent's database connections.
    from vmportal import db

    db.init(settings)


app = celery_app
