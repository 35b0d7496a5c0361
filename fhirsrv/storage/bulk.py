"""Multi-row inserts at driver speed: COPY on PostgreSQL, the driver's executemany on SQLite.

SQLAlchemy's executemany builds and checks a parameter dict per row, a few microseconds each.
A resource has some forty index rows, so on the bulk path that alone capped loading near
500 resources/s. Here rows are plain tuples in the table's column order, handed to the driver
on the connection (and so inside the transaction) that SQLAlchemy already holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, Table, text

from fhirsrv.errors import Conflict
from fhirsrv.storage.engine import unbounded_statements
from fhirsrv.storage.schema import (
    INDEX_TABLES,
    change_log,
    code_closure,
    entry_access,
    resource_version,
    structure_territory,
)

Row = tuple[Any, ...]


def columns_of(table: Table) -> tuple[str, ...]:
    """The columns a writer fills: not those derived by the database's own later steps (an
    index row's `public` flag, set by the access facts)."""
    return tuple(c.name for c in table.columns if not c.info.get("derived"))


# From this many rows on, PostgreSQL gets a COPY; below, a multi-row INSERT is cheaper.
COPY_FROM = 64


def insert_tuples(conn: Connection, table: Table, rows: Sequence[Row], columns: Sequence[str] = ()) -> None:
    """Insert `rows`, tuples in the order of `columns` (all the table's columns by default).

    Raises Conflict when a unique key is already taken; the caller's transaction is then
    unusable (PostgreSQL aborts it), which the loader wants anyway: nothing of the file lands.
    """
    if not rows:
        return
    columns = tuple(columns) or columns_of(table)
    names = ", ".join(columns)
    raw = conn.connection.driver_connection
    try:
        if conn.dialect.name == "postgresql" and len(rows) >= COPY_FROM:
            with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        if conn.dialect.name == "postgresql":
            # A few rows (one resource's index): a COPY costs more to set up than it saves.
            marks = ", ".join(["%s"] * len(columns))
            with raw.cursor() as cur:
                cur.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
            return
        processors = [_date_processor(conn, table, name) for name in columns]
        if any(processors):
            rows = [
                tuple(v if p is None or v is None else p(v) for p, v in zip(processors, row, strict=True))
                for row in rows
            ]
        marks = ", ".join("?" * len(columns))
        raw.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
    except (psycopg.errors.UniqueViolation, sqlite3.IntegrityError) as exc:
        raise Conflict(f"Some rows of {table.name} already exist: {exc}") from exc


# ------------------------------------------------------------------------- COPY text, made early
# The loader's workers write index rows as COPY text themselves (PostgreSQL's text format): the
# parent then hands the database bytes instead of formatting some forty rows a resource one
# `write_row` at a time, which with the tuples' unpickling and their garbage was a third of its
# CPU. A row's line leaves out its first column, `rid`, which only the parent knows: each line
# starts with the tab that follows it (`with_rid` puts it in). Values are formatted as psycopg
# formats them for a COPY, so what is stored does not depend on who formatted it.

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape_text(value: str) -> str:
    """A text value as a COPY text field."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_ESCAPES)
    return value


_FORMATS: dict[type, Callable[[Any], str]] = {
    str: escape_text,
    bool: lambda v: "t" if v else "f",
    int: str,
    float: str,  # what psycopg sends: repr, 'inf' and 'nan' included, which PostgreSQL reads
    datetime: str,
}


def copy_field(value: Any) -> str:
    """One value as a field of a COPY text line (NULL: \\N)."""
    if value is None:
        return "\\N"
    try:
        return _FORMATS[value.__class__](value)
    except KeyError:
        raise TypeError(f"no COPY text form for {type(value).__name__}") from None


def copy_lines_without_rid(rows: Sequence[Row]) -> bytes:
    """COPY text lines of `rows` (tuples of every column but the leading `rid`), each starting
    with the tab that follows `rid`."""
    return "".join(["\t" + "\t".join([copy_field(v) for v in row]) + "\n" for row in rows]).encode()


def with_rid(rid: int, lines: bytes) -> bytes:
    """`copy_lines_without_rid`'s lines with `rid` in front of each. A raw newline followed by a
    tab can only start a line: inside a field both are escaped."""
    if not lines:
        return b""
    head = b"%d" % rid
    return head + lines.replace(b"\n\t", b"\n" + head + b"\t")


def copy_text(conn: Connection, table: Table, columns: Sequence[str], data: bytes) -> None:
    """COPY lines already formatted (PostgreSQL only), in the caller's transaction."""
    if not data:
        return
    raw = conn.connection.driver_connection
    try:
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            copy.write(data)
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"Some rows of {table.name} already exist: {exc}") from exc


def _date_processor(conn: Connection, table: Table, name: str) -> Callable[[Any], Any] | None:
    """SQLite keeps dates as text and compares them as text, so every date must be written in
    the one fixed-width form SQLAlchemy binds in queries ('2026-07-03 00:00:00.000000').

    The generic DateTime type has no processor: only its SQLite implementation has. Without it
    the driver wrote '2026-07-03 00:00:00' for midnight, which sorts below the bound
    '2026-07-03 00:00:00.000000': a search for that day found nothing, and `lt` took it in."""
    column_type = table.c[name].type
    if column_type.python_type is not datetime:
        return None
    return column_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)


def allocate_rids(conn: Connection, count: int) -> list[int]:
    """Reserve `count` new resource row ids, so rows can be copied in with their ids.

    PostgreSQL takes them from the column's sequence (safe beside concurrent writers); SQLite
    continues after the largest id, which is safe because writers hold the database lock.
    """
    if count <= 0:
        return []
    if conn.dialect.name == "postgresql":
        result = conn.execute(
            text("SELECT nextval(pg_get_serial_sequence('resource', 'rid')) FROM generate_series(1, :n)"),
            {"n": count},
        )
        return [r for (r,) in result]
    start = int(conn.execute(text("SELECT coalesce(max(rid), 0) FROM resource")).scalar_one()) + 1
    return list(range(start, start + count))


def refresh_statistics(engine: Engine) -> None:
    """After a load: fresh planner statistics of every table a load writes, and on PostgreSQL
    the visibility map.

    Until VACUUM marks the new pages all-visible, PostgreSQL cannot answer from an index alone
    and prices index scans as if each row needed a heap visit; it then reads a type's first
    page of results by walking the primary key past every other type (15 ms against 0.3 ms
    at 100k resources). Autovacuum would get there, minutes later.
    """
    if engine.dialect.name == "postgresql":
        autocommit = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        with autocommit as conn, unbounded_statements(conn):
            conn.execute(text("VACUUM (ANALYZE) resource"))
            # change_log too: a load adds a row per resource, and without statistics the planner
            # takes it for a few rows and reads a history page by sorting them all (100 ms a
            # page at 100k against 10 ms).
            for table in (*INDEX_TABLES, resource_version, entry_access, structure_territory, code_closure, change_log):
                conn.execute(text(f"VACUUM (ANALYZE) {table.name}"))
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA optimize")


def analyze_resources(conn: Connection) -> None:
    """ANALYZE the resource table inside the loading transaction (PostgreSQL sees its own rows).

    Without statistics the planner takes `res_id IN (500 ids)` for unselective (200 distinct
    values by default) and scans the table for every existence check of the loader: 275
    resources/s instead of about 900 on a fresh database. Once analysed, ids are known to be
    unique and the check uses the (res_type, res_id) index, however large the table grows."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("ANALYZE resource"))
