"""Run Alembic migrations from code (the app at start-up, ``vmportal migrate``, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from vmportal.kit import db

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url or str(db.engine().url.render_as_string(hide_password=False)))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def current_head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


#: Indexes on expressions that only the migrations create (SQLAlchemy's models cannot state a GIN
#: index on ``ips::jsonb`` portably); a schema comparison leaves them out. See migration 0012.
MIGRATION_ONLY_INDEXES = frozenset({"ix_vm_ips_jsonb", "ix_information_system_domains_jsonb"})


def compared(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's ``include_object`` for comparing the database with the models."""
    return not (type_ == "index" and name in MIGRATION_ONLY_INDEXES)
