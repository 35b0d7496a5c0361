"""read and vread, served from the stored JSON text (no parse on the hot path)."""

from __future__ import annotations

import orjson
from sqlalchemy import Connection

from fhirsrv.errors import BadRequest, Gone, NotFound
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.resources import check_id, check_type
from fhirsrv.storage import repository
from fhirsrv.storage.engine import read_transaction
from fhirsrv.storage.repository import StoredResource
from fhirsrv.text import small_natural


def _not_modified(stored: StoredResource, info: RequestInfo) -> bool:
    if info.if_none_match is not None:
        tags = {t.strip() for t in info.if_none_match.split(",")}
        return "*" in tags or stored.etag in tags or f'"{stored.version_id}"' in tags
    if info.if_modified_since is not None:
        # HTTP dates have second precision: compare at that precision.
        return stored.last_updated.replace(microsecond=0) <= info.if_modified_since
    return False


def served(stored: StoredResource, status: int = 200) -> Result:
    return Result(status=status, resource=orjson.Fragment(stored.content), stored=stored)


def read(
    services: Services, info: RequestInfo, res_type: str, res_id: str, conn: Connection | None = None
) -> Result:
    """`conn` lets a transaction's GET entry see the writes of the entries before it."""
    check_type(res_type)
    check_id(res_id)
    services.policy.check_read(info.principal, res_type)
    if conn is None:  # read_current is the only statement: one of its own
        stored, seen = services.policy.read_current_alone(services.engine, info.principal, res_type, res_id)
    else:
        stored, seen = services.policy.read_current(conn, info.principal, res_type, res_id)
    if stored is None or not seen:
        raise NotFound(f"{res_type}/{res_id} is not known")
    if stored.deleted:
        raise Gone(
            f"{res_type}/{res_id} was deleted (version {stored.version_id}); its history is still readable",
            headers={"ETag": stored.etag},
        )
    if _not_modified(stored, info):
        return Result(status=304, stored=stored)
    return served(stored)


def vread(
    services: Services,
    info: RequestInfo,
    res_type: str,
    res_id: str,
    version: str,
    conn: Connection | None = None,
) -> Result:
    check_type(res_type)
    check_id(res_id)
    services.policy.check_read(info.principal, res_type)
    number = small_natural(version)
    if number is None:
        raise BadRequest(
            f"'{version[:40]}' is not a version id of this server (a positive integer of at most 18 digits)"
        )
    if conn is None:
        with read_transaction(services.engine) as own:
            return vread(services, info, res_type, res_id, version, own)
    # The entry first, in one statement: a hidden entry is then answered as an unknown id
    # is, by the same statements, and its versions are never fetched.
    _, exists = services.policy.read_current(conn, info.principal, res_type, res_id)
    stored = repository.get_version(conn, res_type, res_id, number) if exists else None
    if stored is not None:  # as the policy shows it (a structure that left: without its people)
        shown = services.policy.visible_versions(conn, info.principal, [stored])
        stored = shown[0] if shown else None
    if stored is None:
        what = (
            f"{res_type}/{res_id} has no version {version}" if exists else f"{res_type}/{res_id} is not known"
        )
        raise NotFound(what)
    if stored.deleted:
        raise Gone(f"Version {version} of {res_type}/{res_id} is a deletion", headers={"ETag": stored.etag})
    if _not_modified(stored, info):
        return Result(status=304, stored=stored)
    return served(stored)
