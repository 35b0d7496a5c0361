"""history at instance, type and system level, with _since, _at, _count and keyset paging."""

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
from fhirsrv.storage import repository
from fhirsrv.storage.engine import read_transaction
from fhirsrv.storage.jsonfmt import format_instant
from fhirsrv.storage.repository import HistoryCursor, StoredResource
from fhirsrv.storage.schema import resource_version
from fhirsrv.text import small_natural

_HTTP = {"create": "POST", "update": "PUT", "patch": "PATCH", "delete": "DELETE"}
_STATUS = {"create": "201 Created", "update": "200 OK", "patch": "200 OK", "delete": "204 No Content"}
_KNOWN = {"_since", "_at", "_count", "_cursor", "_format", "_pretty", "_summary", "_elements"}


def _encode_cursor(last: StoredResource) -> str:
    raw = f"{last.last_updated.isoformat()}|{last.rid}|{last.version_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(token: str) -> HistoryCursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        when, rid, version = raw.split("|")
        return HistoryCursor(datetime.fromisoformat(when), int(rid), int(version))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("_cursor is not a paging token issued by this server") from exc


def _entry(info: RequestInfo, stored: StoredResource) -> dict:
    key = f"{stored.res_type}/{stored.res_id}"
    entry: dict = {"fullUrl": f"{info.base_url}/{key}"}
    if not stored.deleted and stored.content is not None:
        entry["resource"] = orjson.Fragment(stored.content)
    method = stored.method or "update"
    entry["request"] = {
        "method": _HTTP.get(method, "PUT"),
        "url": stored.res_type if method == "create" else key,
    }
    entry["response"] = {
        "status": _STATUS.get(method, "200 OK"),
        "etag": stored.etag,
        "lastModified": format_instant(stored.last_updated),
    }
    return entry


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
    since = parse_instant(args["_since"], "_since") if "_since" in args else None
    at = parse_instant(args["_at"], "_at", end_of_period=True) if "_at" in args else None
    count = _count(services, args.get("_count"))
    cursor = _decode_cursor(services.cursors.open(args["_cursor"]) or "") if "_cursor" in args else None
    principal = info.principal
    policy = services.policy
    if res_type is not None:
        policy.check_read(principal, res_type)
    types = None if res_type is not None else _readable_types(services, principal)
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
            rows = repository.history(
                conn,
                res_type=res_type,
                res_id=res_id,
                types=types,
                since=since,
                at=at,
                after=cursor,
                limit=count + 1,
                where=_scope_conditions(services, principal, [res_type] if res_type else types),
            )
            total = (
                repository.count_history(conn, res_type=res_type, res_id=res_id, since=since)
                if res_id is not None and at is None
                else None
            )
            page, more = rows[:count], len(rows) > count
            # A type or system history page is filtered after it is read: it may hold fewer
            # entries than _count (the `next` link still goes on from the last version read).
            shown = policy.visible_versions(conn, principal, page)
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
    bundle["entry"] = [_entry(info, s) for s in shown]
    return Result(status=200, resource=bundle)


def _scope_conditions(
    services: Services, principal: Principal, types: list[str] | None
) -> list[ColumnElement[bool]]:
    """The caller's search scope on the versions' entries, in SQL, so a page is mostly full.
    A type or system history lists entries without their ids being known, as a search does:
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


def _readable_types(services: Services, principal: Principal) -> list[str] | None:
    """The types a system-level history may show: those the caller may read at all (its
    token's scopes limit even a regional administrator)."""
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
