"""Fixtures shared by every test: settings in a temporary folder, a migrated database (SQLite by
default, PostgreSQL with VMPORTAL_TEST_DB=postgres), the API client, and tasks run inline."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher, profiles
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlmodel import Session, SQLModel

from vmportal.app import migrate as migrations
from vmportal.identity import service as identity_service
from vmportal.kit import crypto, db
from vmportal.kit.settings import Settings, use_settings

# Speed is measured by the benchmarks, never by tests: Hypothesis's slow-generation health check and
# per-example deadline fail a property test when the machine is busy (CI shares its 2 CPUs), which
# says nothing about the property. A test's own @settings still override the rest.
hypothesis_settings.register_profile("vmportal", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("vmportal")

pytest_plugins = [
    "tests.factories",
    "tests.support.vcsim",
    "tests.support.proxmox_double",
    "tests.support.ldap_fixtures",
    "tests.support.cas_fixtures",
]

# argon2's production cost is the point in production and only a slowdown here: tests hash with
# the cheapest parameters (the verification logic is the same; the parameters live in the hash).
identity_service._hasher = PasswordHasher.from_parameters(profiles.CHEAPEST)
identity_service._DUMMY_HASH = identity_service._hasher.hash("not-a-real-password")

TEST_KEY = Fernet.generate_key().decode()
PG_BASE = os.environ.get("VMPORTAL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def _use_postgres() -> bool:
    return os.environ.get("VMPORTAL_TEST_DB", "sqlite") == "postgres"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once per session; each test gets a copy of the file (fast, and isolated)."""
    path = tmp_path_factory.mktemp("template") / "vmportal.sqlite3"
    crypto.configure([TEST_KEY])
    migrations.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url(worker_id: str) -> Iterator[str]:
    """A database of this test worker's own, migrated once, emptied between tests."""
    # The pid keeps two concurrent test runs on one machine from truncating each other's tables.
    name = f"vmportal_test_{worker_id}_{os.getpid()}".replace("-", "_")
    admin = sa.create_engine(f"{PG_BASE}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = f"{PG_BASE}/{name}"
    migrations.upgrade(url)
    yield url
    from vmportal.kit import db as _db

    _db.engine().dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database_url = ""
    if _use_postgres():
        database_url = request.getfixturevalue("postgres_url")
    else:
        shutil.copy(request.getfixturevalue("migrated_sqlite"), data_dir / "vmportal.sqlite3")
    s = Settings(
        data_dir=data_dir,
        database_url=database_url,
        encryption_key=TEST_KEY,  # type: ignore[arg-type]
        task_mode="inline",
        simulator_url=f"simulator://{data_dir / 'simulator.json'}",
        demo=False,
    )
    use_settings(s)
    crypto.configure([TEST_KEY])
    engine = db.init(s)
    if database_url:
        _truncate(engine)
    yield s
    use_settings(None)
    engine.dispose()


def _truncate(engine: sa.Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    """A session for arranging and inspecting data directly; commit what you arrange."""
    s = db.new_session()
    yield s
    s.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    from vmportal.app.factory import create_app

    app = create_app(settings, migrate=False)
    with TestClient(app) as c:
        yield c
