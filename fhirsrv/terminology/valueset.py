"""ValueSet $expand and $validate-code, over extensional and intensional compositions.

The composition (the ValueSet's codes before any text filter or paging) is cached in process,
keyed by the ValueSet's url, version and stored versionId. Each entry also records the
terminology generation it was computed at (see `generation`), so a CodeSystem or ValueSet written
by any process of the server invalidates it: a stale expansion is never served. Filtering and
paging a cached composition of a hundred codes costs far less than the one query of the check."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from fhirsrv.errors import BadRequest, NotFound
from fhirsrv.storage.jsonfmt import dumps, format_instant, utcnow
from fhirsrv.storage.schema import code_closure, resource
from fhirsrv.terminology import store
from fhirsrv.terminology.closure import pairs
from fhirsrv.terminology.codesystem import display_in, iter_concepts
from fhirsrv.terminology.patterns import compile_filter
from fhirsrv.text import fold


@dataclass(frozen=True)
class Code:
    system: str
    version: str | None
    code: str
    display: str | None
    concept: dict[str, Any]
    parent: str | None
    language: str | None

    @property
    def active(self) -> bool:
        return not any(
            p.get("code") == "status" and p.get("valueCode") in ("retired", "inactive", "deprecated")
            for p in self.concept.get("property") or []
        ) and not any(
            p.get("code") == "inactive" and p.get("valueBoolean") for p in self.concept.get("property") or []
        )


def _fhir_string(value: Any) -> str:
    """A property value as FHIR writes it: booleans are `true`/`false`, so that a filter such as
    `inactive = true` (or a regex on a boolean property) compares with what the author wrote."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):  # valueCoding: its code is what a filter names
        return str(value.get("code", ""))
    return str(value)


def _property(concept: dict[str, Any], name: str) -> list[str]:
    return [
        _fhir_string(next((v for k, v in p.items() if k.startswith("value")), ""))
        for p in concept.get("property") or []
        if p.get("code") == name
    ]


def _matches_filter(
    cs: dict[str, Any], code: Code, flt: dict[str, Any], closure: set[tuple[str, str]]
) -> bool:
    prop, op, value = flt.get("property"), flt.get("op"), str(flt.get("value", ""))
    if prop in ("concept", "code"):
        if op == "is-a":
            return (value, code.code) in closure
        if op == "descendent-of":
            return code.code != value and (value, code.code) in closure
        if op == "is-not-a":
            return (value, code.code) not in closure
        if op == "=":
            return code.code == value
        if op == "in":
            return code.code in value.split(",")
        if op == "not-in":
            return code.code not in value.split(",")
        if op == "generalizes":
            return (code.code, value) in closure
        if op == "regex":
            # R4: the whole code matches (fullmatch, as XML Schema patterns are anchored).
            return compile_filter(value).matches(code.code)
    values = [code.parent or ""] if prop == "parent" else _property(code.concept, prop or "")
    if op == "=":
        return value in values
    if op == "in":
        return bool(set(value.split(",")) & set(values))
    if op == "not-in":
        return not set(value.split(",")) & set(values)
    if op == "exists":
        return bool(values) == (value.lower() == "true")
    if op == "regex":
        pattern = compile_filter(value)
        return any(pattern.matches(v) for v in values)
    raise BadRequest(f"ValueSet filter '{prop} {op} {value}' is not supported")


def _closure_of(conn: Connection, cs: dict[str, Any]) -> set[tuple[str, str]]:
    """(ancestor, descendant) pairs of a code system, from the closure table when it is stored
    there; a code system not (yet) in the table (e.g. an inline one) is walked once instead."""
    rows = conn.execute(
        select(code_closure.c.ancestor, code_closure.c.descendant).where(code_closure.c.system == cs["url"])
    ).all()
    return {(a, d) for a, d in rows} if rows else set(pairs(cs))


def _listed_codes(include: dict[str, Any]) -> list[Code]:
    """The codes an include enumerates, as the ValueSet states them: enough to expand a national
    value set (JDV) whose code system is not loaded here."""
    return [
        Code(include["system"], include.get("version"), c["code"], c.get("display"), c, None, None)
        for c in include.get("concept") or []
    ]


def _codes_of_include(conn: Connection, include: dict[str, Any], stack: tuple[str, ...]) -> list[Code]:
    codes: list[Code] = []
    if include.get("system"):
        cs = store.by_url(conn, "CodeSystem", include["system"], include.get("version"))
        if cs is None and include.get("concept") and not include.get("filter"):
            codes = _listed_codes(include)
        elif cs is None:
            raise NotFound(f"The code system {include['system']} used by this ValueSet is not known")
        else:
            all_codes = [
                Code(cs["url"], cs.get("version"), c["code"], c.get("display"), c, parent, cs.get("language"))
                for c, parent in iter_concepts(cs.get("concept") or [])
            ]
            if include.get("concept"):
                wanted = {c["code"] for c in include["concept"]}
                codes = [c for c in all_codes if c.code in wanted]
            else:
                closure = _closure_of(conn, cs) if include.get("filter") else set()
                codes = [
                    c
                    for c in all_codes
                    if all(_matches_filter(cs, c, f, closure) for f in include.get("filter") or [])
                ]
    for url in include.get("valueSet") or []:
        imported = _compose(conn, store.require(conn, "ValueSet", url), stack)
        if include.get("system"):
            keys = {(c.system, c.code) for c in imported}
            codes = [c for c in codes if (c.system, c.code) in keys]
        else:
            codes = imported if not codes else [c for c in codes if c in imported]
    return codes


def _compose(conn: Connection, valueset: dict[str, Any], stack: tuple[str, ...] = ()) -> list[Code]:
    url = valueset.get("url", "")
    if url in stack:
        raise BadRequest(f"ValueSet {url} imports itself")
    compose = valueset.get("compose") or {}
    included: dict[tuple[str, str], Code] = {}
    for include in compose.get("include") or []:
        for code in _codes_of_include(conn, include, (*stack, url)):
            included.setdefault((code.system, code.code), code)
    for exclude in compose.get("exclude") or []:
        for code in _codes_of_include(conn, exclude, (*stack, url)):
            included.pop((code.system, code.code), None)
    return list(included.values())


_CACHE: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[Code]]] = {}
_CACHE_SIZE = 256


def generation(conn: Connection) -> tuple[Any, ...]:
    """A fingerprint of every stored CodeSystem and ValueSet: it changes with any create, update
    or delete of one (count, sum of versions, latest update), whichever process wrote it. One
    query on the (res_type, last_updated) index."""
    row = conn.execute(
        select(func.count(), func.sum(resource.c.version_id), func.max(resource.c.last_updated)).where(
            resource.c.res_type.in_(("CodeSystem", "ValueSet"))
        )
    ).one()
    return tuple(row)


def _cache_key(valueset: dict[str, Any]) -> tuple[Any, ...]:
    meta = valueset.get("meta") or {}
    if valueset.get("id") and meta.get("versionId"):
        return ("stored", valueset["id"], meta["versionId"], valueset.get("url"), valueset.get("version"))
    return ("inline", dumps(valueset.get("compose") or {}))


def codes(conn: Connection, valueset: dict[str, Any]) -> list[Code]:
    """The ValueSet's codes (compose applied), from the cache while the terminology is unchanged.
    Keyed by database too: two servers in one process (tests, tools) never share an expansion."""
    key = (conn.engine.url.render_as_string(hide_password=True), *_cache_key(valueset))
    now = generation(conn)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == now:
        return hit[1]
    found = _compose(conn, valueset)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()
    _CACHE[key] = (now, found)
    return found


def clear_cache() -> None:
    _CACHE.clear()


def _contains(code: Code, language: str | None, designations: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"system": code.system}
    if code.version:
        entry["version"] = code.version
    entry["code"] = code.code
    display = display_in(code.concept, language, code.language)
    if display:
        entry["display"] = display
    if not code.active:
        entry["inactive"] = True
    if designations and code.concept.get("designation"):
        entry["designation"] = code.concept["designation"]
    return entry


def _text_match(code: Code, needle: str) -> bool:
    texts = [code.code, code.display or ""] + [
        d.get("value", "") for d in code.concept.get("designation") or []
    ]
    return any(needle in fold(t) for t in texts)


def expand(
    conn: Connection,
    valueset: dict[str, Any],
    *,
    text_filter: str | None = None,
    count: int | None = None,
    offset: int = 0,
    language: str | None = None,
    designations: bool = False,
    active_only: bool = False,
    hierarchical: bool = False,
) -> dict[str, Any]:
    found = codes(conn, valueset)
    if active_only:
        found = [c for c in found if c.active]
    if text_filter:
        needle = fold(text_filter)
        found = [c for c in found if _text_match(c, needle)]
    total = len(found)
    page = found[offset : offset + count if count is not None else None]
    contains = [_contains(c, language, designations) for c in page]
    if hierarchical and count is None and not offset:
        contains = _nest(page, contains)
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": format_instant(utcnow()),
        "total": total,
        "offset": offset,
    }
    parameters = [
        {"name": n, v[0]: v[1]}
        for n, v in (
            ("filter", ("valueString", text_filter)),
            ("count", ("valueInteger", count)),
            ("displayLanguage", ("valueCode", language)),
        )
        if v[1] is not None
    ]
    if parameters:
        expansion["parameter"] = parameters
    if contains:
        expansion["contains"] = contains
    out = {k: v for k, v in valueset.items() if k not in ("compose", "text", "meta")}
    out["expansion"] = expansion
    return out


def _nest(page: list[Code], contains: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Children under their parent when both are in the expansion (hierarchical contains)."""
    by_code = {c.code: entry for c, entry in zip(page, contains, strict=True)}
    roots = []
    for code, entry in zip(page, contains, strict=True):
        parent = by_code.get(code.parent or "")
        if parent is not None:
            parent.setdefault("contains", []).append(entry)
        else:
            roots.append(entry)
    return roots


def validate_code(
    conn: Connection, valueset: dict[str, Any], system: str | None, code: str, display: str | None
) -> dict[str, Any]:
    members = [c for c in codes(conn, valueset) if c.code == code and (system is None or c.system == system)]
    url = valueset.get("url")
    params: list[dict[str, Any]] = []
    if not members:
        where = f"{system}#{code}" if system else code
        return {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "result", "valueBoolean": False},
                {"name": "message", "valueString": f"Code {where} is not in the value set {url}"},
            ],
        }
    member = members[0]
    accepted = {member.display} | {d.get("value") for d in member.concept.get("designation") or []}
    if display is not None and display not in accepted:
        params = [
            {"name": "result", "valueBoolean": False},
            {
                "name": "message",
                "valueString": f"Wrong display '{display}' for {member.system}#{code}: "
                f"expected '{member.display}'",
            },
        ]
    else:
        params = [{"name": "result", "valueBoolean": True}]
    if member.display:
        params.append({"name": "display", "valueString": member.display})
    return {"resourceType": "Parameters", "parameter": params}


def valueset_pairs(conn: Connection, url: str) -> list[tuple[str, str]]:
    """The (system, code) pairs of a stored ValueSet (cached expansion); 400 when it is unknown,
    because for a search the ValueSet is a parameter value the client got wrong."""
    found = store.by_url(conn, "ValueSet", url)
    if found is None:
        raise BadRequest(f"The ValueSet '{url}' is not known to this server")
    return [(c.system, c.code) for c in codes(conn, found)]


class ValueSetExpander:
    """The search engine's CodeExpander: (system, code) pairs of a ValueSet, for :in / :not-in."""

    def valueset_codes(self, conn: Connection, url: str) -> list[tuple[str, str]]:
        return valueset_pairs(conn, url)
