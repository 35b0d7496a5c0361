"""create (POST), with conditional create (If-None-Exist)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from fhirsrv.interactions import writes
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.identifiers import IdentifierTaken
from fhirsrv.interactions.preconditions import match_one
from fhirsrv.interactions.read import served
from fhirsrv.interactions.refusals import audited
from fhirsrv.interactions.resources import check_resource, check_type
from fhirsrv.storage.engine import joined_or_new_write


def create(
    services: Services,
    info: RequestInfo,
    res_type: str,
    res: dict[str, Any],
    conn: Connection | None = None,
    res_id: str | None = None,
) -> Result:
    """Create with a server-assigned id (a client id in the body is ignored, as R4 says).

    `res_id` is only for transactions, where a urn:uuid entry got its id before processing.
    """
    check_type(res_type, writable=True)
    with audited(services, info, "create", res_type, conn):
        services.policy.check_write_intent(info.principal, res_type, "c")
        check_resource(res, res_type)
        writes.validate(services, res, info.principal)
        with joined_or_new_write(services.engine, conn) as tx:
            return _create(services, info, res_type, res, tx, res_id)


def _create(
    services: Services,
    info: RequestInfo,
    res_type: str,
    res: dict[str, Any],
    conn: Connection,
    res_id: str | None,
) -> Result:
    if info.if_none_exist:
        scope = services.policy.scope(info.principal)
        existing = match_one(services, conn, scope, res_type, info.if_none_exist, "Conditional create")
        if existing is not None:
            return served(existing, 200)
    repair = services.policy.check_lifecycle(info.principal, None, res, info.lifecycle_repair)
    res = services.policy.new_entry(info.principal, res)
    if info.if_none_exist:
        try:
            with conn.begin_nested():
                stored = writes.create(services, conn, res, res_id, actor=info.principal, validated=True)
        except IdentifierTaken:
            # On PostgreSQL two conditional creates can both find no match, then race: the
            # loser's insert waits for the winner's commit and fails. Its criteria now match
            # the winner's resource, and R4 answers that match (200), as if it had come second.
            scope = services.policy.scope(info.principal)
            existing = match_one(services, conn, scope, res_type, info.if_none_exist, "Conditional create")
            if existing is None:
                raise
            return served(existing, 200)
    else:
        stored = writes.create(services, conn, res, res_id, actor=info.principal, validated=True)
    if repair:
        services.audit.repair(conn, stored, info.principal, info.lifecycle_repair or "")
    return served(stored, 201)
