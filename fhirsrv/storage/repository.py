"""Versioned resource repository: the only code that writes `resource` and `resource_version`.

The server owns `id`, `meta.versionId` and `meta.lastUpdated`: they are stamped here, into the
JSON that is stored, so a read sends the stored text as it is. Updates are optimistic:
`UPDATE ... WHERE version_id = :expected` and a zero row count means another writer got there
first, which is how two concurrent If-Match updates can never both succeed, on either database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from fhirsrv.errors import Conflict, PreconditionFailed
from fhirsrv.storage import bulk, changes
from fhirsrv.storage.jsonfmt import dumps, format_instant, later_than, utcnow
from fhirsrv.storage.rawread import RawStatement, fetch_one
from fhirsrv.storage.schema import resource, resource_version


@dataclass(frozen=True)
class StoredResource:
    rid: int
    res_type: str
    res_id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    content: str | None
    method: str = ""

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'


class ConcurrentUpdate(PreconditionFailed):
    """Another transaction changed the resource between our read and our write."""


_CURRENT_COLS = (
    resource.c.rid,
    resource.c.res_type,
    resource.c.res_id,
    resource.c.version_id,
    resource.c.last_updated,
    resource.c.deleted,
    resource.c.content,
)
_VERSION_COLS = (
    resource_version.c.rid,
    resource_version.c.res_type,
    resource_version.c.res_id,
    resource_version.c.version_id,
    resource_version.c.last_updated,
    resource_version.c.deleted,
    resource_version.c.content,
    resource_version.c.method,
)


def _row(row: Any) -> StoredResource:
    return StoredResource(*row)


def stamp(res: dict[str, Any], res_id: str, version_id: int, when: datetime) -> dict[str, Any]:
    """Set the server-owned fields; keeps `resourceType` and `id` first as clients expect."""
    meta = dict(res.get("meta") or {})
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = format_instant(when)
    body = {k: v for k, v in res.items() if k not in ("resourceType", "id", "meta")}
    return {"resourceType": res["resourceType"], "id": res_id, "meta": meta, **body}


# The read by id, built once: a statement object that is reused skips SQLAlchemy's building
# and cache-key work (its key is memoized on the object), a good part of a read's CPU.
_CURRENT_BY_ID = select(*_CURRENT_COLS).where(
    resource.c.res_type == bindparam("res_type"), resource.c.res_id == bindparam("res_id")
)

_CURRENT_BY_RIDS = select(*_CURRENT_COLS).where(resource.c.rid.in_(bindparam("rids", expanding=True)))


def get_current(conn: Connection, res_type: str, res_id: str) -> StoredResource | None:
    row = conn.execute(_CURRENT_BY_ID, {"res_type": res_type, "res_id": res_id}).first()
    return _row(row) if row else None


def current_flagged_query(res_type: str, flag: ColumnElement[bool]) -> Select[Any]:
    """The current version of a `res_type` resource and one condition on its row, its id left
    as the bind parameter `res_id`: a caller that reads many ids with the same condition builds
    this once and runs it with `run_current_flagged`."""
    return select(*_CURRENT_COLS, flag.label("flag")).where(
        resource.c.res_type == res_type, resource.c.res_id == bindparam("res_id")
    )


def run_current_flagged(
    conn: Connection, query: Select[Any], res_id: str
) -> tuple[StoredResource, bool] | None:
    """`query` (current_flagged_query) for one id: the stored resource and the condition's
    value, in one statement (a read by id and the caller's visibility of it: one round trip)."""
    row = conn.execute(query, {"res_id": res_id}).first()
    return (_row(row[:-1]), bool(row[-1])) if row else None


def fetch_current_flagged(
    engine: Engine, statement: RawStatement, res_id: str
) -> tuple[StoredResource, bool] | None:
    """`run_current_flagged` for a statement compiled by `rawread.compile_one`, run on its own
    outside any transaction (storage/rawread.py says why)."""
    row = fetch_one(engine, statement, {"res_id": res_id})
    return (StoredResource(*row[:-1]), bool(row[-1])) if row else None


def get_version(conn: Connection, res_type: str, res_id: str, version_id: int) -> StoredResource | None:
    row = conn.execute(
        select(*_VERSION_COLS).where(
            resource_version.c.res_type == res_type,
            resource_version.c.res_id == res_id,
            resource_version.c.version_id == version_id,
        )
    ).first()
    return _row(row) if row else None


def get_many(
    conn: Connection, rids: Sequence[int], where: ColumnElement[bool] | None = None
) -> list[StoredResource]:
    """Current versions for a list of row ids, in the order asked (one query, no N+1); `where`:
    a further condition on the rows (a caller's read scope), checked in the same query."""
    if not rids:
        return []
    if where is None:  # a page of search results: the statement built once
        rows = conn.execute(_CURRENT_BY_RIDS, {"rids": list(rids)}).all()
    else:
        rows = conn.execute(select(*_CURRENT_COLS).where(resource.c.rid.in_(list(rids)), where)).all()
    by_rid = {r.rid: _row(r) for r in rows}
    return [by_rid[rid] for rid in rids if rid in by_rid]


def get_by_keys(
    conn: Connection,
    keys: Iterable[tuple[str, str]],
    where: Callable[[str], ColumnElement[bool] | None] | None = None,
) -> dict[tuple[str, str], StoredResource]:
    """Current versions of (type, id) pairs: one `res_id IN (...)` query per type and 500 ids;
    `where(type)`: a further condition on that type's rows, checked in the same query."""
    by_type: dict[str, set[str]] = {}
    for res_type, res_id in keys:
        by_type.setdefault(res_type, set()).add(res_id)
    found: dict[tuple[str, str], StoredResource] = {}
    for res_type, id_set in by_type.items():
        ids = sorted(id_set)
        condition = None if where is None else where(res_type)
        for start in range(0, len(ids), 500):
            query = select(*_CURRENT_COLS).where(
                resource.c.res_type == res_type, resource.c.res_id.in_(ids[start : start + 500])
            )
            for row in conn.execute(query if condition is None else query.where(condition)):
                found[(row.res_type, row.res_id)] = _row(row)
    return found


def _write_version(conn: Connection, stored: StoredResource) -> None:
    if stored.version_id == 1:
        changes.note_created(conn, (stored.rid,))
    else:
        changes.note_version(conn, stored.rid, stored.version_id)
    conn.execute(
        insert(resource_version).values(
            rid=stored.rid,
            version_id=stored.version_id,
            res_type=stored.res_type,
            res_id=stored.res_id,
            last_updated=stored.last_updated,
            deleted=stored.deleted,
            method=stored.method,
            content=stored.content,
        )
    )


def create(conn: Connection, res: dict[str, Any], res_id: str, method: str = "create") -> StoredResource:
    """Insert version 1 of a new (type, id); Conflict if the id is already taken."""
    now = utcnow()
    body = stamp(res, res_id, 1, now)
    content = dumps(body)
    try:
        with conn.begin_nested():
            rid = conn.execute(
                insert(resource)
                .values(
                    res_type=res["resourceType"],
                    res_id=res_id,
                    version_id=1,
                    last_updated=now,
                    deleted=False,
                    content=content,
                )
                .returning(resource.c.rid)
            ).scalar_one()
    except IntegrityError as exc:
        raise Conflict(f"{res['resourceType']}/{res_id} already exists") from exc
    stored = StoredResource(rid, res["resourceType"], res_id, 1, now, False, content, method)
    _write_version(conn, stored)
    return stored


def replace(
    conn: Connection, current: StoredResource, res: dict[str, Any] | None, method: str
) -> StoredResource:
    """Write the next version of `current` (res=None writes a deletion marker)."""
    now = later_than(current.last_updated, utcnow())
    version_id = current.version_id + 1
    content = dumps(stamp(res, current.res_id, version_id, now)) if res is not None else None
    result = conn.execute(
        update(resource)
        .where(resource.c.rid == current.rid, resource.c.version_id == current.version_id)
        .values(version_id=version_id, last_updated=now, deleted=res is None, content=content)
    )
    if result.rowcount != 1:
        raise ConcurrentUpdate(
            f"{current.res_type}/{current.res_id} was changed by another request "
            f"(version {current.version_id} is no longer current); read it again and retry"
        )
    stored = StoredResource(
        current.rid, current.res_type, current.res_id, version_id, now, res is None, content, method
    )
    _write_version(conn, stored)
    return stored


@dataclass(frozen=True)
class HistoryCursor:
    """Position after the last entry of a history page: (last_updated, rid, version_id)."""

    last_updated: datetime
    rid: int
    version_id: int


def history(
    conn: Connection,
    *,
    res_type: str | None = None,
    res_id: str | None = None,
    types: Sequence[str] | None = None,
    since: datetime | None = None,
    at: datetime | None = None,
    after: HistoryCursor | None = None,
    limit: int = 20,
    where: Sequence[ColumnElement[bool]] = (),
) -> list[StoredResource]:
    """Versions newest first; keyset paging so a page never shifts when writes happen.

    `where`: further conditions on the versions' `rid` (the caller's read scope)."""
    rv = resource_version.c
    query = select(*_VERSION_COLS).where(*where)
    if res_type is not None:
        query = query.where(rv.res_type == res_type)
    if types is not None:
        query = query.where(rv.res_type.in_(list(types)))
    if res_id is not None:
        query = query.where(rv.res_id == res_id)
    if since is not None:
        query = query.where(rv.last_updated >= since)
    if at is not None:
        # The version of each resource that was current at `at`.
        latest = (
            select(rv.rid, func.max(rv.version_id).label("vid"))
            .where(rv.last_updated <= at)
            .group_by(rv.rid)
            .subquery()
        )
        query = query.join(latest, and_(latest.c.rid == rv.rid, latest.c.vid == rv.version_id))
    if after is not None:
        query = query.where(
            or_(
                rv.last_updated < after.last_updated,
                and_(rv.last_updated == after.last_updated, rv.rid < after.rid),
                and_(
                    rv.last_updated == after.last_updated,
                    rv.rid == after.rid,
                    rv.version_id < after.version_id,
                ),
            )
        )
    query = query.order_by(rv.last_updated.desc(), rv.rid.desc(), rv.version_id.desc()).limit(limit)
    return [_row(r) for r in conn.execute(query)]


def count_history(
    conn: Connection, *, res_type: str | None = None, res_id: str | None = None, since: datetime | None = None
) -> int:
    rv = resource_version.c
    query = select(func.count()).select_from(resource_version)
    if res_type is not None:
        query = query.where(rv.res_type == res_type)
    if res_id is not None:
        query = query.where(rv.res_id == res_id)
    if since is not None:
        query = query.where(rv.last_updated >= since)
    return int(conn.execute(query).scalar_one())


def is_empty(conn: Connection) -> bool:
    return conn.execute(select(resource.c.rid).limit(1)).first() is None


def keys_of_types(conn: Connection, res_types: Sequence[str]) -> set[tuple[str, str]]:
    """(type, id) of every resource of these types the database holds, deleted ones included."""
    query = select(resource.c.res_type, resource.c.res_id).where(resource.c.res_type.in_(res_types))
    return {(t, i) for t, i in conn.execute(query)}


def create_many(conn: Connection, items: Sequence[tuple[dict[str, Any], str]]) -> list[StoredResource]:
    """Insert version 1 of many new resources in two multi-row statements (the bulk load path).

    Row ids come back through RETURNING in insertion order ("insertmanyvalues" on both
    back-ends), so the caller can index them in bulk too. Any id already taken fails the
    whole batch with Conflict, like `create` does for one.
    """
    if not items:
        return []
    now = utcnow()
    rows = []
    for res, res_id in items:
        rows.append(
            {
                "res_type": res["resourceType"],
                "res_id": res_id,
                "version_id": 1,
                "last_updated": now,
                "deleted": False,
                "content": dumps(stamp(res, res_id, 1, now)),
            }
        )
    try:
        with conn.begin_nested():
            result = conn.execute(
                insert(resource).returning(resource.c.rid, sort_by_parameter_order=True), rows
            )
            rids = [r.rid for r in result]
    except IntegrityError as exc:
        raise Conflict("Some of these resources already exist (same type and id)") from exc
    stored = [
        StoredResource(rid, row["res_type"], row["res_id"], 1, now, False, row["content"], "create")
        for rid, row in zip(rids, rows, strict=True)
    ]
    changes.note_created(conn, rids)
    conn.execute(
        insert(resource_version),
        [
            {
                "rid": s.rid,
                "version_id": 1,
                "res_type": s.res_type,
                "res_id": s.res_id,
                "last_updated": now,
                "deleted": False,
                "method": "create",
                "content": s.content,
            }
            for s in stored
        ],
    )
    return stored


def insert_new(
    conn: Connection, items: Sequence[tuple[str, str, str]], when: datetime, *, visibility: str
) -> list[StoredResource]:
    """Insert version 1 of resources already stamped and serialised: (type, id, content).

    The bulk loader's path: row ids are reserved first, then both tables are written at driver
    speed (COPY on PostgreSQL). An id already taken raises Conflict, like `create`.
    `visibility`: the rows' first `resource.visibility` (schema.py), which the caller's access
    facts then correct in the same transaction.
    """
    rids = bulk.allocate_rids(conn, len(items))
    changes.note_created(conn, rids)
    bulk.insert_tuples(
        conn,
        resource,
        [(rid, t, i, 1, when, False, c, visibility) for rid, (t, i, c) in zip(rids, items, strict=True)],
        ("rid", "res_type", "res_id", "version_id", "last_updated", "deleted", "content", "visibility"),
    )
    bulk.insert_tuples(
        conn,
        resource_version,
        [(rid, 1, t, i, when, False, "create", c) for rid, (t, i, c) in zip(rids, items, strict=True)],
        ("rid", "version_id", "res_type", "res_id", "last_updated", "deleted", "method", "content"),
    )
    return [
        StoredResource(rid, t, i, 1, when, False, c, "create")
        for rid, (t, i, c) in zip(rids, items, strict=True)
    ]
