"""The Celery application as workers and beat load it: ``celery -A vmportal.app.worker worker``.

Importing this module prepares the process (keys, database engine; no migrations — the API or
``vmportal migrate`` runs those) and registers every task and the beat schedule.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Tasks run in the pool processes; their metrics are summed by prometheus_client's multiprocess mode
# and served by the main process (VMPORTAL_METRICS_PORT). The directory must be chosen before
# prometheus_client is first imported; a fresh one per start means no stale counts of dead processes.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _main_pid = os.getpid()
    # Directories of workers that died without cleaning up (kill -9) go first.
    for _stale in Path(tempfile.gettempdir()).glob("vmportal-worker-metrics-*"):
        _pid = _stale.name.removeprefix("vmportal-worker-metrics-").split("-", 1)[0]
        if _pid.isdigit() and not Path(f"/proc/{_pid}").exists():
            shutil.rmtree(_stale, ignore_errors=True)
    _metrics_dir = tempfile.mkdtemp(prefix=f"vmportal-worker-metrics-{_main_pid}-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

    @atexit.register
    def _remove_metrics_dir() -> None:
        if os.getpid() == _main_pid:  # not a pool process leaving
            shutil.rmtree(_metrics_dir, ignore_errors=True)


from celery.signals import worker_init, worker_process_init, worker_ready
from sqlalchemy.orm import configure_mappers

import hypervisors.proxmox  # imported before the pool forks (see below)
import hypervisors.vsphere  # noqa: F401
from vmportal.app import (
    metrics,
    registry,  # noqa: F401  (registers every task)
    startup,
    warmup,
)
from vmportal.app.beat import beat_schedule
from vmportal.jobs.app import celery_app, configure
from vmportal.kit import observability
from vmportal.kit.settings import get_settings

# The pool processes are forked from this one: import the adapters' libraries (pyVmomi, proxmoxer)
# here, once, rather than in every pool process during its first hypervisor call (about 0.1 s of CPU
# each, spent in the middle of a containment): the two imports at the top, plain so that the
# import graph shows them.

settings = get_settings()
configure()
celery_app.conf.beat_schedule = beat_schedule(settings)
observability.configure_logging()
metrics.register()
startup.prepare(settings, migrate=False, seed=False)


# Every model's mapper configured once here, not by each pool process at its first query.
configure_mappers()


@worker_init.connect
def _rehearse(**_: object) -> None:
    # In the worker's main process, before it forks the pool (beat and other users of this module
    # skip it): the alert path once, rolled back, so that every pool process starts with its
    # statements compiled (vmportal.app.warmup.rehearse).
    warmup.rehearse()


@worker_process_init.connect
def _fresh_engine(**_: object) -> None:
    # A forked pool process must not share the parent's database connections.
    from vmportal.kit import db

    db.after_fork()  # the parent's engine, with the statements its rehearsal compiled
    warmup.start()  # connections and hypervisor sessions ahead of the first task, in the background


@worker_ready.connect
def _serve_metrics(**_: object) -> None:
    if settings.metrics_port:
        observability.serve_worker_metrics(settings.metrics_host, settings.metrics_port)


app = celery_app
