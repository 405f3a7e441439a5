"""Getting a fresh worker pool process ready before its first task.

A pool process starts cold: no database connection (PostgreSQL forks a backend for each, whose
catalog caches start empty), no hypervisor session, pyVmomi's types not yet built from their
descriptions. Whoever comes first pays for all of it: right after a worker (re)start that was the
first containments, each a few hundred milliseconds slower on a busy machine than the ones after.

:func:`start` does that work in a background thread as the process starts, so it overlaps with the
worker waiting for its first message. It only reads: one database transaction, and one
:meth:`~hypervisors.base.HypervisorAdapter.get_vm` per hypervisor connection (on an adapter of its
own, closed afterwards). It never delays the process itself (Celery kills a pool process that does
not report for duty within seconds), and a failure is only logged: an unreachable vCenter is the
tasks' business, with their retries.
"""

from __future__ import annotations

import logging
import threading

from sqlmodel import SQLModel

from hypervisors import create
from vmportal.kit import db

log = logging.getLogger(__name__)

#: Database connections opened ahead: a task holds two (its outbox claim, its transaction).
CONNECTIONS = 2


def start() -> threading.Thread:
    thread = threading.Thread(target=warm_up, name="vmportal-warm-up", daemon=True)
    thread.start()
    return thread


def warm_up() -> None:
    try:
        _database()
        _hypervisors()
    except Exception as exc:  # only a head start: the first task does whatever is left
        log.info("warm-up of the pool process incomplete: %s", exc)


def _database() -> None:
    engine = db.engine()
    connections = [engine.connect() for _ in range(CONNECTIONS)]
    try:
        for conn in connections:
            # Every table once, so this backend has read their descriptions before a task needs them.
            db.read_descriptions(conn, SQLModel.metadata.sorted_tables)
            conn.rollback()
    finally:
        for conn in connections:
            conn.close()


def _hypervisors() -> None:
    from vmportal.connection.repository import connections_by_id
    from vmportal.connection.service import config_of
    from vmportal.vm import repository as vms

    with db.transaction() as s:
        targets = []
        for conn in connections_by_id(s, active=True):
            assert conn.id is not None
            ref = vms.an_active_ref(s, conn.id)
            if ref:
                targets.append((config_of(conn), ref))
    for config, ref in targets:
        adapter = create(config)
        try:
            adapter.get_vm(ref)  # logs in, and builds the types a VM's reading needs
        except Exception as exc:
            log.info("warm-up: %s not reached: %s", config.url, exc)
        finally:
            adapter.close()
