"""Which rules built a database's search index rows, so that an upgrade knows when to rebuild them.

Index rows are computed at write time (extract.py) from the search parameters the server ships.
When those change (a parameter added, an expression or the extraction changed), rows written
before are not what a write would write now: a database of the first release, which shipped no
SOS parameter, finds nothing by `sos-category` until it is reindexed. A fingerprint of the
rules is kept in `server_state`; `fhirsrv db upgrade` reindexes when it differs (or is missing
on a database holding resources), and every other start says so in its log.
"""

from __future__ import annotations

import hashlib

import orjson
from sqlalchemy import Connection, delete, insert, select

from fhirsrv.search.registry import SearchParamRegistry
from fhirsrv.storage.schema import resource, server_state

# Raise it whenever extract.py (or what it calls: normalize.py, fit.py, registry.py's compiled
# walks) writes other rows for the same definitions, so that every database is reindexed once by
# `fhirsrv db upgrade`. 2: the département of a structure with several addresses (registry.py).
EXTRACTION_VERSION = 2
STATE_KEY = "search_index.rules"
# Types the server started to serve after the version before this one (resource_types.py):
# their search parameters joined the rules, but a database written before holds none of them,
# so its rows are still exactly what this version writes (see `adopt_added_types`).
ADDED_TYPES = ("Subscription",)


def fingerprint(registry: SearchParamRegistry, without: tuple[str, ...] = ()) -> str:
    """A digest of what decides the index rows: every indexed definition and the extraction
    (`without`: leaving these types' definitions out)."""
    definitions = sorted(
        (res_type, d.code, d.type, d.expression, list(d.target), d.via or "")
        for res_type in sorted(registry.known_types - set(without))
        for d in registry.for_type(res_type)
    )
    return hashlib.sha256(orjson.dumps([EXTRACTION_VERSION, definitions])).hexdigest()


def recorded(conn: Connection) -> str | None:
    """The fingerprint of the rules the rows were last built by (None: never recorded)."""
    return conn.execute(select(server_state.c.value).where(server_state.c.key == STATE_KEY)).scalar()


def record(conn: Connection, value: str) -> None:
    conn.execute(delete(server_state).where(server_state.c.key == STATE_KEY))
    conn.execute(insert(server_state).values(key=STATE_KEY, value=value))


def stamp_if_empty(conn: Connection, value: str) -> None:
    """A database without resources has no rows to be wrong: it is stamped with the rules of
    the code that will write them (called at every start, where a new database is created)."""
    if recorded(conn) is None and conn.execute(select(resource.c.rid).limit(1)).first() is None:
        record(conn, value)


def adopt_added_types(conn: Connection, value: str, before: str) -> None:
    """A database indexed by the rules of the version before ADDED_TYPES (`before`: this
    version's rules without those types) and holding none of them is indexed as this version
    would: recorded so, instead of every row being rebuilt by the next `fhirsrv db upgrade`
    (a quarter of an hour at a million resources) for types it has no rows of."""
    if recorded(conn) != before or before == value:
        return
    holds = conn.execute(select(resource.c.rid).where(resource.c.res_type.in_(ADDED_TYPES)).limit(1)).first()
    if holds is None:
        record(conn, value)


def outdated(conn: Connection, value: str) -> bool:
    """Whether the rows were built by other rules than `value`, or by unknown ones (a database
    older than this record, which holds resources)."""
    return recorded(conn) != value
