"""PATCH with JSON Patch (RFC 6902), applied to the current version then validated like a PUT."""

from __future__ import annotations

from typing import Any

import jsonpatch
from sqlalchemy import Connection

from fhirsrv.errors import BadRequest, BusinessRuleViolation, Gone, NotFound
from fhirsrv.interactions import writes
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.preconditions import check_if_match, lost_race_is_conflict, match_one
from fhirsrv.interactions.read import served
from fhirsrv.interactions.refusals import audited
from fhirsrv.interactions.resources import check_id, check_type
from fhirsrv.storage import repository
from fhirsrv.storage.engine import joined_or_new_write
from fhirsrv.storage.jsonfmt import loads


def _compile(operations: Any) -> jsonpatch.JsonPatch:
    """The patch document, every pointer read: a malformed one (`/~2`, `name`) is the client's
    mistake in the document (400), not a patch that does not fit the resource (422)."""
    if not isinstance(operations, list):
        raise BadRequest("A JSON Patch document is a JSON array of operations")
    try:
        for operation in operations:
            for member in ("path", "from"):
                pointer = operation.get(member) if isinstance(operation, dict) else None
                if isinstance(pointer, str):
                    _check_pointer(member, pointer)
        return jsonpatch.JsonPatch(operations)
    except (jsonpatch.InvalidJsonPatch, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
        raise BadRequest(f"Invalid JSON Patch document: {exc}") from exc


def _check_pointer(member: str, pointer: str) -> None:
    try:
        jsonpatch.JsonPointer(pointer)
    except jsonpatch.JsonPointerException as exc:
        raise BadRequest(
            f"Invalid JSON Patch document: '{member}' is not a JSON Pointer (RFC 6901): {exc}"
        ) from exc


def patch(
    services: Services,
    info: RequestInfo,
    res_type: str,
    res_id: str | None,
    operations: Any,
    conn: Connection | None = None,
    criteria: str | None = None,
) -> Result:
    check_type(res_type, writable=True)
    target = f"{res_type}/{res_id}" if res_id else f"{res_type}?{criteria}"
    with audited(services, info, "patch", target, conn):
        services.policy.check_write_intent(info.principal, res_type, "u")
        if res_id is not None:
            check_id(res_id)
        compiled = _compile(operations)
        with joined_or_new_write(services.engine, conn) as tx:
            return _patch(services, info, res_type, res_id, compiled, tx, criteria)


def _patch(
    services: Services,
    info: RequestInfo,
    res_type: str,
    res_id: str | None,
    compiled: jsonpatch.JsonPatch,
    conn: Connection,
    criteria: str | None,
) -> Result:
    actor = info.principal
    policy = services.policy
    if criteria is not None:
        current = match_one(services, conn, policy.scope(actor), res_type, criteria, "Conditional patch")
        if current is None:
            raise NotFound(f"No {res_type} matches '{criteria}'")
    else:
        current = repository.get_current(conn, res_type, res_id)
        if current is None or not policy.visible(conn, actor, [current]):
            # What the caller may not see is answered as what does not exist.
            raise NotFound(f"{res_type}/{res_id} is not known")
    # Access first: the patch is not applied, nor its version compared, for a refused caller.
    policy.check_write_target(conn, actor, current)
    if current.deleted:
        raise Gone(f"{res_type}/{current.res_id} was deleted and cannot be patched")
    check_if_match(current, info.if_match)
    try:
        patched = compiled.apply(loads(current.content))
    except jsonpatch.JsonPatchTestFailed as exc:
        raise BusinessRuleViolation(f"JSON Patch test failed: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise BusinessRuleViolation(
            f"The patch cannot be applied to {res_type}/{current.res_id}: {exc}"
        ) from exc
    if (
        not isinstance(patched, dict)
        or patched.get("resourceType") != res_type
        or patched.get("id") != current.res_id
    ):
        raise BusinessRuleViolation("A patch may not change the resourceType or id of a resource")
    # The caller must be allowed to write the result before its validation is told.
    writes.guard(services, conn, actor, current.res_type, current, patched)
    writes.validate(services, patched, actor)
    if writes.unchanged(current, patched):
        return served(current, 200)
    previous = loads(current.content or "{}")
    repair = policy.check_lifecycle(actor, previous, patched, info.lifecycle_repair)
    if services.identifiers.check_change(conn, actor, current, previous, patched, info.lifecycle_repair):
        repair = True
    with lost_race_is_conflict(info):
        stored = writes.replace(services, conn, current, patched, "patch", actor=actor, validated=True)
    if repair:
        services.audit.repair(conn, stored, actor, info.lifecycle_repair or "")
    return served(stored, 200)
