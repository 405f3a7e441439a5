"""Engine, sessions and the column types every model shares."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from vmportal.kit import crypto
from vmportal.kit.settings import Settings, get_settings


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EncryptedString(sa.TypeDecorator[str]):
    """A string stored as a Fernet token: the database file never holds the clear value."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else crypto.encrypt(value)

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else crypto.decrypt(value)


_engine: Engine | None = None
_factory: sessionmaker[Session] | None = None
_read_factory: sessionmaker[Session] | None = None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={int(get_settings().db_lock_timeout * 1000)}")
    # In WAL mode NORMAL keeps the database consistent across a crash and skips the fsync on
    # every commit; only the last transactions before a power loss can be lost. The embedded
    # default trades that for commits an order of magnitude cheaper.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_begin) instead of pysqlite's lazy implicit one.
    dbapi_conn.isolation_level = None


#: The execution option that marks a connection's transactions as reads (see _sqlite_begin).
READ_ONLY = "vmportal_read_only"


def _sqlite_begin(conn: sa.Connection) -> None:
    if conn.get_execution_options().get(READ_ONLY):
        # A read takes no lock: in WAL mode it reads its snapshot while a writer writes, so a
        # writer never blocks the pages and lists (nor they the writer).
        conn.exec_driver_sql("BEGIN")
        return
    # Writers are serialised from the first statement on: a read-then-write use case (quota check
    # then approval, next free IP then allocation) cannot interleave with another writer. (A
    # deferred transaction that reads and then writes would fail at once with "database is locked"
    # when another writer committed in between; an immediate one waits its turn.)
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    settings = get_settings()
    pool = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_pool_overflow,
        # A request that cannot get a connection soon answers 503 with Retry-After (the error
        # handler), instead of every request queueing for the pool's default 30 s.
        "pool_timeout": settings.db_pool_timeout,
    }
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": settings.db_lock_timeout}, **pool
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, **pool)


def init(settings: Settings | None = None, *, url: str | None = None) -> Engine:
    """(Re)bind the process to a database. Tests call it with their own URL."""
    global _engine, _factory, _read_factory
    settings = settings or get_settings()
    if _engine is not None:
        _engine.dispose()
    if url is None and settings.sqlalchemy_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    _engine = make_engine(url or settings.sqlalchemy_url)
    _factory = sessionmaker(bind=_engine, class_=Session, expire_on_commit=False)
    _read_factory = sessionmaker(
        bind=_engine.execution_options(**{READ_ONLY: True}),
        class_=Session,
        expire_on_commit=False,
        info={READ_ONLY: True},
    )
    return _engine


def after_fork() -> None:
    """In a process forked from one that used the database (a Celery pool process): forget the
    parent's pooled connections without closing them (they are the parent's), keep the engine. The
    engine's compiled-statement cache is what the parent's warm-up (vmportal.app.warmup) filled for
    every child at once; a new engine would start it empty in each."""
    if _engine is not None:
        _engine.dispose(close=False)


@contextmanager
def joined(conn: sa.Connection) -> Iterator[None]:
    """While inside, every session (``transaction``, ``new_session``) works inside ``conn``'s open
    transaction: a session's commit releases a savepoint, and whoever holds ``conn`` decides the
    outcome (the worker's rehearsal rolls it all back). For a single-threaded process only."""
    global _factory, _read_factory
    saved = _factory, _read_factory
    _factory = _read_factory = sessionmaker(
        bind=conn, class_=Session, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    try:
        yield
    finally:
        _factory, _read_factory = saved


def engine() -> Engine:
    if _engine is None:
        init()
    assert _engine is not None
    return _engine


def new_session(*, read_only: bool = False) -> Session:
    if _factory is None or _read_factory is None:
        init()
    assert _factory is not None and _read_factory is not None
    return (_read_factory if read_only else _factory)()


@contextmanager
def transaction(*, read_only: bool = False) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception. Tasks and CLI use it;
    API requests get the same through the ``SessionDep`` dependency.

    ``read_only``: the unit of work only reads (GET requests, pages). On SQLite it then takes no
    lock, so it never waits for a writer; it must not write (a write may fail on a busy database)."""
    session = new_session(read_only=read_only)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def read_descriptions(conn: sa.Connection, tables: Iterable[sa.Table]) -> None:
    """Read nothing from each of ``tables`` on ``conn`` (``SELECT 1 … LIMIT 0``), so the server
    backend behind the connection has loaded their catalog entries before real work needs them."""
    for table in tables:
        conn.execute(sa.select(sa.literal(1)).select_from(table).limit(0))


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is too busy right now (SQLite's writer lock held past the
    lock timeout, no free pooled connection): worth an answer of 503 with Retry-After, or a retry."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, OperationalError):
        text = str(exc.orig).lower()
        return "database is locked" in text or "database table is locked" in text or "busy" in text
    return False


class WriteInReadOnly(RuntimeError):
    """A read-only unit of work tried to write: a route answering GET must not change anything."""


@event.listens_for(Session, "before_flush")
def _no_flush_when_reading(session: Session, _context: Any, _instances: Any) -> None:
    if session.info.get(READ_ONLY) and (session.new or session.dirty or session.deleted):
        raise WriteInReadOnly("a read-only unit of work tried to write (a GET route changing data?)")


@event.listens_for(Session, "do_orm_execute")
def _no_statement_write_when_reading(state: Any) -> None:
    if state.session.info.get(READ_ONLY) and (state.is_insert or state.is_update or state.is_delete):
        raise WriteInReadOnly("a read-only unit of work tried to write (a GET route changing data?)")
