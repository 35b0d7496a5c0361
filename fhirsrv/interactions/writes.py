"""The single write path: validate, check access, store the next version, hold its directory
identifiers, index it, keep the access facts and the audit trail, run write hooks.

Every interaction that changes data (create, update, patch, delete, transaction entries, the
loader) goes through here, so a structurally invalid resource can never be stored, no write
escapes the access policy, no second live resource takes a directory identifier, and the
identifier rows, index rows, access facts and audit event always change in the same database
transaction as the resource itself.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from fhirsrv.access.principal import Principal
from fhirsrv.errors import BusinessRuleViolation, InvalidResource, Issue
from fhirsrv.interactions.context import Services
from fhirsrv.storage import bulk, repository
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.repository import StoredResource
from fhirsrv.validation.structure import validate_structure

# What a loaded resource's searched rows say until its access facts are written (see
# `create_prepared`).
LOADED_VISIBILITY = "public"


def new_id() -> str:
    return str(uuid.uuid4())


def validation_issues(
    services: Services,
    res: dict[str, Any],
    principal: Principal,
    profiles: tuple[str, ...] = (),
    *,
    with_profiles: bool = True,
) -> list[Issue]:
    """Everything a write checks: structure (R4), then the profiles that apply.

    `$validate` answers with exactly these issues, so it never disagrees with a write.
    """
    issues = validate_structure(res)
    if any(i.severity in ("error", "fatal") for i in issues):
        return issues
    if with_profiles:
        issues += services.profile_check(res, profiles, principal)
    return issues


def validate(
    services: Services, res: dict[str, Any], principal: Principal, *, with_profiles: bool = True
) -> None:
    """Raise when the resource may not be stored: 400 for structure, 422 for profile rules.

    The file loader skips profiles (`with_profiles=False`): it loads the server's own
    conformance and demo content, whose conformance tests/ check once instead of every start."""
    issues = validation_issues(services, res, principal, with_profiles=with_profiles)
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if not errors:
        return
    if any(i.code == "structure" for i in errors):
        raise InvalidResource(errors[0].diagnostics, issues=errors)
    raise BusinessRuleViolation(errors[0].diagnostics, issues=errors)


def guard(
    services: Services,
    conn: Connection,
    actor: Principal,
    res_type: str,
    current: StoredResource | None,
    new: dict[str, Any] | None,
) -> None:
    """The access policy's last word on a write, before anything is written (401/403)."""
    services.policy.check_write(conn, actor, res_type, current, new)
    if new is not None:
        services.policy.facts.lock_structure(conn, new)


def _after_write(
    services: Services,
    conn: Connection,
    actor: Principal,
    stored: StoredResource,
    res: dict[str, Any] | None,
    previous: dict[str, Any] | None,
) -> None:
    services.identifiers.hold(conn, stored, res, previous)
    services.policy.record_owner(conn, stored, actor)
    if res is None:
        services.search.unindex(conn, stored.rid)
        services.policy.facts.deleted(conn, stored, previous)
    else:
        services.search.index(conn, stored, res)
        services.policy.facts.record(conn, stored, res, previous)
    services.audit.written(conn, stored, actor)
    for hook in services.write_hooks:
        hook(conn, stored, res)


def create(
    services: Services,
    conn: Connection,
    res: dict[str, Any],
    res_id: str | None = None,
    *,
    actor: Principal,
    validated: bool = False,
) -> StoredResource:
    if not validated:
        validate(services, res, actor)
    res_id = res_id or new_id()
    # The policy judges the resource as it will be stored, with the id it will have.
    guard(services, conn, actor, res["resourceType"], None, {**res, "id": res_id})
    res = _ruled(services, conn, actor, None, res)
    stored = repository.create(conn, res, res_id)
    _after_write(services, conn, actor, stored, loads(stored.content or "{}"), None)
    return stored


def _ruled(
    services: Services,
    conn: Connection,
    actor: Principal,
    current: StoredResource | None,
    res: dict[str, Any],
) -> dict[str, Any]:
    """The content to store once the type's own rules have judged it (context.ResourceRule)."""
    rule = services.resource_rules.get(res["resourceType"])
    return res if rule is None else rule(services, conn, actor, current, res)


def _after_bulk(
    services: Services, conn: Connection, actor: Principal, items: list[tuple[StoredResource, dict[str, Any]]]
) -> None:
    services.policy.facts.record_many(conn, items, bulk=True)
    for s, res in items:
        services.audit.written(conn, s, actor)
        for hook in services.write_hooks:
            hook(conn, s, res)


def create_many(
    services: Services, conn: Connection, items: list[tuple[dict[str, Any], str]], *, actor: Principal
) -> list[StoredResource]:
    """Bulk create of validated resources with their ids (the loader's path for new content)."""
    single = [(res, res_id) for res, res_id in items if res["resourceType"] in services.resource_rules]
    if single:  # a type with its own rules is written one by one, through them
        items = [item for item in items if item[0]["resourceType"] not in services.resource_rules]
        ruled = [create(services, conn, res, res_id, actor=actor, validated=True) for res, res_id in single]
        return ruled + (create_many(services, conn, items, actor=actor) if items else [])
    for res, res_id in items:
        guard(services, conn, actor, res["resourceType"], None, {**res, "id": res_id})
    stored = repository.create_many(conn, items)
    written = [(s, loads(s.content or "{}")) for s in stored]
    services.identifiers.hold_new(conn, written)
    services.search.index_many(conn, written)
    _after_bulk(services, conn, actor, written)
    return stored


def create_prepared(
    services: Services,
    conn: Connection,
    items: list[tuple[str, str, str, dict[str, list[tuple[Any, ...]]] | dict[str, bytes] | None]],
    when: datetime,
    *,
    actor: Principal,
) -> list[StoredResource]:
    """Store validated, stamped and serialised new resources with their index rows.

    items: (type, id, content, index rows without rid, or None to compute them here). The
    bulk loader prepares all of it in worker processes; this is the same write, minus the work.
    Index rows are tuples, or on PostgreSQL COPY text lines (bulk.copy_lines_without_rid).
    """
    if any(res_type in services.resource_rules for res_type, _, _, _ in items):
        # A type with its own rules is written one by one, through them (never many in a load).
        single = [(loads(c), i) for t, i, c, _ in items if t in services.resource_rules]
        rest = [item for item in items if item[0] not in services.resource_rules]
        ruled = [create(services, conn, res, res_id, actor=actor, validated=True) for res, res_id in single]
        return ruled + (create_prepared(services, conn, rest, when, actor=actor) if rest else [])
    parsed = [loads(content) for _, _, content, _ in items]  # ~20 µs each, for the guard and hooks
    for (res_type, _, _, _), res in zip(items, parsed, strict=True):
        services.policy.check_write(conn, actor, res_type, None, res)
    services.policy.facts.lock_structures(conn, parsed)  # `guard`'s lock, for all at once
    # A load presumes its entries public, and its access facts correct the others before the
    # transaction commits (FactStore.deferred): that rewrites the few hidden rows instead of
    # nearly every resource row and token index row of the file. Nothing reads the rows before.
    stored = repository.insert_new(conn, [(t, i, c) for t, i, c, _ in items], when, visibility=LOADED_VISIBILITY)
    services.identifiers.hold_new(conn, list(zip(stored, parsed, strict=True)))
    rows: dict[str, list[tuple[Any, ...]]] = {}
    lines: dict[str, list[bytes]] = {}
    computed = []
    for s, res, (_, _, _, prepared) in zip(stored, parsed, items, strict=True):
        if prepared is None:
            computed.append((s, res))
            continue
        for table, table_rows in prepared.items():
            if isinstance(table_rows, bytes):  # COPY text (PostgreSQL)
                lines.setdefault(table, []).append(bulk.with_rid(s.rid, table_rows))
            else:
                rows.setdefault(table, []).extend((s.rid, *row) for row in table_rows)
    services.search.index_tuples(conn, rows, public=LOADED_VISIBILITY == "public")
    services.search.index_copy(conn, lines)
    if computed:
        services.search.index_many(conn, computed)
    _after_bulk(services, conn, actor, list(zip(stored, parsed, strict=True)))
    return stored


def replace(
    services: Services,
    conn: Connection,
    current: StoredResource,
    res: dict[str, Any],
    method: str = "update",
    *,
    actor: Principal,
    validated: bool = False,
) -> StoredResource:
    if not validated:
        validate(services, res, actor)
    guard(services, conn, actor, current.res_type, current, res)
    if res["resourceType"] in services.resource_rules:
        res = _ruled(services, conn, actor, current, res)
        if unchanged(current, res):  # what the rules kept is what is stored: no new version
            return current
    stored = repository.replace(conn, current, res, method)
    previous = loads(current.content) if current.content else None
    _after_write(services, conn, actor, stored, loads(stored.content or "{}"), previous)
    return stored


def delete(services: Services, conn: Connection, current: StoredResource, *, actor: Principal) -> StoredResource:
    guard(services, conn, actor, current.res_type, current, None)
    stored = repository.replace(conn, current, None, "delete")
    previous = loads(current.content) if current.content else None
    _after_write(services, conn, actor, stored, None, previous)
    return stored


def unchanged(current: StoredResource, res: dict[str, Any]) -> bool:
    """True when `res` has the same content as the current version (meta stamps aside).

    A client that PUTs what it read (a sync platform re-sending its copy) should not create
    versions nobody can tell apart, nor wake up every other syncing client.
    """
    if current.deleted or current.content is None:
        return False
    old = loads(current.content)
    return _comparable(old) == _comparable(res)


def _comparable(res: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (res.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    body = {k: v for k, v in res.items() if k != "meta"}
    if meta:
        body["meta"] = meta
    return body
