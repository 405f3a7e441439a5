"""Reconciliation as a task: run by beat on a schedule and on demand from the API."""

from __future__ import annotations

from typing import Any

from vmportal.connection.models import HypervisorConnection
from vmportal.inventory import service
from vmportal.jobs.app import PortalTask, celery_app
from vmportal.kit import db


@celery_app.task(base=PortalTask, name="vmportal.inventory.sync")
def sync(connection_id: int | None = None) -> list[dict[str, Any]]:
    if connection_id is None:
        return [r.as_dict() for r in service.sync_all()]
    with db.transaction() as session:
        conn = session.get(HypervisorConnection, connection_id)
        if conn is None or not conn.active:
            return []
        return [service.sync_connection(session, conn).as_dict()]
