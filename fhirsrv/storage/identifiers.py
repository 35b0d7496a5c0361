"""The rows of `resource_identifier`: which live resource holds each business identifier.

Which identifiers are held, and when they may change, is decided above
(fhirsrv/interactions/identifiers.py); this module keeps the rows. A look before the insert
names the clash in the ordinary case, but it is the primary key that holds against concurrent
writers: on PostgreSQL the second insert of a key waits for the first writer's transaction, then
fails if it committed, so two creates of one identifier never both succeed (SQLite has one
writer at a time). Keys are inserted in one order (type, digest), so two writers claiming
several keys wait for each other instead of deadlocking.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from fhirsrv.storage.schema import resource_identifier, server_state

ri = resource_identifier.c
Key = tuple[str, str]  # (system, value)
# server_state key: the identifier prefix the table was filled for (see the 0010 migration).
FILLED_FOR = "resource_identifier.filled_for"


def digest(system: str, value: str) -> str:
    """The row key of an identifier: fixed length whatever the identifier's, unambiguous."""
    return hashlib.sha256(orjson.dumps([system, value])).hexdigest()


@dataclass(frozen=True)
class Claim:
    rid: int
    res_type: str
    system: str
    value: str

    @property
    def key(self) -> Key:
        return (self.system, self.value)

    def row(self) -> dict[str, object]:
        return {
            "res_type": self.res_type,
            "digest": digest(self.system, self.value),
            "rid": self.rid,
            "system": self.system,
            "value": self.value,
        }


class Clash(Exception):
    """A claimed identifier is held by another live resource of the type (`holder`, its rid;
    None when the holder could not be found again)."""

    def __init__(self, claim: Claim, holder: int | None) -> None:
        super().__init__(f"{claim.res_type} {claim.system}|{claim.value}")
        self.claim = claim
        self.holder = holder


def held(conn: Connection, rid: int) -> set[Key]:
    """The identifiers this resource holds."""
    return {(s, v) for s, v in conn.execute(select(ri.system, ri.value).where(ri.rid == rid))}


def holders(conn: Connection, res_type: str, keys: Iterable[Key]) -> dict[Key, int]:
    """Which of these identifiers a resource of the type holds, and its rid."""
    by_digest = {digest(*k): k for k in keys}
    digests = sorted(by_digest)
    found: dict[Key, int] = {}
    for start in range(0, len(digests), 500):
        rows = conn.execute(
            select(ri.digest, ri.rid).where(ri.res_type == res_type, ri.digest.in_(digests[start : start + 500]))
        )
        found.update({by_digest[d]: rid for d, rid in rows})
    return found


def release(conn: Connection, rid: int, keys: Iterable[Key] | None = None) -> None:
    """Give up these identifiers of the resource (all of them when `keys` is None)."""
    statement = delete(resource_identifier).where(ri.rid == rid)
    if keys is not None:
        digests = sorted(digest(*k) for k in keys)
        if not digests:
            return
        statement = statement.where(ri.digest.in_(digests))
    conn.execute(statement)


def claim(conn: Connection, claims: Sequence[Claim]) -> None:
    """Hold these identifiers; raises Clash, inserting nothing, when another resource holds one
    or two of `claims` name one identifier for two resources.

    A clash the first look misses is a concurrent writer's: its row becomes visible when it
    commits, which is when our insert fails, so the second look finds it."""
    if not claims:
        return
    _check(conn, claims)
    ordered = sorted(claims, key=lambda c: (c.res_type, digest(c.system, c.value)))
    try:
        with conn.begin_nested():
            conn.execute(insert(resource_identifier), [c.row() for c in ordered])
    except IntegrityError as exc:
        _check(conn, claims)
        raise Clash(ordered[0], None) from exc


def _check(conn: Connection, claims: Sequence[Claim]) -> None:
    by_type: dict[str, list[Claim]] = {}
    within: dict[tuple[str, Key], int] = {}
    for c in claims:
        first = within.setdefault((c.res_type, c.key), c.rid)
        if first != c.rid:
            raise Clash(c, first)
        by_type.setdefault(c.res_type, []).append(c)
    for res_type, group in by_type.items():
        found = holders(conn, res_type, [c.key for c in group])
        for c in group:
            holder = found.get(c.key, c.rid)
            if holder != c.rid:
                raise Clash(c, holder)


def filled_for(conn: Connection) -> str | None:
    row = conn.execute(select(server_state.c.value).where(server_state.c.key == FILLED_FOR)).first()
    return row[0] if row else None


def refill(conn: Connection, claims: Sequence[Claim], prefix: str) -> None:
    """Replace every row by `claims` (free of clashes), and remember the prefix they follow."""
    conn.execute(delete(resource_identifier))
    rows = [c.row() for c in claims]
    for start in range(0, len(rows), 1000):
        conn.execute(insert(resource_identifier), rows[start : start + 1000])
    if filled_for(conn) is None:
        conn.execute(insert(server_state).values(key=FILLED_FOR, value=prefix))
    else:
        conn.execute(update(server_state).where(server_state.c.key == FILLED_FOR).values(value=prefix))
