"""history at instance, type and system level, with _since, _at, _sort, _count and paging.

Type and system history (`[type]/_history`, `_history?_type=…`) read the change log
(storage/changes.py), the list of every committed change numbered in commit order, so that a
platform can keep a copy of the directory by replaying them:

- Order: with `_since` (or `_sort=_lastUpdated`) oldest first, the order to replay them in;
  without it newest first, as R4 says a history is (`_sort=-_lastUpdated` asks for it with
  `_since` too). Pages follow each other by the change's number, held in a sealed cursor: a
  change committed while a client pages comes on a later page (oldest first) or not at all
  (newest first), never twice, and no change is skipped.
- `_since=T`: the changes that committed at or after T. A change's instant is taken when its
  transaction commits, under the log's lock, so instants grow in commit order: a transaction
  that started earlier and commits later gets a later instant, and a reader never passes over
  a change that was not yet committed when it read.
- Where to resume: every page of an oldest-first history says, in `Bundle.meta.lastUpdated`,
  the commit instant up to which the history is complete for this caller: the last change of
  the page shown to it (on the last page, nothing after it is shown to it). Never the log's own
  last change, which may be one the caller may not see. A client that passes it as its next
  `_since` misses nothing; it may get the change(s) of that very instant again, harmless.
- What each caller sees (the access policy's `scope(principal).changes`, access/visibility.py):
  a history is a listing, like a search. A change of an entry in the caller's view shows the
  version; a change that takes an entry out of its view (delisted, withdrawn, deleted, its
  structure hidden) shows as an entry without a resource, `request.method` DELETE; a change of
  an entry it never saw is not listed. So an anonymous client's replay ends on what anonymous
  search finds, and a partner reader's on what its search finds.

`_at` (the versions current at an instant) and instance history read `resource_version`,
newest first, as before.
"""

from __future__ import annotations

import base64
from datetime import datetime
from urllib.parse import urlencode

import orjson
from sqlalchemy import ColumnElement, and_, or_

from fhirsrv.access.principal import Principal
from fhirsrv.errors import BadRequest, FhirError, NotFound
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.instants import parse_instant
from fhirsrv.interactions.resources import check_id, check_type
from fhirsrv.storage import changes, repository
from fhirsrv.storage.engine import read_transaction
from fhirsrv.storage.jsonfmt import format_instant
from fhirsrv.storage.repository import HistoryCursor, StoredResource
from fhirsrv.storage.schema import change_log, resource_version
from fhirsrv.text import small_natural

_HTTP = {"create": "POST", "update": "PUT", "patch": "PATCH", "delete": "DELETE"}
_STATUS = {"create": "201 Created", "update": "200 OK", "patch": "200 OK", "delete": "204 No Content"}
_KNOWN = {"_since", "_at", "_count", "_cursor", "_sort", "_type", "_format", "_pretty", "_summary", "_elements"}
_OLDEST, _NEWEST = "_lastUpdated", "-_lastUpdated"
# Changes read at least when a page is filled up after some were left out (see `_from_log`).
_REFILL = 64
# A change-log cursor: "log|<order>|<number of the last change of the page>|<instant or ->".
_LOG_CURSOR = "log"


def _encode_cursor(last: StoredResource) -> str:
    raw = f"{last.last_updated.isoformat()}|{last.rid}|{last.version_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(token: str) -> HistoryCursor:
    try:
        if token.startswith(_LOG_CURSOR + "|"):
            raise ValueError("a change-log cursor")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        when, rid, version = raw.split("|")
        return HistoryCursor(datetime.fromisoformat(when), int(rid), int(version))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("_cursor is not a paging token issued by this server for this history") from exc


def _entry(
    info: RequestInfo,
    res_type: str,
    res_id: str,
    version_id: int,
    last_updated: datetime,
    content: str | None,
    method: str,
) -> dict:
    key = f"{res_type}/{res_id}"
    entry: dict = {"fullUrl": f"{info.base_url}/{key}"}
    if content is not None and method != "delete":
        entry["resource"] = orjson.Fragment(content)
    entry["request"] = {"method": _HTTP.get(method, "PUT"), "url": res_type if method == "create" else key}
    entry["response"] = {
        "status": _STATUS.get(method, "200 OK"),
        "etag": f'W/"{version_id}"',
        "lastModified": format_instant(last_updated),
    }
    return entry


def _version_entry(info: RequestInfo, stored: StoredResource) -> dict:
    method = "delete" if stored.deleted else (stored.method or "update")
    return _entry(info, stored.res_type, stored.res_id, stored.version_id, stored.last_updated, stored.content, method)


def _listed_entry(info: RequestInfo, change: changes.Listed) -> dict:
    if change.removal:
        # Out of the caller's view from this change on: as a deletion, dated by the change.
        return _entry(info, change.res_type, change.res_id, change.version_id, change.at, None, "delete")
    method = "delete" if change.deleted else (change.method or "update")
    return _entry(
        info, change.res_type, change.res_id, change.version_id, change.last_updated, change.content, method
    )


def history(
    services: Services,
    info: RequestInfo,
    res_type: str | None,
    res_id: str | None,
    params: list[tuple[str, str]],
) -> Result:
    if res_type is not None:
        check_type(res_type)
    if res_id is not None:
        check_id(res_id)
    args = dict(params)
    unknown = sorted({k for k, _ in params} - _KNOWN)
    if unknown and info.prefer_handling == "strict":
        raise BadRequest(f"Unknown history parameter(s): {', '.join(unknown)}")
    if "_type" in args and res_type is not None:
        raise BadRequest("_type belongs to the system-level history (/_history?_type=…)")
    since = parse_instant(args["_since"], "_since") if "_since" in args else None
    at = parse_instant(args["_at"], "_at", end_of_period=True) if "_at" in args else None
    count = _count(services, args.get("_count"))
    sort = args.get("_sort")
    if sort not in (None, _OLDEST, _NEWEST):
        raise BadRequest(f"_sort of a history is _lastUpdated (oldest first) or -_lastUpdated, not '{sort[:40]}'")
    sealed = services.cursors.open(args["_cursor"]) or "" if "_cursor" in args else None
    principal = info.principal
    policy = services.policy
    if res_type is not None:
        policy.check_read(principal, res_type)
    types = None if res_type is not None else _history_types(services, principal, params)
    if res_id is None and at is None:
        oldest_first = sort == _OLDEST or (sort is None and since is not None)
        shown_types = [res_type] if res_type is not None else (types or [])
        return _from_log(services, info, res_type, shown_types, params, since, count, oldest_first, sealed)
    if sort == _OLDEST:
        raise BadRequest("An instance history, or one at an instant (_at), is newest first (_sort=-_lastUpdated)")
    cursor = _decode_cursor(sealed) if sealed is not None else None
    with read_transaction(services.engine) as conn:
        if res_id is not None:
            # One statement whether the entry exists or is hidden: no timing tells them apart.
            _, seen = policy.read_current(conn, principal, res_type, res_id)
            if not seen:
                raise NotFound(f"{res_type}/{res_id} is not known")
        if res_id is not None and not principal.sees_everything:
            # An entry's history is short: filter all of it, so the total counts what is shown.
            every = repository.history(
                conn, res_type=res_type, res_id=res_id, since=since, at=at, after=cursor, limit=10_000
            )
            shown_all = policy.visible_versions(conn, principal, every)
            page, more = shown_all[:count], len(shown_all) > count
            shown = page
            total: int | None = None if at is not None or cursor is not None else len(shown_all)
        else:
            where = _scope_conditions(services, principal, [res_type] if res_type else types)
            # A history at an instant is filtered after it is read, a chunk at a time until a
            # page and one more are shown or nothing is left: a page never ends early, and a
            # `next` link means a shown version follows, so neither tells of hidden ones.
            kept: list[tuple[StoredResource, StoredResource]] = []
            after = cursor
            while len(kept) <= count:
                rows = repository.history(
                    conn, res_type=res_type, res_id=res_id, types=types, since=since, at=at,
                    after=after, limit=count + 1, where=where,
                )  # fmt: skip
                visible = {(v.rid, v.version_id): v for v in policy.visible_versions(conn, principal, rows)}
                kept += [(r, visible[r.rid, r.version_id]) for r in rows if (r.rid, r.version_id) in visible]
                if len(rows) <= count:
                    break
                after = HistoryCursor(rows[-1].last_updated, rows[-1].rid, rows[-1].version_id)
            total = (
                repository.count_history(conn, res_type=res_type, res_id=res_id, since=since)
                if res_id is not None and at is None
                else None
            )
            more = len(kept) > count
            page = [read for read, _ in kept[:count]]  # where the next page goes on from
            shown = [as_shown for _, as_shown in kept[:count]]
    path = "/".join(p for p in (res_type, res_id, "_history") if p)
    base_query = [(k, v) for k, v in params if k != "_cursor"]
    links = [{"relation": "self", "url": _url(info, path, params)}]
    if more and page:
        links.append(
            {
                "relation": "next",
                "url": _url(
                    info, path, [*base_query, ("_cursor", services.cursors.seal(_encode_cursor(page[-1])) or "")]
                ),
            }
        )
    bundle: dict = {"resourceType": "Bundle", "type": "history"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    bundle["entry"] = [_version_entry(info, s) for s in shown]
    return Result(status=200, resource=bundle)


def _from_log(
    services: Services,
    info: RequestInfo,
    res_type: str | None,
    types: list[str],
    params: list[tuple[str, str]],
    since: datetime | None,
    count: int,
    oldest_first: bool,
    sealed: str | None,
) -> Result:
    """A type or system history page, read from the change log (see the module docstring)."""
    order = "asc" if oldest_first else "desc"
    position, complete = _open_log_cursor(sealed, order) if sealed is not None else (None, None)
    shown, removal = services.policy.scope(info.principal).changes(types, change_log)
    with read_transaction(services.engine) as conn:
        # The log's last change first: every change numbered up to it has committed (numbers
        # are given in commit order), so the page below is complete up to it.
        last, _ = changes.tip(conn)
        start = changes.first_since(conn, since) if since is not None else 1
        after = (start - 1) if start is not None else last
        through = last
        if position is not None and oldest_first:
            after = max(after, position)
        elif position is not None:
            through = min(through, position - 1)
        # The policy may leave changes out (versions of entries the caller may not read now):
        # chunks are read until a page and one more are shown, or the log ends, so a page is
        # never short and a `next` link means a shown change follows. The pages follow each
        # other by the changes read, so none is read twice.
        kept: list[tuple[changes.Listed, changes.Listed]] = []  # (as read, as shown)
        first_read: changes.Listed | None = None
        last_read: changes.Listed | None = None
        while len(kept) <= count:
            # The first chunk a page and one more; the next ones what is missing (at least a
            # few dozen changes: each chunk is a round trip).
            limit = count + 1 if first_read is None else max(count + 1 - len(kept), _REFILL)
            rows = changes.listed(
                conn,
                after=after,
                through=through,
                shown=shown,
                removal=removal,
                limit=limit,
                newest_first=not oldest_first,
                # One type: its (res_type, seq) index. Several: the log's own order, filtered.
                res_types=types if len(types) == 1 else None,
            )
            if rows:
                first_read, last_read = first_read or rows[0], rows[-1]
            as_shown = {c.seq: c for c in services.policy.listed_as_shown(conn, info.principal, rows)}
            kept += [(c, as_shown[c.seq]) for c in rows if c.seq in as_shown]
            if len(rows) < limit or count == 0:  # the log has no more
                break
            if oldest_first:
                after = rows[-1].seq
            else:
                through = rows[-1].seq - 1
        more = len(kept) > count and count > 0
        read = [c for c, _ in kept[:count]]
        page = [c for _, c in kept[:count]]
    # The watermark is the instant of a change listed to this caller (in its view when it
    # committed, though its version may be left out now), never the log's own end:
    # the log's last change may be one the caller may not see, and its instant would tell an
    # anonymous client when a hidden write happened. Resuming from an earlier instant is safe;
    # the hidden changes in between are read again and stay hidden.
    if oldest_first:
        # Complete up to the page's last change: when more follow, or on the last page, where
        # nothing after it is shown to this caller (`_count=0` reads nothing: complete up to
        # where it was asked to start).
        if count == 0:
            complete = since
        elif more:
            complete = read[-1].at
        else:  # the last page: every change read was considered, shown or not
            complete = last_read.at if last_read is not None else since
        if since is not None and (complete is None or complete < since):
            complete = since
    elif complete is None:
        # Newest first: the first page's newest change, carried along to the next pages.
        complete = first_read.at if first_read is not None else since
    path = "/".join(p for p in (res_type, "_history") if p)
    base_query = [(k, v) for k, v in params if k != "_cursor"]
    links = [{"relation": "self", "url": _url(info, path, params)}]
    if more:
        cursor = "|".join((_LOG_CURSOR, order, str(read[-1].seq), complete.isoformat() if complete else "-"))
        sealed_next = services.cursors.seal(cursor) or ""
        links.append({"relation": "next", "url": _url(info, path, [*base_query, ("_cursor", sealed_next)])})
    bundle: dict = {"resourceType": "Bundle", "type": "history"}
    if complete is not None:
        bundle["meta"] = {"lastUpdated": format_instant(complete)}
    bundle["link"] = links
    bundle["entry"] = [_listed_entry(info, change) for change in page]
    return Result(status=200, resource=bundle)


def _open_log_cursor(sealed: str, order: str) -> tuple[int, datetime | None]:
    parts = sealed.split("|")
    try:
        if len(parts) != 4 or parts[0] != _LOG_CURSOR or parts[1] != order:
            raise ValueError("not a change-log cursor of this order")
        position = int(parts[2])
        complete = None if parts[3] == "-" else datetime.fromisoformat(parts[3])
    except ValueError as exc:
        raise BadRequest(
            "_cursor is not a paging token issued by this server for this history (same _since and _sort)"
        ) from exc
    return position, complete


def _scope_conditions(
    services: Services, principal: Principal, types: list[str] | None
) -> list[ColumnElement[bool]]:
    """The caller's search scope on the versions' entries, in SQL, so a page is mostly full.
    A history at an instant lists entries without their ids being known, as a search does:
    it shows what a search would find, not what a read by id shows (a delisted offer is read
    by the care plans that cite it, never listed to the public)."""
    if types is None:
        return []
    scope = services.policy.scope(principal)
    rid = resource_version.c.rid
    conditions = [(t, scope.searchable(t, rid)) for t in types]
    if all(c is None for _, c in conditions):
        return []
    return [
        or_(
            *[
                resource_version.c.res_type == t if c is None else and_(resource_version.c.res_type == t, c)
                for t, c in conditions
            ]
        )
    ]


def _history_types(services: Services, principal: Principal, params: list[tuple[str, str]]) -> list[str]:
    """The types a system-level history shows: those `_type` names (each one the caller may
    read, else 403, as a type history answers), or every type the caller may read at all (its
    token's scopes limit even a regional administrator)."""
    named = [t.strip() for name, value in params if name == "_type" for t in value.split(",") if t.strip()]
    if named:
        for res_type in named:
            check_type(res_type)
            services.policy.check_read(principal, res_type)
        return list(dict.fromkeys(named))
    readable = []
    for res_type in services.search.types:
        try:
            services.policy.check_read(principal, res_type)
        except FhirError:
            continue
        readable.append(res_type)
    return readable


def _count(services: Services, value: str | None) -> int:
    if value is None:
        return services.settings.default_count
    number = small_natural(value)
    if number is None:
        raise BadRequest(f"_count must be a non-negative integer, not '{value[:40]}'")
    return min(number, services.settings.max_count)


def _url(info: RequestInfo, path: str, params: list[tuple[str, str]]) -> str:
    query = urlencode(params)
    return f"{info.base_url}/{path}" + (f"?{query}" if query else "")
