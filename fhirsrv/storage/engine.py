"""Engine creation and transaction helpers that behave the same on SQLite and PostgreSQL.

SQLite: WAL so readers never wait for the writer, and `BEGIN IMMEDIATE` for write transactions
so two writers queue on the database lock instead of both reading then failing to upgrade
(the classic SQLITE_BUSY deadlock). Read transactions stay deferred so they run concurrently.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and route them to psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=8,
            max_overflow=8,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, echo=echo, pool_size=8, max_overflow=8, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event below emit BEGIN itself (pysqlite's own is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
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
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One atomic write: everything inside commits together or not at all."""
    with engine.connect() as conn:
        conn = conn.execution_options(fhirsrv_write=True)
        with conn.begin():
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
