"""Alembic environment: the metadata of every SQLModel table, the URL from settings (or the caller)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import vmportal.app.models  # noqa: F401  (registers every table on the metadata)
from vmportal.kit import db

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        with db.engine().connect() as conn:
            _run(conn)
        return
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        # Close the pool: on SQLite this checkpoints the WAL, so the file alone holds the schema.
        engine.dispose()


def _run(connection: Connection) -> None:
    # render_as_batch: SQLite can only ALTER by copying a table; batch mode does that for us.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
