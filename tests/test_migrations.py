"""The migrations are the schema: they must build exactly what the models describe, on SQLite and
PostgreSQL, and go back down cleanly."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import vmportal.app.models  # noqa: F401
from vmportal.app import migrate

PG_BASE = os.environ.get("VMPORTAL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def _diff(url: str) -> list[object]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": migrate.compared}
        )
        diff = compare_metadata(ctx, SQLModel.metadata)
    engine.dispose()
    return list(diff)


@pytest.fixture
def pg_scratch(worker_id: str) -> str:
    name = f"vmportal_migrations_{worker_id}"
    admin = sa.create_engine(f"{PG_BASE}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return f"{PG_BASE}/{name}"


def test_sqlite_schema_matches_models_and_downgrades(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/m.sqlite3"
    migrate.upgrade(url)
    assert _diff(url) == []
    command.downgrade(migrate.alembic_config(url), "base")
    inspector_tables = sa.inspect(sa.create_engine(url)).get_table_names()
    assert set(inspector_tables) <= {"alembic_version"}


def test_postgres_schema_matches_models_and_downgrades(pg_scratch: str) -> None:
    migrate.upgrade(pg_scratch)
    assert _diff(pg_scratch) == []
    engine = sa.create_engine(pg_scratch)
    indexes = {i["name"] for t in ("vm", "information_system") for i in sa.inspect(engine).get_indexes(t)}
    engine.dispose()
    assert indexes >= migrate.MIGRATION_ONLY_INDEXES  # the matcher's GIN indexes (migration 0012)
    command.downgrade(migrate.alembic_config(pg_scratch), "base")
    migrate.upgrade(pg_scratch)  # and up again from nothing
    assert _diff(pg_scratch) == []
