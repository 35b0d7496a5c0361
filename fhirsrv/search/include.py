"""_include and _revinclude: one query per include parameter for the whole page, never one
per resource; `:iterate` repeats on what was just included, up to a depth limit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from fhirsrv.errors import AnswerTooLarge, BadRequest
from fhirsrv.search.registry import SearchParamRegistry
from fhirsrv.search.scope import ReadScope
from fhirsrv.search.walk import correlate
from fhirsrv.settings import VARIABLES
from fhirsrv.storage import repository
from fhirsrv.storage.repository import StoredResource
from fhirsrv.storage.schema import idx_reference, resource


@dataclass(frozen=True)
class IncludeSpec:
    source: str  # resource type holding the reference ("*" for every type)
    param: str  # reference parameter ("*" for all of them)
    target: str | None
    iterate: bool
    reverse: bool


def parse_includes(values: list[str], reverse: bool, modifier_iterate: list[bool]) -> list[IncludeSpec]:
    specs = []
    for value, iterate in zip(values, modifier_iterate, strict=True):
        if value == "*":
            specs.append(IncludeSpec("*", "*", None, iterate, reverse))
            continue
        parts = value.split(":")
        if len(parts) not in (2, 3):
            raise BadRequest(f"'{value}' must read Type:parameter[:TargetType]")
        specs.append(IncludeSpec(parts[0], parts[1], parts[2] if len(parts) == 3 else None, iterate, reverse))
    return specs


def check_known(registry: SearchParamRegistry, types: Sequence[str], spec: IncludeSpec) -> None:
    """An include must name a type of this server, a reference parameter of it and a type of
    this server as its target, whatever the page holds: `Foo:bar` was taken and did nothing, so
    a client's typo went unnoticed (where `Organization:foo` answered 400 once a page held an
    Organization)."""
    for named in (spec.source, spec.target):
        if named not in (None, "*") and named not in types:
            raise BadRequest(f"'{named}' in _include/_revinclude is not a resource type of this server")
    if spec.source != "*" and spec.param != "*":
        _ref_params(registry, spec.source, spec)


def _ref_params(registry: SearchParamRegistry, res_type: str, spec: IncludeSpec) -> list[str]:
    if spec.param == "*":
        return [p.code for p in registry.for_type(res_type) if p.type == "reference"]
    param = registry.get(res_type, spec.param)
    if param is None or param.type != "reference":
        raise BadRequest(f"'{spec.source}:{spec.param}' is not a reference parameter")
    return [spec.param]


def _forward(
    conn: Connection, registry: SearchParamRegistry, spec: IncludeSpec, sources: list[StoredResource]
) -> list[tuple[str, str]]:
    """The (type, id) keys the sources' references point to (not loaded yet: see `_load`)."""
    by_type: dict[str, list[int]] = {}
    for s in sources:
        if spec.source in ("*", s.res_type):
            by_type.setdefault(s.res_type, []).append(s.rid)
    keys: set[tuple[str, str]] = set()
    for res_type, rids in by_type.items():
        params = _ref_params(registry, res_type, spec)
        if not params:
            continue
        query = select(idx_reference.c.target_type, idx_reference.c.target_id).where(
            idx_reference.c.rid.in_(rids),
            idx_reference.c.param.in_(params),
            idx_reference.c.target_id.is_not(None),
        )
        if spec.target:
            query = query.where(idx_reference.c.target_type == spec.target)
        keys.update((t, i) for t, i in conn.execute(query))
    return sorted(keys)


def _reverse(
    conn: Connection, registry: SearchParamRegistry, spec: IncludeSpec, targets: list[StoredResource]
) -> list[int]:
    """The row ids of the resources referring to the targets (not loaded yet: see `_load`)."""
    if spec.source == "*":
        raise BadRequest("_revinclude=* is not supported; name Type:parameter")
    params = _ref_params(registry, spec.source, spec)
    ids_by_type: dict[str, set[str]] = {}
    for t in targets:
        if spec.target is None or t.res_type == spec.target:
            ids_by_type.setdefault(t.res_type, set()).add(t.res_id)
    if not ids_by_type or not params:
        return []
    rids: set[int] = set()
    # One `target_type = :t AND target_id IN (...)` per type (the page holds one type, mostly):
    # the (target_type, target_id, param, rid) index answers it alone, where a row-value IN
    # over (type, id) pairs made PostgreSQL scan the source type's references.
    for target_type, id_set in ids_by_type.items():
        ids = sorted(id_set)
        for start in range(0, len(ids), 500):
            query = select(idx_reference.c.rid).where(
                idx_reference.c.target_type == target_type,
                idx_reference.c.target_id.in_(ids[start : start + 500]),
                idx_reference.c.param.in_(params),
                idx_reference.c.res_type == spec.source,
            )
            rids.update(r for (r,) in conn.execute(query))
    return sorted(rids)


def _shown(scope: ReadScope, *, by_id: bool) -> Callable[[str], Any]:
    """The caller's scope on one type's rows, as a condition the fetch of the included rows
    checks itself: a check of each row (an index probe, or the row's own visibility), never a
    join with every visible row of the type (PostgreSQL hashed all of them, 28 ms at 100k, to
    keep a page's few includes)."""

    def condition(res_type: str) -> Any:
        found = (scope.readable if by_id else scope.searchable)(res_type, resource.c.rid)
        return None if found is None else correlate(found, resource.c.rid)

    return condition


@dataclass(frozen=True)
class Bounds:
    """How far includes go: `:iterate` rounds, and resources brought in for one page."""

    depth: int
    resources: int


# Included resources are loaded this many at a time, so a page refused for its includes has
# read at most this many past the bound.
_CHUNK = 500


class _Included:
    """What the includes brought in so far, and the bound they may not pass."""

    def __init__(self, matches: list[StoredResource], bound: int) -> None:
        self.seen = {(m.res_type, m.res_id) for m in matches}
        self.seen_rids = {m.rid for m in matches}
        self.bound = bound
        self.count = 0

    def add(self, found: list[StoredResource], into: list[StoredResource]) -> None:
        for s in found:
            if (s.res_type, s.res_id) in self.seen:
                continue
            self.seen.add((s.res_type, s.res_id))
            self.seen_rids.add(s.rid)
            into.append(s)
            self.count += 1
            if self.count > self.bound:
                raise AnswerTooLarge(
                    f"The _include/_revinclude of this page bring in more than {self.bound} resources "
                    f"({VARIABLES['max_included']}); ask for a smaller _count or fewer includes"
                )


def _load(
    conn: Connection,
    scope: ReadScope,
    spec: IncludeSpec,
    candidates: list[tuple[str, str]] | list[int],
    included: _Included,
    into: list[StoredResource],
) -> None:
    """Load, filter and add the candidates a chunk at a time: memory stays bounded by the limit
    (plus one chunk) however many resources an include could reach. Only what the caller may
    see counts towards the limit, so a refusal says nothing about hidden resources."""
    if spec.reverse:
        rids = [r for r in candidates if r not in included.seen_rids]
        for start in range(0, len(rids), _CHUNK):
            chunk = rids[start : start + _CHUNK]
            found = repository.get_many(conn, chunk, _shown(scope, by_id=False)(spec.source))
            included.add([s for s in found if not s.deleted], into)
        return
    keys = [k for k in candidates if k not in included.seen]
    for start in range(0, len(keys), _CHUNK):
        found_by_key = repository.get_by_keys(conn, keys[start : start + _CHUNK], _shown(scope, by_id=True))
        included.add([s for s in found_by_key.values() if not s.deleted], into)


def resolve(
    conn: Connection,
    registry: SearchParamRegistry,
    specs: list[IncludeSpec],
    matches: list[StoredResource],
    bounds: Bounds,
    scope: ReadScope,
) -> list[StoredResource]:
    """Everything the include specs bring in, minus the matches themselves, and only what the
    caller may see: what `_include` follows is shown as a read by id would show it, what
    `_revinclude` finds as a search would. Each step is filtered before `:iterate` goes on
    from it, so nothing is ever reached through a hidden resource. More than `bounds.resources`
    of them is refused (AnswerTooLarge, 422) rather than built."""
    match_types = {m.res_type for m in matches}
    # An include naming a source type the search does not return could never apply to the
    # matches (e.g. _include=PractitionerRole:practitioner beside _revinclude=PractitionerRole:service,
    # as the ROR full synchronisation writes it): it applies to what was included, as :iterate.
    # Not so a _revinclude, whose source is the referring type and never a match type.
    specs = [
        spec
        if spec.iterate or spec.reverse or spec.source in match_types or spec.source == "*"
        else IncludeSpec(spec.source, spec.param, spec.target, True, spec.reverse)
        for spec in specs
    ]
    tally = _Included(matches, bounds.resources)
    included: list[StoredResource] = []
    frontier = matches
    for depth in range(bounds.depth):
        new: list[StoredResource] = []
        for spec in specs:
            if depth > 0 and not spec.iterate:
                continue
            # Non-iterating specs apply to the matches; iterating ones to everything so far.
            pool = matches if not spec.iterate else (matches + included if depth == 0 else frontier)
            candidates = (
                _reverse(conn, registry, spec, pool) if spec.reverse else _forward(conn, registry, spec, pool)
            )
            _load(conn, scope, spec, candidates, tally, new)
        if not new:
            break
        included.extend(new)
        frontier = new
    return included
