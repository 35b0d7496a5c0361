"""delete and conditional delete: a deletion is a new version; history keeps all the others."""

from __future__ import annotations

from sqlalchemy import Connection

from fhirsrv.interactions import writes
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.preconditions import check_if_match, lost_race_is_conflict, match_one
from fhirsrv.interactions.refusals import audited
from fhirsrv.interactions.resources import check_id, check_type
from fhirsrv.storage import repository
from fhirsrv.storage.engine import joined_or_new_write


def delete(
    services: Services,
    info: RequestInfo,
    res_type: str,
    res_id: str | None,
    conn: Connection | None = None,
    criteria: str | None = None,
) -> Result:
    """Delete is idempotent: deleting an unknown or deleted resource succeeds (204)."""
    check_type(res_type, writable=True)
    target = f"{res_type}/{res_id}" if res_id else f"{res_type}?{criteria}"
    with audited(services, info, "delete", target, conn):
        services.policy.check_write_intent(info.principal, res_type, "d")
        if res_id is not None:
            check_id(res_id)
        with joined_or_new_write(services.engine, conn) as tx:
            return _delete(services, info, res_type, res_id, tx, criteria)


def _delete(
    services: Services,
    info: RequestInfo,
    res_type: str,
    res_id: str | None,
    conn: Connection,
    criteria: str | None,
) -> Result:
    actor = info.principal
    if criteria is not None:
        current = match_one(services, conn, services.policy.scope(actor), res_type, criteria, "Conditional delete")
    else:
        current = repository.get_current(conn, res_type, res_id)
        if current is not None and not current.deleted and not services.policy.visible(conn, actor, [current]):
            current = None  # what the caller may not see is deleted as an unknown one: 204, no change
    if current is not None:
        services.policy.check_write_target(conn, actor, current)
    check_if_match(current, info.if_match)
    if current is None or current.deleted:
        return Result(status=204, stored=current)
    with lost_race_is_conflict(info):
        stored = writes.delete(services, conn, current, actor=actor)
    return Result(status=204, stored=stored)
