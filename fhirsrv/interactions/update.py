"""update (PUT), create-on-update with a client id, conditional update, If-Match."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from fhirsrv.errors import BadRequest, Conflict
from fhirsrv.interactions import writes
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.identifiers import IdentifierTaken
from fhirsrv.interactions.preconditions import check_if_match, lost_race_is_conflict, match_one
from fhirsrv.interactions.read import served
from fhirsrv.interactions.refusals import audited
from fhirsrv.interactions.resources import check_id, check_resource, check_type
from fhirsrv.storage import repository
from fhirsrv.storage.engine import joined_or_new_write
from fhirsrv.storage.jsonfmt import loads


def update(
    services: Services,
    info: RequestInfo,
    res_type: str,
    res_id: str | None,
    res: dict[str, Any],
    conn: Connection | None = None,
    criteria: str | None = None,
) -> Result:
    """PUT Type/id, or PUT Type?criteria when `criteria` is given (res_id is then None)."""
    check_type(res_type, writable=True)
    target = f"{res_type}/{res_id}" if res_id else f"{res_type}?{criteria}"
    with audited(services, info, "update", target, conn):
        services.policy.check_write_intent(info.principal, res_type, "u")
        return _checked_update(services, info, res_type, res_id, res, conn, criteria)


def _checked_update(
    services: Services,
    info: RequestInfo,
    res_type: str,
    res_id: str | None,
    res: dict[str, Any],
    conn: Connection | None,
    criteria: str | None,
) -> Result:
    check_resource(res, res_type)
    body_id = res.get("id")
    if criteria is None:
        assert res_id is not None
        check_id(res_id)
        if body_id is None:
            raise BadRequest(
                "The resource has no id; an update must carry the id of its URL", expression=["id"]
            )
        if body_id != res_id:
            raise BadRequest(
                f"The resource id '{body_id}' differs from the URL id '{res_id}'", expression=["id"]
            )
    elif body_id is not None:
        check_id(str(body_id))
    writes.validate(services, res, info.principal)
    with joined_or_new_write(services.engine, conn) as tx:
        return _update(services, info, res_type, res_id, res, tx, criteria)


def _update(
    services: Services,
    info: RequestInfo,
    res_type: str,
    res_id: str | None,
    res: dict[str, Any],
    conn: Connection,
    criteria: str | None,
) -> Result:
    actor = info.principal
    if criteria is not None:
        current = match_one(services, conn, services.policy.scope(actor), res_type, criteria, "Conditional update")
        if current is not None and res.get("id") not in (None, current.res_id):
            raise BadRequest(
                f"The criteria match {res_type}/{current.res_id} but the body's id is '{res['id']}'",
                expression=["id"],
            )
        res_id = current.res_id if current is not None else res.get("id")
        if res_id is None:
            check_if_match(None, info.if_match)
            services.policy.check_lifecycle(actor, None, res, info.lifecycle_repair)
            res = services.policy.new_entry(actor, res)
            return served(writes.create(services, conn, res, actor=actor, validated=True), 201)
        if current is None:
            current = repository.get_current(conn, res_type, res_id)
    else:
        current = repository.get_current(conn, res_type, res_id)
    # Before If-Match: neither a version nor existence is told to whoever may not write there.
    services.policy.check_update_target(conn, actor, res_type, str(res_id), current)
    check_if_match(current, info.if_match)
    if current is None:
        try:
            services.policy.check_lifecycle(actor, None, res, info.lifecycle_repair)
            res = services.policy.new_entry(actor, res)
            return served(writes.create(services, conn, res, res_id, actor=actor, validated=True), 201)
        except IdentifierTaken:
            raise  # not a race on the id: the resource row this PUT inserted is rolled back with it
        except Conflict:
            # Another request created this id since we looked: this PUT becomes its update.
            current = repository.get_current(conn, res_type, res_id)
            if current is None:
                raise
    # The caller must be allowed to write even when nothing would change (no 200 for a stranger).
    writes.guard(services, conn, actor, current.res_type, current, res)
    if writes.unchanged(current, res):
        return served(current, 200)
    previous = loads(current.content) if current.content and not current.deleted else None
    repair = services.policy.check_lifecycle(actor, previous, res, info.lifecycle_repair)
    if services.identifiers.check_change(conn, actor, current, previous, res, info.lifecycle_repair):
        repair = True
    with lost_race_is_conflict(info):
        stored = writes.replace(services, conn, current, res, "update", actor=actor, validated=True)
    if repair:
        services.audit.repair(conn, stored, actor, info.lifecycle_repair or "")
    return served(stored, 201 if current.deleted else 200)
