"""One-row reads run straight on the pool's DBAPI connection (PostgreSQL): the read by id.

Why: SQLAlchemy Core's execution of a statement (a Connection, its execution context, the
cursor's description, the result and its row objects, the reset when the connection goes back)
cost an anonymous read by id about 0.13 ms of CPU, more than the driver's own work and a fifth
of the whole request. The statement is still the one SQLAlchemy builds: compiled once, by the
engine's dialect, to its SQL text and its bound values (`compile_one`); only the execution
machinery is left out. What that machinery does for this project is kept, here:
- the connection comes from the engine's pool and goes back to it (the pool's checkout and
  checkin events: the metrics' pool gauges, the change log's bookkeeping);
- the statement runs outside any transaction block, as `one_statement_read` runs it (one
  statement sees one snapshot of its own), and the connection is handed back as it was found;
- the engine's `before_cursor_execute` and `after_cursor_execute` listeners are called, so
  the check that the requester is still there (engine.py) runs before it, and whatever
  watches statements sees this one; they are given no SQLAlchemy Connection (None), there is
  none;
- a driver error reaches the caller as SQLAlchemy's DBAPIError (so it is answered as any
  database fault, storage/faults.py), and a connection it found dead is invalidated.

SQLite, another driver, or a statement whose values or columns need SQLAlchemy's conversions:
`compile_one` answers None and the caller runs the statement the usual way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.exc import DBAPIError


@dataclass(frozen=True)
class RawStatement:
    """A SELECT compiled for one engine: its SQL text and the values bound at compile time;
    those left to each run (None here) are given to `fetch_one`."""

    sql: str
    params: Mapping[str, Any]


def compile_one(engine: Engine, query: Select[Any], per_run: tuple[str, ...]) -> RawStatement | None:
    """`query` as the engine's driver runs it, its bind parameters `per_run` left to each run;
    None when it cannot run here as it is (not psycopg; a value or a column SQLAlchemy would
    convert on the way)."""
    dialect = engine.dialect
    if dialect.name != "postgresql" or dialect.driver != "psycopg":
        return None
    compiled = query.compile(dialect=dialect)
    if compiled.positional:
        return None
    # The lists of an IN written out now, with their values, as SQLAlchemy does at each run.
    expanded = compiled.construct_expanded_state({name: None for name in per_run})
    if expanded.processors:
        return None
    for column in query.selected_columns:
        if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None:
            return None
    return RawStatement(expanded.statement, dict(expanded.parameters))


def fetch_one(engine: Engine, statement: RawStatement, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The first row of `statement` run with `values`, outside any transaction block."""
    params = {**statement.params, **values}
    dispatch = engine.dispatch
    error = engine.dialect.loaded_dbapi.Error
    try:
        fairy = engine.raw_connection()
    except error as exc:  # no connection could be opened (SQLAlchemy's connect() wraps it so)
        raise DBAPIError.instance(None, None, exc, error, dialect=engine.dialect) from exc
    connection = fairy.driver_connection
    cursor = None
    try:
        cursor = connection.cursor()
        if dispatch.before_cursor_execute:
            dispatch.before_cursor_execute(None, cursor, statement.sql, params, None, False)
        connection.autocommit = True
        try:
            cursor.execute(statement.sql, params)
            row: tuple[Any, ...] | None = cursor.fetchone()
            cursor.close()
        finally:
            connection.autocommit = False
        if dispatch.after_cursor_execute:
            dispatch.after_cursor_execute(None, cursor, statement.sql, params, None, False)
    except error as exc:
        # A connection that died, or that could not be put back as it was found: never reused.
        gone = engine.dialect.is_disconnect(exc, connection, cursor) or connection.autocommit
        if gone:
            fairy.invalidate(exc)
        raise DBAPIError.instance(
            statement.sql,
            params,
            exc,
            error,
            hide_parameters=engine.hide_parameters,
            connection_invalidated=bool(gone),
            dialect=engine.dialect,
        ) from exc
    finally:
        fairy.close()
    return row
