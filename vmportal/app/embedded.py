"""The embedded default's own world: the simulator hypervisor, registered once as a connection, and
the inventory watchers running inside the portal's process (there is no ``vmportal watch`` beside
it)."""

from __future__ import annotations

import logging
import threading

from vmportal.kit import db
from vmportal.kit.settings import Settings

log = logging.getLogger(__name__)

SIMULATOR_CONNECTION = "simulator"


def ensure_simulator_connection(settings: Settings) -> int:
    """The embedded default governs the simulator; register it once so requests can name it."""
    from vmportal.connection.models import HypervisorConnection
    from vmportal.connection.repository import connection_by_name

    with db.transaction() as session:
        row = connection_by_name(session, SIMULATOR_CONNECTION)
        if row is None:
            row = HypervisorConnection(
                name=SIMULATOR_CONNECTION, kind="simulator", url=settings.simulator_state_url, verify_tls=True
            )
            session.add(row)
            session.flush()
            log.info("registered the simulator connection at %s", settings.simulator_state_url)
        assert row.id is not None
        return row.id


def start_watchers(settings: Settings, stop: threading.Event) -> list[threading.Thread]:
    """The embedded portal's inventory watchers (one per connection, picked up as they are added),
    until ``stop``; nothing when ``VMPORTAL_WATCH_INVENTORY`` is off. The lease keeps them from
    doubling a ``vmportal watch`` started beside the portal."""
    if not settings.watch_inventory:
        return []
    from vmportal.app import registry  # noqa: F401  (the hooks: re-containment on every change)
    from vmportal.inventory import watcher

    return watcher.start(stop)
