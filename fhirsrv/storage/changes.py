"""The change log: every change to an entry, numbered in the order the changes committed.

A syncing client (`_history`), a subscription's delivery loop and a bulk export all ask "what
changed after the last change I saw?". Timestamps cannot answer it on PostgreSQL: a write that
stamped its version at 10:00:00.100 may commit after one stamped 10:00:00.200, and a client
that already read past 10:00:00.200 would never see it. So the rows of `change_log`
(schema.py) are written at the very end of the write's own transaction, after its last
statement, under one transaction-level advisory lock held until the commit: a transaction gets
its sequence numbers only when nothing of it remains to run but the commit, and the next one
waits for that commit before numbering its own. Numbers therefore grow in commit order, and a
reader that has seen number N has seen every change numbered below it. SQLite has one writer at
a time, which gives the same order without a lock.

Changes are noted while the transaction runs (`note_*`, from storage/repository.py and the
access facts) and written by the connection's `commit` event (`watch`), so no path that writes
resources can forget them, whatever opened its transaction. A rolled-back transaction drops its
notes; a rolled-back savepoint's notes find no row to describe and write nothing.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    String,
    and_,
    case,
    event,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from fhirsrv.storage.jsonfmt import utcnow
from fhirsrv.storage.schema import change_log, resource, resource_version

# PostgreSQL advisory lock key of the change log (with the schema's hash, as storage/locks.py).
LOCK_KEY = 7_416
_NOTES = "fhirsrv_change_notes"
_CHUNK = 2_000
_COLUMNS = ("rid", "res_type", "res_id", "version_id", "new_version", "visibility", "previous_visibility", "at")


@dataclass
class _Notes:
    """What one transaction changed, until it commits."""

    created: array = field(default_factory=lambda: array("q"))  # rids of new entries (version 1)
    versions: set[tuple[int, int]] = field(default_factory=set)  # (rid, version_id) of later versions
    visibility: set[int] = field(default_factory=set)  # rids whose visibility changed

    def __bool__(self) -> bool:
        return bool(self.created or self.versions or self.visibility)


@dataclass(frozen=True)
class Change:
    seq: int
    rid: int
    res_type: str
    res_id: str
    version_id: int
    new_version: bool
    visibility: str
    previous_visibility: str | None
    at: datetime


def _notes(conn: Connection) -> _Notes:
    notes = conn.info.get(_NOTES)
    if notes is None:
        notes = conn.info[_NOTES] = _Notes()
    return notes


def note_created(conn: Connection, rids: Iterable[int]) -> None:
    """New entries (their version 1) written in this transaction."""
    _notes(conn).created.extend(rids)


def note_version(conn: Connection, rid: int, version_id: int) -> None:
    """A later version (update, patch, deletion) of an entry written in this transaction."""
    _notes(conn).versions.add((rid, version_id))


def note_visibility(conn: Connection, rids: Iterable[int]) -> None:
    """Entries whose `resource.visibility` this transaction changed without a new version."""
    _notes(conn).visibility.update(rids)


def discard_notes(conn: Connection) -> None:
    """Forget what this transaction noted: it writes as a server older than the change log
    did (tests of migrations), and the migration that creates the log numbers it."""
    conn.info.pop(_NOTES, None)


def watch(engine: Engine) -> None:
    """Write each transaction's notes when it commits; forget them when it does not."""

    @event.listens_for(engine, "commit")
    def _on_commit(conn: Connection) -> None:
        notes = conn.info.pop(_NOTES, None)
        if notes:
            _write(conn, notes)

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn: Connection) -> None:
        # A connection the database dropped has no info to reach; its check-in forgets.
        if not conn.invalidated:
            conn.info.pop(_NOTES, None)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info.pop(_NOTES, None)


def _write(conn: Connection, notes: _Notes) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:k, hashtext(current_schema()))"), {"k": LOCK_KEY}
        )
    # Under the lock: no later commit can hold an earlier instant (clocks may step back).
    last = conn.execute(select(func.max(change_log.c.at))).scalar()
    now = utcnow()
    at = max(now, last) if last is not None else now
    v, r = resource_version.c, resource.c
    for chunk in _chunks(sorted(notes.created)):
        _insert(
            conn,
            select(v.rid, v.res_type, v.res_id, v.version_id, true(), r.visibility, literal(None, String), literal(at, DateTime))
            .join_from(resource_version, resource, r.rid == v.rid)
            .where(v.rid.in_(chunk), v.version_id == 1)
            .order_by(v.rid),
        )
    for chunk in _chunks(sorted(notes.versions)):
        _insert(
            conn,
            select(v.rid, v.res_type, v.res_id, v.version_id, true(), r.visibility, _previous(v.rid), literal(at, DateTime))
            .join_from(resource_version, resource, r.rid == v.rid)
            .where(tuple_(v.rid, v.version_id).in_(chunk))
            .order_by(v.rid, v.version_id),
        )
    versioned = {rid for rid, _ in notes.versions} | set(notes.created)
    alone = sorted(notes.visibility - versioned)
    for chunk in _chunks(alone):
        previous = _previous(r.rid)
        _insert(
            conn,
            select(r.rid, r.res_type, r.res_id, r.version_id, literal(False), r.visibility, previous, literal(at, DateTime))
            .where(r.rid.in_(chunk), or_(previous.is_(None), previous != r.visibility))
            .order_by(r.rid),
        )


def forget_shown(conn: Connection, rids: list[int]) -> None:
    """The past changes of these entries recorded as `retired` become `hidden`, all but each
    entry's last: entries judged never listed (access/facts_store.py `hide_never_listed`),
    whose content a reader syncing from an early `_since` would otherwise still get from the
    rows written under the old rule. The last change, their removal, stays, so a reader that
    synced them before is told they left."""
    later = change_log.alias("later")
    has_later = exists(select(later.c.seq).where(later.c.rid == change_log.c.rid, later.c.seq > change_log.c.seq))
    for chunk in _chunks(sorted(rids)):
        for column in (change_log.c.visibility, change_log.c.previous_visibility):
            conn.execute(
                update(change_log)
                .where(change_log.c.rid.in_(chunk), column == "retired", has_later)
                .values({column.key: "hidden"})
            )


def _previous(rid: ColumnElement[int]) -> ColumnElement[str]:
    """The entry's visibility after its last change before this transaction."""
    earlier = change_log.alias("earlier")
    return (
        select(earlier.c.visibility)
        .where(earlier.c.rid == rid)
        .order_by(earlier.c.seq.desc())
        .limit(1)
        .scalar_subquery()
    )


def _insert(conn: Connection, rows: object) -> None:
    conn.execute(insert(change_log).from_select(_COLUMNS, rows))  # type: ignore[arg-type]


def _chunks(items: list) -> Iterator[list]:  # type: ignore[type-arg]
    it = iter(items)
    while chunk := list(islice(it, _CHUNK)):
        yield chunk


# ------------------------------------------------------------------------------------ reading
def after(
    conn: Connection,
    seq: int,
    *,
    limit: int,
    res_types: Iterable[str] | None = None,
    since: datetime | None = None,
    where: Iterable[ColumnElement[bool]] = (),
) -> list[Change]:
    """Changes numbered after `seq`, oldest first (optionally of these types, at or after
    `since`, and matching `where` on `change_log`'s columns)."""
    c = change_log.c
    conditions: list[ColumnElement[bool]] = [c.seq > seq, *where]
    if res_types is not None:
        conditions.append(c.res_type.in_(list(res_types)))
    if since is not None:
        conditions.append(c.at >= since)
    query = select(change_log).where(and_(*conditions)).order_by(c.seq).limit(limit)
    return [Change(**row._mapping) for row in conn.execute(query)]


def last_seq(conn: Connection) -> int:
    """The number of the last committed change (0: none yet)."""
    return int(conn.execute(select(func.coalesce(func.max(change_log.c.seq), 0))).scalar_one())


def tip(conn: Connection) -> tuple[int, datetime | None]:
    """The number of the last committed change and when it committed ((0, None): none yet)."""
    row = conn.execute(select(change_log.c.seq, change_log.c.at).order_by(change_log.c.seq.desc()).limit(1)).first()
    return (int(row.seq), row.at) if row else (0, None)


def first_since(conn: Connection, since: datetime) -> int | None:
    """The number of the first change that committed at or after `since` (None: none did).
    `at` grows with `seq`, so the changes at or after an instant are the ones from this number on."""
    c = change_log.c
    row = conn.execute(select(c.seq).where(c.at >= since).order_by(c.at, c.seq).limit(1)).first()
    return int(row.seq) if row else None


@dataclass(frozen=True)
class Listed:
    """A change as a history lists it: the version it names, or a removal (`removal`: the entry
    left the reader's view; no content)."""

    seq: int
    at: datetime
    rid: int
    res_type: str
    res_id: str
    version_id: int
    removal: bool
    last_updated: datetime
    deleted: bool
    method: str
    content: str | None
    # The entry's visibility now (resource.visibility), for the policy's look at what the
    # reader may read now without another query.
    visibility_now: str


def listed(
    conn: Connection,
    *,
    after: int,
    through: int,
    shown: ColumnElement[bool],
    removal: ColumnElement[bool],
    limit: int,
    newest_first: bool = False,
    res_types: Iterable[str] | None = None,
) -> list[Listed]:
    """The changes numbered in (after, through] that `shown` selects, with their versions, in
    number order (or the reverse); `removal` says which are shown as removals. One statement:
    the version rows are joined by primary key, and a removal's content is never read."""
    c, v = change_log.c, resource_version.c
    entry_now = resource.alias("entry_now")  # an alias: `shown`'s subqueries may read `resource`
    gone = removal.label("removal")
    query = (
        select(
            c.seq, c.at, c.rid, c.res_type, c.res_id, c.version_id, gone, v.last_updated, v.deleted, v.method,
            case((removal, literal(None, String)), else_=v.content).label("content"), entry_now.c.visibility,
        )
        .join_from(change_log, resource_version, and_(v.rid == c.rid, v.version_id == c.version_id))
        .join(entry_now, entry_now.c.rid == c.rid)
        .where(c.seq > after, c.seq <= through, shown)
    )
    if res_types is not None:
        query = query.where(c.res_type.in_(list(res_types)))
    query = query.order_by(c.seq.desc() if newest_first else c.seq).limit(limit)
    return [
        Listed(
            r.seq, r.at, r.rid, r.res_type, r.res_id, r.version_id, bool(r.removal),
            r.last_updated, r.deleted, r.method or "", r.content, r.visibility,
        )  # fmt: skip
        for r in conn.execute(query)
    ]
