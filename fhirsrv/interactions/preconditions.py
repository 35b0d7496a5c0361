"""If-Match and conditional-operation matching, shared by update, patch and delete."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl

from sqlalchemy import Connection

from fhirsrv.errors import BadRequest, Conflict, PreconditionFailed
from fhirsrv.interactions.context import RequestInfo, Services
from fhirsrv.search.scope import ReadScope
from fhirsrv.storage.repository import ConcurrentUpdate, StoredResource
from fhirsrv.text import small_natural


def expected_version(if_match: str | None) -> int | None:
    """The version an If-Match header names: W/"3", "3" or 3."""
    if if_match is None:
        return None
    tag = if_match.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"')
    version = small_natural(tag)
    if version is None:
        raise BadRequest(f"If-Match must be a version ETag such as W/\"3\", not '{if_match[:40]}'")
    return version


def check_if_match(current: StoredResource | None, if_match: str | None) -> None:
    expected = expected_version(if_match)
    if expected is None:
        return
    if current is None:
        raise PreconditionFailed(f"If-Match {if_match} given but the resource does not exist")
    if current.version_id != expected:
        raise PreconditionFailed(
            f"{current.res_type}/{current.res_id} is at version {current.version_id}, not {expected}: "
            "it was changed since you read it"
        )


def parse_criteria(query: str) -> list[tuple[str, str]]:
    criteria = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if not criteria:
        raise BadRequest("A conditional operation needs search criteria")
    return criteria


def match_one(
    services: Services, conn: Connection, scope: ReadScope, res_type: str, query: str, what: str
) -> StoredResource | None:
    """The single resource the criteria match among those the caller may see (so a
    conditional write reveals nothing hidden), None for no match; 412 when several match."""
    found = services.search.find(conn, res_type, parse_criteria(query), scope, limit=2)
    if len(found) > 1:
        raise PreconditionFailed(f"{what}: the criteria '{query}' match more than one {res_type}")
    return found[0] if found else None


@contextmanager
def lost_race_is_conflict(info: RequestInfo) -> Iterator[None]:
    """A write that lost a race: 412 if the client set If-Match (its precondition failed),
    409 otherwise (a version conflict it could not have foreseen; it should read and retry)."""
    try:
        yield
    except ConcurrentUpdate as exc:
        if info.if_match is not None:
            raise
        raise Conflict(f"{exc.diagnostics}", headers=exc.headers) from exc
