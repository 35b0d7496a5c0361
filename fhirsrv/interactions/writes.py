"""The single write path: validate, store the next version, index it, run write hooks.

Every interaction that changes data (create, update, patch, delete, transaction entries, the
loader) goes through here, so a structurally invalid resource can never be stored, and the
index rows always change in the same database transaction as the resource itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from fhirsrv.errors import BusinessRuleViolation, InvalidResource, Issue
from fhirsrv.interactions.context import Services
from fhirsrv.storage import repository
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.repository import StoredResource
from fhirsrv.validation.structure import validate_structure

# Called after a resource is written (res is None for a deletion), inside the transaction:
# e.g. the terminology closure for CodeSystems, the search registry for SearchParameters.
WriteHook = Callable[[Connection, StoredResource, "dict[str, Any] | None"], None]


def new_id() -> str:
    return str(uuid.uuid4())


def validation_issues(
    services: Services, res: dict[str, Any], profiles: tuple[str, ...] = (), *, with_profiles: bool = True
) -> list[Issue]:
    """Everything a write checks: structure (R4 models), then the profiles that apply.

    `$validate` answers with exactly these issues, so it never disagrees with a write.
    """
    issues = validate_structure(res)
    if any(i.severity in ("error", "fatal") for i in issues):
        return issues
    profile_issues = services.extras.get("profile_issues")
    if profile_issues is not None and with_profiles:
        issues += profile_issues(res, profiles)
    return issues


def validate(services: Services, res: dict[str, Any], *, with_profiles: bool = True) -> None:
    """Raise when the resource may not be stored: 400 for structure, 422 for profile rules.

    The file loader skips profiles (`with_profiles=False`): it loads the server's own
    conformance and demo content, whose conformance tests/ check once instead of every start."""
    issues = validation_issues(services, res, with_profiles=with_profiles)
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if not errors:
        return
    if any(i.code == "structure" for i in errors):
        raise InvalidResource(errors[0].diagnostics, issues=errors)
    raise BusinessRuleViolation(errors[0].diagnostics, issues=errors)


def guard(
    services: Services,
    conn: Connection,
    res_type: str,
    current: StoredResource | None,
    new: dict[str, Any] | None,
) -> None:
    """The authorization hook: may raise Forbidden before anything is written."""
    guard = services.extras.get("write_guard")
    if guard is not None:
        guard(conn, res_type, current, new)


def _after_write(
    services: Services, conn: Connection, stored: StoredResource, res: dict[str, Any] | None
) -> None:
    if res is None:
        services.search.unindex(conn, stored.rid)
    else:
        services.search.index(conn, stored, res)
    for hook in services.extras.get("write_hooks", ()):
        hook(conn, stored, res)


def create(
    services: Services,
    conn: Connection,
    res: dict[str, Any],
    res_id: str | None = None,
    *,
    validated: bool = False,
) -> StoredResource:
    if not validated:
        validate(services, res)
    guard(services, conn, res["resourceType"], None, res)
    stored = repository.create(conn, res, res_id or new_id())
    _after_write(services, conn, stored, loads(stored.content or "{}"))
    return stored


def create_many(
    services: Services, conn: Connection, items: list[tuple[dict[str, Any], str]]
) -> list[StoredResource]:
    """Bulk create of validated resources with their ids (the loader's path for new content)."""
    for res, _ in items:
        guard(services, conn, res["resourceType"], None, res)
    stored = repository.create_many(conn, items)
    bulk_index = getattr(services.search, "index_many", None)
    if bulk_index is not None:
        bulk_index(conn, [(s, loads(s.content or "{}")) for s in stored])
        for s in stored:
            for hook in services.extras.get("write_hooks", ()):
                hook(conn, s, loads(s.content or "{}"))
    else:
        for s in stored:
            _after_write(services, conn, s, loads(s.content or "{}"))
    return stored


def create_prepared(
    services: Services,
    conn: Connection,
    items: list[tuple[str, str, str, dict[str, list[tuple[Any, ...]]] | None]],
    when: datetime,
) -> list[StoredResource]:
    """Store validated, stamped and serialised new resources with their index rows.

    items: (type, id, content, index rows without rid, or None to compute them here). The
    bulk loader prepares all of it in worker processes; this is the same write, minus the work.
    """
    parsed = [loads(content) for _, _, content, _ in items]  # ~20 µs each, for the guard and hooks
    for (res_type, _, _, _), res in zip(items, parsed, strict=True):
        guard(services, conn, res_type, None, res)
    stored = repository.insert_new(conn, [(t, i, c) for t, i, c, _ in items], when)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    computed = []
    for s, res, (_, _, _, prepared) in zip(stored, parsed, items, strict=True):
        if prepared is None:
            computed.append((s, res))
            continue
        for table, table_rows in prepared.items():
            rows.setdefault(table, []).extend((s.rid, *row) for row in table_rows)
    services.search.index_tuples(conn, rows)
    if computed:
        services.search.index_many(conn, computed)
    for s, res in zip(stored, parsed, strict=True):
        for hook in services.extras.get("write_hooks", ()):
            hook(conn, s, res)
    return stored


def replace(
    services: Services,
    conn: Connection,
    current: StoredResource,
    res: dict[str, Any],
    method: str = "update",
    *,
    validated: bool = False,
) -> StoredResource:
    if not validated:
        validate(services, res)
    guard(services, conn, current.res_type, current, res)
    stored = repository.replace(conn, current, res, method)
    _after_write(services, conn, stored, loads(stored.content or "{}"))
    return stored


def delete(services: Services, conn: Connection, current: StoredResource) -> StoredResource:
    guard(services, conn, current.res_type, current, None)
    stored = repository.replace(conn, current, None, "delete")
    _after_write(services, conn, stored, None)
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
