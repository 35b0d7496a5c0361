"""Engine creation and transaction helpers that behave the same on SQLite and PostgreSQL.

SQLite: WAL so readers never wait for the writer, and `BEGIN IMMEDIATE` for write transactions
so two writers queue on the database lock instead of both reading then failing to upgrade
(the classic SQLITE_BUSY deadlock). Read transactions stay deferred so they run concurrently.

Every wait on the database is bounded (`DatabaseTimeouts`): opening a connection, getting one
from the pool, running a statement. A database that hangs or refuses then costs each request
a bounded wait and a 503 (storage/faults.py), instead of holding every worker thread forever.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from fhirsrv.settings import Settings
from fhirsrv.storage import changes

# SQLite's busy timeout when statements are not bounded (db_statement_timeout 0): its largest.
SQLITE_LONGEST_BUSY_MS = 2**31 - 1
# libpq reads connect_timeout in whole seconds and takes anything below 2 as 2.
LIBPQ_SHORTEST_CONNECT_TIMEOUT = 2
# Connections each engine keeps, and how many more it opens under load (16 at most).
POOL_SIZE = 8
POOL_OVERFLOW = 8
# Seconds a probe of the database (readiness, a metrics scrape) may wait for each step: a load
# balancer's or a scraper's own timeout is usually a few seconds, and a probe that outlives it
# tells nobody anything.
PROBE_TIMEOUT = 3


@dataclass(frozen=True)
class DatabaseTimeouts:
    """Seconds each kind of database wait may last; the defaults are the settings' defaults."""

    connect: int = Settings.db_connect_timeout
    # 0: no limit.
    statement: int = Settings.db_statement_timeout
    pool: int = Settings.db_pool_timeout

    @classmethod
    def of(cls, settings: Settings) -> DatabaseTimeouts:
        return cls(settings.db_connect_timeout, settings.db_statement_timeout, settings.db_pool_timeout)


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and route them to psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


class Abandoned(Exception):
    """Whoever asked for this work is gone (an HTTP client closed its connection): it stopped
    before its next statement, and its transaction rolls back like any failed one."""


# Asked before each statement: has whoever asked for this work gone? Set by the HTTP layer.
_requester_gone: ContextVar[Callable[[], bool] | None] = ContextVar("fhirsrv_requester_gone", default=None)


def watch_requester(gone: Callable[[], bool]) -> Token[Callable[[], bool] | None]:
    """From now on in this context, every statement first checks `gone()` and raises Abandoned
    if true; `unwatch_requester(token)` ends it. Between statements only: a statement already
    running is bounded by the statement timeout."""
    return _requester_gone.set(gone)


def unwatch_requester(token: Token[Callable[[], bool] | None]) -> None:
    _requester_gone.reset(token)


def _stop_if_abandoned(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
    gone = _requester_gone.get()
    if gone is not None and gone():
        raise Abandoned("the client closed its connection; the request's work was abandoned")


def engine_for(settings: Settings) -> Engine:
    """The engine of `settings`: their database, with their timeouts."""
    return make_engine(settings.database_url, echo=settings.sql_echo, timeouts=DatabaseTimeouts.of(settings))


def probe_engine(settings: Settings) -> Engine:
    """An engine for probes of the database (readiness, the outbox's depth at a metrics scrape).

    Apart from the requests' pool, so a probe neither waits for a connection busy requests hold
    nor takes one from them, and not pooled: each probe opens a fresh connection, which is what
    it asks (can the database be reached now?), where a pooled one may have died unseen. Every
    wait is bounded by PROBE_TIMEOUT (or the settings, when shorter)."""
    statement = min(settings.db_statement_timeout or PROBE_TIMEOUT, PROBE_TIMEOUT)
    timeouts = DatabaseTimeouts(min(settings.db_connect_timeout, PROBE_TIMEOUT), statement, PROBE_TIMEOUT)
    return make_engine(settings.database_url, timeouts=timeouts, pooled=False, create_missing=False)


def make_engine(
    url: str,
    *,
    echo: bool = False,
    timeouts: DatabaseTimeouts = DatabaseTimeouts(),
    pooled: bool = True,
    create_missing: bool = True,
) -> Engine:
    """`pooled=False`: a new connection for each use (probes); `create_missing=False`: an SQLite
    file that has gone (or its directory) is a database that cannot be opened, not one to create."""
    url = normalise_url(url)
    parsed = make_url(url)
    pool: dict[str, object] = (
        {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW, "pool_timeout": timeouts.pool}
        if pooled
        else {"poolclass": NullPool}
    )
    if parsed.get_backend_name() == "sqlite":
        on_disk = bool(parsed.database) and parsed.database != ":memory:"
        if create_missing and on_disk:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        busy_ms = timeouts.statement * 1000 if timeouts.statement else SQLITE_LONGEST_BUSY_MS
        connect_args = {"timeout": busy_ms / 1000, "check_same_thread": False}
        if on_disk and not create_missing:
            # SQLite's read-write mode opens an existing file only, never creates one.
            existing = f"file:{quote(str(parsed.database))}?mode=rw"
            pool["creator"] = lambda: sqlite3.connect(existing, uri=True, **connect_args)  # type: ignore[arg-type]
        engine = create_engine(url, echo=echo, connect_args=connect_args, **pool)  # type: ignore[arg-type]
        _configure_sqlite(engine, busy_ms)
    else:
        engine = create_engine(
            url,
            echo=echo,
            connect_args=_postgresql_connect_args(parsed, timeouts),
            # No pre-ping: a SELECT 1 before every checkout cost each request a round trip
            # (about 1 ms). A connection that died with the database fails its statement, which
            # answers 503 (storage/faults.py), and SQLAlchemy then drops the whole pool.
            **pool,  # type: ignore[arg-type]
        )
    event.listen(engine, "before_cursor_execute", _stop_if_abandoned)
    changes.watch(engine)
    return engine


def _postgresql_connect_args(url: URL, timeouts: DatabaseTimeouts) -> dict[str, object]:
    """libpq's connect_timeout, and the statement timeout and plan cache mode as session defaults.

    A session default (startup `options`), not a SET after connecting: `RESET statement_timeout`
    then returns to it, and it is in force from the first statement. The URL's own `options`
    (a search_path, say) are kept, after ours, so a timeout written in the URL still wins."""
    args: dict[str, object] = {"connect_timeout": max(timeouts.connect, LIBPQ_SHORTEST_CONNECT_TIMEOUT)}
    given = url.query.get("options", "")
    given = " ".join(given) if isinstance(given, tuple) else given
    # Custom plans always: the driver prepares a statement run five times, and PostgreSQL then
    # settles on a generic plan, blind to the values. A search's values decide its plan (a
    # département of 300 offers or of 3; a code that is everywhere or nowhere): on the demo,
    # `departement=35&audience=…` went from 14 ms to 50 ms at its eleventh run, for good.
    ours = f"-c statement_timeout={timeouts.statement * 1000} -c plan_cache_mode=force_custom_plan"
    args["options"] = f"{ours} {given}".strip()
    return args


@contextmanager
def unbounded_statements(conn: Connection) -> Iterator[None]:
    """Lift the statement timeout for the long statements of a load, a migration or a reindex.

    Those run from the command line or before the server listens, where a long statement is
    expected work, not a stuck request. Inside a transaction the lift ends with it (SET LOCAL);
    on an autocommit connection it is reset on the way out. SQLite bounds only lock waits, which
    a load may share with the server, so nothing changes there."""
    if conn.dialect.name != "postgresql":
        yield
        return
    if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        yield
        return
    conn.execute(text("SET statement_timeout = 0"))
    try:
        yield
    finally:
        conn.execute(text("RESET statement_timeout"))


def _configure_sqlite(engine: Engine, busy_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event below emit BEGIN itself (pysqlite's own is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()
        _register_math(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("fhirsrv_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def _register_math(dbapi_connection) -> None:  # type: ignore[no-untyped-def]
    """The SQL functions PostgreSQL has built in and the `near` search uses."""
    for name, fn in (("sin", math.sin), ("cos", math.cos), ("acos", math.acos), ("radians", math.radians)):
        dbapi_connection.create_function(name, 1, fn, deterministic=True)
    dbapi_connection.create_function("least", 2, min, deterministic=True)
    dbapi_connection.create_function("greatest", 2, max, deterministic=True)


@contextmanager
def write_transaction(engine: Engine, *, unbounded: bool = False) -> Iterator[Connection]:
    """One atomic write: everything inside commits together or not at all.

    `unbounded`: a load's transaction, whose statements the statement timeout does not bound."""
    with engine.connect() as conn:
        conn = conn.execution_options(fhirsrv_write=True)
        with conn.begin():
            if unbounded:
                with unbounded_statements(conn):
                    yield conn
            else:
                yield conn


@contextmanager
def joined_or_new_write(engine: Engine, conn: Connection | None) -> Iterator[Connection]:
    """The caller's transaction when it has one (a Bundle entry, the loader), else a new one."""
    if conn is not None:
        yield conn
        return
    with write_transaction(engine) as own:
        yield own


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A consistent snapshot for a read or a search (several queries see the same data)."""
    with engine.connect() as conn, conn.begin():
        yield conn


@contextmanager
def one_statement_read(engine: Engine) -> Iterator[Connection]:
    """A connection for a read that runs a single statement (a read by id).

    On PostgreSQL, outside any transaction block: one statement sees one snapshot of its own,
    so the answer is the one a transaction would give, without the BEGIN and COMMIT round
    trips (two of a read's three, and CPU on both sides). SQLite's transactions cost no round
    trip: a read transaction there, as `read_transaction`. A caller that runs more than one
    statement, or writes, takes `read_transaction` or `write_transaction` instead."""
    if is_sqlite(engine):
        with read_transaction(engine) as conn:
            yield conn
        return
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


# What each database says when a statement is too deeply nested or joins too much to be run:
# the query's shape, not the data or the server, is at fault. SQLite: its parser's stack
# (about four chained references with the read scope), its 64-table join limit, its expression
# depth (1000); PostgreSQL: SQLSTATE 54001 (statement too complex) and its 54xxx siblings.
_SQLITE_TOO_COMPLEX = ("parser stack overflow", "at most 64 tables in a join", "expression tree is too large")


def too_complex(exc: DBAPIError) -> bool:
    """Whether the database refused a statement for its size or depth (a client's query gone
    too far, answered 400), rather than failing for a reason the client cannot fix."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if isinstance(code, str) and code.startswith("54"):
        return True
    message = str(exc.orig).lower()
    return any(text in message for text in _SQLITE_TOO_COMPLEX)
