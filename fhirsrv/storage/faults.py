"""Which database errors mean "unavailable or too slow, try again later" rather than a bug.

The API answers those with 503 and `Retry-After` and the CLI with one line and exit code 1;
everything else stays an internal error (500), so a wrong query is never disguised as a
passing outage. The reasons are fixed phrases: a driver's message may quote a statement and
its parameters (a person's name in a search), which must reach neither a client nor a log.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import psycopg
from sqlalchemy import exc as sa_exc

# Seconds a client is asked to wait before retrying (an outage's usual scale, not a promise).
RETRY_AFTER_SECONDS = 10

# sqlite3 raises OperationalError for a missing table or an SQL syntax error too: only these
# messages are about the database being busy or out of reach.
_SQLITE_UNAVAILABLE = {
    "database is locked": "the database is busy (locked by another writer)",
    "database table is locked": "the database is busy (locked by another writer)",
    "unable to open database file": "the database file cannot be opened",
    "disk i/o error": "the database file cannot be read or written",
    "database or disk is full": "the database's disk is full",
    "interrupted": "the statement took longer than the statement timeout",
}


@dataclass(frozen=True)
class Unavailable:
    """Why the database could not serve, in words safe to show anyone."""

    reason: str
    timed_out: bool = False


def unavailability(error: BaseException) -> Unavailable | None:
    """The database fault behind `error`, or None when `error` is not one (a bug: 500)."""
    if isinstance(error, sa_exc.TimeoutError):  # the pool: every connection in use
        return Unavailable("no database connection became free in time (the server is overloaded)", True)
    if not isinstance(error, sa_exc.DBAPIError):
        return None
    original = error.orig
    if isinstance(original, psycopg.errors.QueryCanceled):
        return Unavailable("the statement took longer than the statement timeout", True)
    if isinstance(original, psycopg.errors.LockNotAvailable):
        return Unavailable("the database is busy (a lock was not granted in time)", True)
    if isinstance(original, psycopg.errors.TransactionRollback):
        return Unavailable("the database gave up the transaction (a conflicting one ran); retry it")
    if isinstance(original, psycopg.OperationalError | psycopg.InterfaceError):
        # No SQLSTATE: the connection itself failed (refused, timed out, dropped).
        if "timeout" in str(original).lower():
            return Unavailable("the database did not answer in time", True)
        return Unavailable("the database cannot be reached")
    if isinstance(original, sqlite3.OperationalError):
        message = str(original).lower()
        for start, reason in _SQLITE_UNAVAILABLE.items():
            if message.startswith(start):
                return Unavailable(reason, start in ("database is locked", "interrupted"))
    if error.connection_invalidated:
        return Unavailable("the connection to the database was lost")
    return None
