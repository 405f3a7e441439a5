"""Work done once when a portal, worker or command starts: keys, schema, default connection, demo."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vmportal.app.embedded import ensure_simulator_connection
from vmportal.kit import crypto, db
from vmportal.kit.settings import Settings

log = logging.getLogger(__name__)


def prepare(settings: Settings, *, migrate: bool = True, seed: bool = True) -> None:
    protect_data_dir(settings)
    crypto.configure(settings.fernet_keys())
    if settings.encryption_key is None and not settings.demo:
        log.warning(
            "the encryption key of national IDs, mobile numbers and hypervisor secrets is kept beside "
            "the database (%s): one copy of that folder decrypts them all. Set VMPORTAL_ENCRYPTION_KEY "
            "from a secret store instead (README, Configuration).",
            settings.data_dir / "encryption.key",
        )
    db.init(settings)
    if migrate:
        from vmportal.app import migrate as migrations

        migrations.upgrade()
    if settings.embedded:
        ensure_simulator_connection(settings)
    if seed and settings.demo:
        from vmportal.app import demo

        demo.seed(settings)


def protect_data_dir(settings: Settings) -> None:
    """Everything the portal writes is its own: folders 0700, files 0600 (the database, its WAL, the
    uploads, the embedded key). The process's umask makes new files so; existing ones are fixed here,
    for data folders made by older versions."""
    os.umask(0o077)
    root = Path(settings.data_dir)
    if not root.exists():
        return
    for path in [root, *root.rglob("*")]:
        try:
            if path.is_symlink():
                continue
            path.chmod(0o700 if path.is_dir() else 0o600)
        except OSError as exc:  # a file that is not ours (a mounted folder): say so, go on
            log.warning("could not restrict %s: %s", path, exc)
