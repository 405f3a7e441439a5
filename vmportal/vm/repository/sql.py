"""The two hottest reads, "list my VMs" and "get one VM", answered by PostgreSQL in one statement.

Why a second path beside the ORM: every unit admin's page asks these two, and through the ORM each
cost about ten times the CPU of serialising the answer (a pooled session with pre-ping, BEGIN and
COMMIT, the token and the user as ORM objects, 50 VM objects, pydantic twice: docs/production.md).
Here one statement checks the bearer token, applies unit scoping and the filters, and concatenates
the page's VM documents, which PostgreSQL keeps current itself (``vm.api_json``, written by a
trigger on every insert and update: migration 0004); the process forwards the bytes.

The ORM path (``vmportal.vm.service``) stays the reference: it serves SQLite, and on PostgreSQL it
answers whenever this path has nothing to say (no valid token: it produces the exact 401). The two
are compared field by field (tests/api/test_vm_reads.py). The filters and sort keys are not
restated here: both paths compile them from the repository's tables (``repository.FILTERS``,
``repository.SORT_COLUMNS``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
from dataclasses import dataclass
from typing import Any, LiteralString, cast

import sqlalchemy as sa
from psycopg import AsyncConnection, sql
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from vmportal.identity import repository as identity_repository
from vmportal.identity.service import token_digest
from vmportal.kit.scope import unit_scoped_roles
from vmportal.kit.settings import Settings
from vmportal.vm.repository import FILTERS, SORT_COLUMNS, VMFilter, filter_values
from vmportal.vm.schemas import VMFilters, VMSort

log = logging.getLogger(__name__)


def _caller(page: bool = False) -> LiteralString:
    """The caller's role and unit: identity's one rule for a live token
    (``identity.repository.live_token_rule``), compiled to PostgreSQL's text with the database's
    clock and the digest as the named parameter ``%(digest)s``. For a page (``page``) the account's
    id, username and display name too, which its layout shows."""
    of_token = identity_repository.page_caller_of_token if page else identity_repository.caller_of_token
    statement = of_token(sa.bindparam("digest"), sa.func.now())
    text = str(statement.compile(dialect=postgresql.psycopg.dialect()))
    return cast(LiteralString, f"\n    me AS MATERIALIZED (\n        {text}\n    )")


_ME: LiteralString = _caller()
_ME_PAGE: LiteralString = _caller(page=True)
# What a page's statement answers beside the rows: the account (the page lane renders its layout).
_PAGE_USER: LiteralString = (
    ", (SELECT id FROM me), (SELECT username FROM me), (SELECT display_name FROM me),"
    " (SELECT role FROM me), (SELECT unit_id FROM me)"
)

# Unit scoping inside the statement, as in repository.vm_conditions: a unit's users get their unit's
# rows, everyone else every row. Two branches, each gated by the caller's role (a test on the one
# row of ``me``, which PostgreSQL evaluates once, before it runs the branch: a "One-Time Filter"),
# so that only one of them does any work and a unit admin's page is read from the unit's own rows
# (the index on (unit_id, lifecycle, id)), not from a scan of every VM.
# kit.scope's rule compiled into the statement: the roles limited to their own unit.
_UNIT_ROLES = ", ".join(f"'{r.value}'" for r in sorted(unit_scoped_roles()))
_IN_UNIT: LiteralString = f"(SELECT role FROM me) IN ({_UNIT_ROLES})"  # noqa: S608
_EVERY_UNIT: LiteralString = f"(SELECT role FROM me) NOT IN ({_UNIT_ROLES})"  # noqa: S608

# The sort keys, compiled from the repository's one table (column names as quoted identifiers).
_SORT: dict[str, sql.Composable] = {
    key: sql.SQL("v.{}").format(sql.Identifier(column)) for key, column in SORT_COLUMNS.items()
}
# What the every-unit branch's cut carries: the key and every sort column (the page is sorted again
# when its documents are joined).
_CUT_COLUMNS = sql.SQL(", ").join(
    sql.SQL("v.{}").format(sql.Identifier(column)) for column in dict.fromkeys(["id", *SORT_COLUMNS.values()])
)

# Every piece of the statements below is a constant of this module or a whitelisted column name;
# values travel as parameters only (hence the S608 exemptions).
# One VM by its key: the scoping test is a filter on that one row, so a plain OR does (no branches).
_GET: bytes = (
    "WITH"  # noqa: S608
    + _ME
    + " SELECT EXISTS (SELECT 1 FROM me),"  # noqa: S608
    " (SELECT coalesce(v.api_json, '') FROM me JOIN vm v ON v.id = %(id)s"
    f" WHERE me.role NOT IN ({_UNIT_ROLES}) OR v.unit_id = me.unit_id)"
).encode()


def _api_document(alias: LiteralString) -> LiteralString:
    """The VM's API document (kept by the trigger of migration 0004)."""
    return alias + ".api_json"


def _no_join(alias: LiteralString) -> LiteralString:
    return ""


def _page_row(alias: LiteralString) -> LiteralString:
    """What a row of the VM list's page shows of a VM, as a JSON array built from its columns: id,
    name, unit id, unit name (as the API's ``unit_name``: the unit's Chinese name), address, power
    and security state. A page decodes 50 of these in a few tens of microseconds where the API's
    documents (some 700 bytes each) took ten times that; and they are never missing."""
    v = alias
    return (
        f"json_build_array({v}.id, {v}.name, {v}.unit_id, {v}_unit.name_zh,"
        f" {v}.ip_address, {v}.power_state, {v}.security_state)::text"
    )


def _page_join(alias: LiteralString) -> LiteralString:
    """The unit a page row names (a join: a scalar subquery per row made the statement six
    times slower, measured)."""
    v = alias
    return f" LEFT JOIN unit {v}_unit ON {v}_unit.id = {v}.unit_id"


def _condition(name: str, spec: VMFilter) -> sql.Composable:
    """One filter of the repository's table as SQL text, its value a named parameter (the same
    tests as the ORM conditions of ``repository.vm_conditions``, compiled from the same entry)."""
    columns = [sql.SQL("v.{}").format(sql.Identifier(column)) for column in spec.columns]
    value = sql.Placeholder(name)
    if spec.match == "eq":
        return sql.SQL(" AND ").join(sql.SQL("{} = {}").format(column, value) for column in columns)
    tests = [sql.SQL("{} ILIKE {} ESCAPE '\\'").format(column, value) for column in columns]
    return sql.SQL("({})").format(sql.SQL(" OR ").join(tests))


_CONDITIONS: dict[str, sql.Composable] = {name: _condition(name, spec) for name, spec in FILTERS.items()}


@functools.lru_cache(maxsize=256)
def _statement(used: tuple[str, ...], sort: VMSort, page: bool = False) -> bytes:
    """The statement for one shape of filters (which are set, which sort), composed once per process:
    a prepared statement is then reused by every request of that shape.

    It answers one row (the page's documents joined by commas, the total, how many of the page's
    VMs have no document) when the token is live, none otherwise; of its two branches only the
    caller's runs (the other's role test is false before it reads anything).

    A unit's branch reads the unit's matching rows once: the page is the rows numbered past the
    offset (a window over them, in the page's order) and the total is their count, in the same
    pass. That is the common case (a unit admin's ~67 VMs) and what the benchmark measures; reading
    the rows once instead of in a page of its own and again for the count took about a third off
    the statement's time. The every-unit branch (center roles, 20,000 VMs) keeps the page and the
    count apart: a window there would sort every matching row with its document; the page's
    documents are fetched by key after the cut, for its 50 rows only.

    A page's statement (``page``) answers, instead of the API's documents, each VM as the short
    array a list row shows (:func:`_page_row`), and the account's id, username, display name, role
    and unit after those three columns (:data:`_PAGE_USER`), from the same ``me``."""
    where = sql.SQL(" AND ").join([sql.SQL("TRUE"), *(_CONDITIONS[name] for name in used)])
    key = sort.value.lstrip("-")
    direction = sql.SQL("DESC" if sort.value.startswith("-") else "ASC")
    order: list[sql.Composable] = [sql.SQL("{} {}").format(_SORT[key], direction)]
    if key != "id":
        order.append(sql.SQL("v.id {}").format(direction))  # stable pages
    order_by = sql.SQL(", ").join(order)
    in_page = sql.SQL("v.n > %(offset)s AND v.n <= %(offset)s + %(limit)s")
    me, user = (_ME_PAGE, _PAGE_USER) if page else (_ME, "")
    doc_of = _page_row if page else _api_document
    join_of = _page_join if page else _no_join
    statement = sql.SQL(
        "WITH" + me + ","  # noqa: S608
        # the every-unit branch's page: keys and sort columns first, documents after the cut
        " cut AS (SELECT {cut} FROM vm v"
        " WHERE " + _EVERY_UNIT + " AND {where} ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s),"
        " page AS (SELECT v.*, (SELECT "
        + doc_of("w")
        + " FROM vm w"
        + join_of("w")
        + " WHERE w.id = v.id) AS doc FROM cut v)"
        # a unit's branch: one pass over the unit's matching rows, numbered in the page's order
        " SELECT coalesce(string_agg(v.doc, ',' ORDER BY v.n) FILTER (WHERE {in_page}), ''),"
        " count(*), count(*) FILTER (WHERE v.doc IS NULL AND {in_page})" + user + ""
        " FROM (SELECT "
        + doc_of("v")
        + " AS doc, row_number() OVER (ORDER BY {order}) AS n FROM vm v"
        + join_of("v")
        + ""
        " WHERE " + _IN_UNIT + " AND v.unit_id = (SELECT unit_id FROM me) AND {where}) v"
        " HAVING " + _IN_UNIT + ""
        " UNION ALL"
        " SELECT (SELECT coalesce(string_agg(v.doc, ',' ORDER BY {order}), '') FROM page v),"
        " (SELECT count(*) FROM vm v WHERE " + _EVERY_UNIT + " AND {where}),"
        " (SELECT count(*) - count(doc) FROM page)" + user + ""
        " WHERE " + _EVERY_UNIT
    ).format(order=order_by, where=where, in_page=in_page, cut=_CUT_COLUMNS)
    return statement.as_bytes(None)


@functools.lru_cache(maxsize=1024)
def _list_statement(filters: VMFilters, page: bool = False) -> tuple[bytes, dict[str, Any]]:
    """The statement for these filters and its parameters (without the caller's digest: callers
    copy the dict before adding it, the cached one is shared)."""
    values = filter_values(filters)
    params: dict[str, Any] = {"limit": filters.limit, "offset": filters.offset, **values}
    return _statement(tuple(values), filters.sort, page), params


@dataclass(frozen=True, slots=True)
class PageUser:
    """The account a page session belongs to, as the page's layout shows it."""

    id: int
    username: str
    display_name: str
    role: str
    unit_id: int | None


@dataclass(frozen=True, slots=True)
class PageRead:
    """A page of the VM list for a live session: its account, the VMs (each as :func:`_page_row`
    lists it: id, name, unit id, unit name, address, power state, security state), and how many
    match."""

    user: PageUser
    items: list[list[Any]]
    total: int


class _TextAsBytes(Loader):
    """Text columns as the bytes PostgreSQL sent: the documents go to the client as they are, with
    no decoding into str and encoding back (a page is some 34 KB)."""

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


# The statements are written for one plan each, whatever the caller (the role tests choose the
# branch when they run), and the estimate of the never-run branch (another role's scan of every VM)
# would otherwise mislead the planner in three ways: JIT compiling the plan in every execution (tens
# of milliseconds), a parallel worker started for that branch (13 ms, for nothing), and a plan made
# afresh for each execution instead of the prepared one (twice the statement's time, measured).
_OPTIONS = "-c jit=off -c max_parallel_workers_per_gather=0 -c plan_cache_mode=force_generic_plan"


class _Connections:
    """At most ``size`` autocommit connections of one event loop, handed out one request at a time.

    Why not psycopg_pool: its check-out and return (locks, a deadline loop, statistics, the
    connection's own context manager) cost about 70 µs of CPU per request, a twentieth of a page's
    whole cost. A connection here is only ever used for one autocommit statement, so all a
    returned one needs is a test that it is still idle and usable; a broken one is dropped and its
    place handed to the next waiter, which opens a new one."""

    def __init__(self, conninfo: str, size: int, timeout: float) -> None:
        self._conninfo = conninfo
        self._size = size
        self._timeout = timeout
        self._idle: list[AsyncConnection[Any]] = []
        # a waiter's future gets a connection, or None: "a place is free, open your own"
        self._waiters: collections.deque[asyncio.Future[AsyncConnection[Any] | None]] = collections.deque()
        self._count = 0  # connections open, being opened, or promised to a waiter
        self._closed = False
        self._closing: set[asyncio.Task[None]] = set()  # dropped connections being closed

    async def _connect(self) -> AsyncConnection[Any]:
        conn = await AsyncConnection.connect(
            self._conninfo, autocommit=True, options=_OPTIONS, connect_timeout=max(1, int(self._timeout))
        )
        conn.adapters.register_loader("text", _TextAsBytes)
        return conn

    async def open(self) -> None:
        """Open the first connection (a database that cannot be reached fails here, at start-up)."""
        self._count += 1
        try:
            self._idle.append(await self._connect())
        except BaseException:
            self._count -= 1
            raise

    async def acquire(self) -> AsyncConnection[Any]:
        if self._closed:
            raise RuntimeError("the VM read connections are closed")
        if self._idle:
            return self._idle.pop()
        if self._count < self._size:
            self._count += 1
        else:
            waiter: asyncio.Future[AsyncConnection[Any] | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(self._timeout):
                    handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    # handed over just as the wait ended: pass it on rather than lose it
                    self._give(waiter.result())
                else:
                    waiter.cancel()
                raise
            if handed is not None:
                return handed
        try:
            return await self._connect()
        except BaseException:
            self._give(None)
            raise

    def release(self, conn: AsyncConnection[Any]) -> None:
        """Give a connection back after one statement (an exception included)."""
        if self._closed or conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
            # broken, or left mid-statement by a cancelled request: drop it, free its place
            task = asyncio.get_running_loop().create_task(conn.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            self._give(None)
        else:
            self._give(conn)

    def _give(self, conn: AsyncConnection[Any] | None) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            self._count -= 1
        else:
            self._idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
        while self._waiters:
            self._waiters.popleft().cancel()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


def _str(value: str | bytes) -> str:
    """A character column: varchar arrives as str, text as bytes (:class:`_TextAsBytes`)."""
    return value.decode() if isinstance(value, bytes) else value


class VMReader:
    """A few autocommit connections of one process, bound to the event loop that opened them."""

    def __init__(self, conninfo: str, *, max_size: int) -> None:
        self._pool = _Connections(conninfo, max_size, timeout=10)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.statements = 0  # executed so far (tests check that a page is one statement)
        # answers given (not handed back to the ORM path): the equivalence tests check that each
        # comparison on PostgreSQL really was the SQL path's answer, not the ORM's fallback
        self.answered = 0

    async def open(self) -> None:
        await self._pool.open()
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        self._loop = None
        await self._pool.close()

    @property
    def usable(self) -> bool:
        """False outside the loop that opened the pool (a test client's other loop): use the ORM."""
        try:
            return self._loop is asyncio.get_running_loop()
        except RuntimeError:
            return False

    async def _one_row(self, statement: Any, params: dict[str, Any]) -> Any:
        """The one row ``statement`` answers (None: none), on a pooled connection."""
        conn = await self._pool.acquire()
        try:
            self.statements += 1
            cur = await conn.execute(statement, params)
            return await cur.fetchone()
        finally:
            self._pool.release(conn)

    async def list_vms(self, token: str, filters: VMFilters) -> bytes | None:
        """The page as the API's JSON, or None when the token does not identify a live account."""
        statement, shared = _list_statement(filters)
        row = await self._one_row(statement, {**shared, "digest": token_digest(token)})
        if row is None:  # no live token: the ORM path answers the exact 401
            return None
        items, total, undocumented = row
        if undocumented:
            # A VM without its document (written by the trigger of migration 0004; only a restore
            # that bypassed triggers leaves one): the ORM path answers from the columns themselves.
            return None
        tail = f'],"total":{int(total)},"limit":{filters.limit},"offset":{filters.offset}}}'
        self.answered += 1
        return b'{"items":[' + items + tail.encode()

    async def list_page(self, token: str, filters: VMFilters) -> PageRead | None:
        """The rows of a page of the VM list and the session's account, in one statement (the
        same as :meth:`list_vms`'s, with each VM's row instead of its document and the account);
        None when the token is not live (the router's page then answers: to the log-in page)."""
        statement, shared = _list_statement(filters, True)
        row = await self._one_row(statement, {**shared, "digest": token_digest(token)})
        if row is None:
            return None
        items, total, _undocumented, user_id, username, display_name, role, unit_id = row
        self.answered += 1
        user = PageUser(int(user_id), _str(username), _str(display_name), _str(role), unit_id)
        return PageRead(user, json.loads(b"[" + items + b"]"), int(total))

    async def get_vm(self, token: str, vm_id: int) -> bytes | None:
        """The VM's JSON; None when the token is not live, the caller may not see the VM, it does
        not exist or it has no document (the router then answers, 401 / 404 / the ORM's JSON)."""
        row = await self._one_row(_GET, {"digest": token_digest(token), "id": vm_id})
        assert row is not None
        authenticated, item = row
        if not (authenticated and item):
            return None
        self.answered += 1
        return item


def conninfo(database_url: str) -> str:
    """libpq's form of the SQLAlchemy URL (``postgresql+psycopg://`` → ``postgresql://``)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def open_reader(settings: Settings) -> VMReader | None:
    """The reader when the database is PostgreSQL and the path is enabled; None otherwise."""
    url = settings.sqlalchemy_url
    if not settings.sql_reads or not url.startswith("postgresql"):
        return None
    reader = VMReader(conninfo(url), max_size=settings.sql_reads_pool_size)
    try:
        await reader.open()
    except Exception:  # the ORM path still answers; /readyz reports the database itself
        log.exception("the SQL read path could not connect; the ORM path answers instead")
        await reader.close()
        return None
    return reader
