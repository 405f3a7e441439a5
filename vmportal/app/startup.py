"""Work done once when a portal, worker or command starts: keys, schema, default connection, demo."""

from __future__ import annotations

import logging

from sqlmodel import select

from vmportal.kit import crypto, db
from vmportal.kit.settings import Settings

log = logging.getLogger(__name__)

SIMULATOR_CONNECTION = "simulator"


def prepare(settings: Settings, *, migrate: bool = True, seed: bool = True) -> None:
    crypto.configure(settings.fernet_keys())
    db.init(settings)
    if migrate:
        from vmportal.app import migrate as migrations

        migrations.upgrade()
    if settings.embedded:
        ensure_simulator_connection(settings)
    if seed and settings.demo:
        from vmportal.app import demo

        demo.seed(settings)


def ensure_simulator_connection(settings: Settings) -> int:
    """The embedded default governs the simulator; register it once so requests can name it."""
    from vmportal.connection.models import HypervisorConnection

    with db.transaction() as session:
        row = session.exec(
            select(HypervisorConnection).where(HypervisorConnection.name == SIMULATOR_CONNECTION)
        ).first()
        if row is None:
            row = HypervisorConnection(
                name=SIMULATOR_CONNECTION, kind="simulator", url=settings.simulator_state_url, verify_tls=True
            )
            session.add(row)
            session.flush()
            log.info("registered the simulator connection at %s", settings.simulator_state_url)
        assert row.id is not None
        return row.id
