"""Developer helpers: ``python -m vmportal.app.devtools new-migration "message"``."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from vmportal.app.migrate import alembic_config, upgrade
from vmportal.kit import crypto


def new_migration(message: str) -> None:
    """Autogenerate a revision: upgrade a scratch SQLite file to head, then diff the models."""
    from cryptography.fernet import Fernet

    crypto.configure([Fernet.generate_key().decode()])
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'scratch.sqlite3'}"
        upgrade(url)
        command.revision(alembic_config(url), message=message, autogenerate=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "new-migration":
        sys.exit('usage: python -m vmportal.app.devtools new-migration "what changed"')
    new_migration(sys.argv[2])
