"""Rebuilding the search index rows from the stored resources: `fhirsrv reindex`, and
`fhirsrv db upgrade` when the rules that built them are not this version's (search/rules.py).

The rows are rebuilt in one transaction, so searches see the old rows or the new ones, never
half of each; the new token rows start hidden and get their entries' visibility back from the
access facts before it commits (storage/schema.py, `idx_token.public`).
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, text

from fhirsrv.interactions.context import Services
from fhirsrv.search import rules
from fhirsrv.storage.engine import read_transaction, write_transaction
from fhirsrv.storage.schema import entry_access

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key: two processes upgrading one schema at once reindex it once.
REINDEX_LOCK_KEY = 0x5E1D


def reindex(services: Services, res_type: str | None = None) -> int:
    """Rebuild the rows of every live resource (of one type); returns how many were indexed."""
    with write_transaction(services.engine, unbounded=True) as conn:
        _lock(conn)
        return _rebuild(conn, services, res_type)


def reindex_if_outdated(services: Services) -> int | None:
    """Rebuild every row when the database's were built by other rules (None: they were not)."""
    with write_transaction(services.engine, unbounded=True) as conn:
        _lock(conn)
        if not rules.outdated(conn, services.search.rules):
            return None
        log.info("search indexes built by other rules than this version's: rebuilding them")
        return _rebuild(conn, services, None)


def outdated(services: Services) -> bool:
    """Whether the database's index rows were built by other rules than this version's."""
    with read_transaction(services.engine) as conn:
        return rules.outdated(conn, services.search.rules)


def _rebuild(conn: Connection, services: Services, res_type: str | None) -> int:
    count = services.search.reindex(conn, res_type)
    services.policy.facts.mirror(conn, None if res_type is None else entry_access.c.res_type == res_type)
    if res_type is None:
        rules.record(conn, services.search.rules)
    return count


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:k, hashtext(current_schema()))"), {"k": REINDEX_LOCK_KEY}
        )
