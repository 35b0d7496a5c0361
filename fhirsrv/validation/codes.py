"""Code membership for bindings: the CodeChecker protocol and a local, file-based checker.

The validator only needs one question answered: "is this code in that ValueSet?". The
terminology service answers it for the server (closure tables, cached expansions); this local
checker answers it from JSON files alone, so profiles can be validated in tests, in the CLI
loader and before the database exists. `None` means "I do not know this ValueSet": a binding
the server cannot check is reported as a warning, never silently passed or wrongly failed.

Within `stored_terminology(engine)` (the server's write path and $validate run their profile
checks inside it), a ValueSet stored in the database is answered by the terminology service
instead of the files: a CodeSystem or ValueSet an administrator changed through the API is what
the validator checks against. Outside it, or for a ValueSet the database does not hold (the FHIR
core ones), the files answer as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from fhirsrv.errors import BadRequest, NotFound
from fhirsrv.storage.engine import read_transaction
from fhirsrv.storage.faults import unavailability
from fhirsrv.terminology.patterns import compile_filter
from fhirsrv.validation.definitions import PROFILES_DIR, canonical, iter_json_resources

log = logging.getLogger("fhirsrv")

TERMINOLOGY_DIR = PROFILES_DIR.parent / "terminology"


class CodeChecker(Protocol):
    def validate_code(self, valueset_url: str, system: str | None, code: str) -> bool | None:
        """True/False when the ValueSet is known, None when it is not."""
        ...


class LocalCodeChecker:
    """Expands simple ValueSets (whole systems, concept lists, is-a filters, nested sets)."""

    def __init__(self, paths: Iterable[Path] | None = None) -> None:
        if paths is None:
            paths = [
                PROFILES_DIR / "r4" / "terminology.json",
                PROFILES_DIR / "ror",
                PROFILES_DIR / "sos",
                TERMINOLOGY_DIR,
            ]
        self._valuesets: dict[str, dict[str, Any]] = {}
        self._codesystems: dict[str, dict[str, Any]] = {}
        self._expansions: dict[str, set[tuple[str, str]] | None] = {}
        for res in iter_json_resources(p for p in paths if p.exists()):
            self.add(res)

    def add(self, res: dict[str, Any]) -> None:
        kind = res.get("resourceType")
        if kind == "ValueSet" and res.get("url"):
            self._valuesets[res["url"]] = res
        elif kind == "CodeSystem" and res.get("url"):
            self._codesystems[res["url"]] = res
        self._expansions.clear()

    def validate_code(self, valueset_url: str, system: str | None, code: str) -> bool | None:
        stored = _ACTIVE.get()
        expansion = stored.members(canonical(valueset_url)) if stored is not None else None
        if expansion is None:
            expansion = self._expand(canonical(valueset_url), set())
        if expansion is None:
            return None
        if system is None:
            return any(c == code for _, c in expansion)
        return (system, code) in expansion

    def _expand(self, url: str, seen: set[str]) -> set[tuple[str, str]] | None:
        if url in self._expansions:
            return self._expansions[url]
        vs = self._valuesets.get(url)
        if vs is None or url in seen:
            return None
        seen.add(url)
        result: set[tuple[str, str]] | None = set()
        if "expansion" in vs and "compose" not in vs:
            result = _flatten_expansion(vs["expansion"].get("contains", []))
        for inc in vs.get("compose", {}).get("include", []):
            part = self._include(inc, seen)
            if part is None:
                result = None
                break
            result |= part
        if result is not None:
            for exc in vs.get("compose", {}).get("exclude", []):
                result -= self._include(exc, seen) or set()
        self._expansions[url] = result
        return result

    def _include(self, inc: dict[str, Any], seen: set[str]) -> set[tuple[str, str]] | None:
        codes: set[tuple[str, str]] | None = None
        system = inc.get("system")
        if system:
            if inc.get("concept"):
                codes = {(system, c["code"]) for c in inc["concept"]}
            else:
                cs = self._codesystems.get(system)
                if cs is None or cs.get("content") in ("not-present", "example"):
                    return None
                codes = _codesystem_codes(cs, inc.get("filter", []))
                if codes is None:
                    return None
        for nested in inc.get("valueSet", []):
            part = self._expand(canonical(nested), seen)
            if part is None:
                return None
            codes = part if codes is None else codes & part
        return codes or set()


def _flatten_expansion(contains: list[dict[str, Any]]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for c in contains:
        if "code" in c and not c.get("abstract"):
            out.add((c.get("system", ""), c["code"]))
        out |= _flatten_expansion(c.get("contains", []))
    return out


def _codesystem_codes(cs: dict[str, Any], filters: list[dict[str, Any]]) -> set[tuple[str, str]] | None:
    """All codes of a CodeSystem, or those under is-a / descendent-of / code regex filters."""
    parents: dict[str, str | None] = {}

    def walk(concepts: list[dict[str, Any]], parent: str | None) -> None:
        for c in concepts:
            parents[c["code"]] = parent
            for prop in c.get("property", []):
                if prop.get("code") == "parent" and prop.get("valueCode"):
                    parents[c["code"]] = prop["valueCode"]
            walk(c.get("concept", []), c["code"])

    walk(cs.get("concept", []), None)
    codes = set(parents)
    for f in filters:
        if f.get("property") in ("code", "concept") and f.get("op") == "regex":
            # as the terminology service does: the whole code matches the pattern
            try:
                pattern = compile_filter(str(f.get("value", "")))
            except BadRequest:
                return None  # the service reports the broken ValueSet; here: unknown
            codes = {c for c in codes if pattern.matches(c)}
            continue
        if f.get("property") != "concept" or f.get("op") not in ("is-a", "descendent-of"):
            return None
        root = f.get("value")

        def under(code: str, root: str = root) -> bool:
            seen: set[str] = set()
            while code is not None and code not in seen:
                if code == root:
                    return True
                seen.add(code)
                code = parents.get(code)  # type: ignore[assignment]
            return False

        codes = {c for c in codes if under(c) and (f["op"] == "is-a" or c != root)}
    return {(cs["url"], c) for c in codes}


# ------------------------------------------------------------------ the database's terminology

# Members of stored ValueSets: (database, ValueSet url) -> (terminology generation, pairs or
# None when the database holds no such ValueSet). An entry is only used at the generation it
# was computed at, so any write of a CodeSystem or ValueSet, by any process, invalidates it.
_MEMBERS: dict[tuple[str, str], tuple[tuple[Any, ...], frozenset[tuple[str, str]] | None]] = {}
_MEMBERS_SIZE = 512


class _StoredTerminology:
    """One validation's view of the database terminology. The generation is read once, at the
    first binding checked, so a resource with ten coded elements costs one query when the
    cache is warm, and every binding of it is checked against the same terminology."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.database = engine.url.render_as_string(hide_password=True)
        self.generation: tuple[Any, ...] | None = None
        self.broken = False

    def _cached(self, url: str) -> tuple[bool, frozenset[tuple[str, str]] | None]:
        hit = _MEMBERS.get((self.database, url))
        if hit is not None and self.generation is not None and hit[0] == self.generation:
            return True, hit[1]
        return False, None

    def members(self, url: str) -> frozenset[tuple[str, str]] | None:
        """The (system, code) pairs of the stored ValueSet `url`; None when the database does not
        hold it (or cannot expand it): the caller then asks the files."""
        if self.broken:
            return None
        found, pairs = self._cached(url)
        if found:
            return pairs
        # Imported lazily: the terminology service imports storage, which validation must not
        # need when it runs without a database (tests, `fhirsrv load` before the schema exists).
        from fhirsrv.terminology import store, valueset

        try:
            with read_transaction(self.engine) as conn:
                if self.generation is None:
                    self.generation = valueset.generation(conn)
                    found, pairs = self._cached(url)
                    if found:
                        return pairs
                vs = store.by_url(conn, "ValueSet", url)
                try:
                    pairs = (
                        None
                        if vs is None
                        else frozenset((c.system, c.code) for c in valueset.codes(conn, vs))
                    )
                except (NotFound, BadRequest) as exc:
                    # e.g. a national ValueSet naming a code system the database lacks
                    log.info("ValueSet %s cannot be expanded from the database (%s); using files", url, exc)
                    pairs = None
        except SQLAlchemyError as exc:
            # The reason in fixed words, or the error's type: a driver's message quotes the
            # statement and its parameters, and goes to no log.
            fault = unavailability(exc)
            reason = fault.reason if fault else type(exc).__name__
            log.warning("Terminology database unavailable for validation, using files: %s", reason)
            self.broken = True
            return None
        if len(_MEMBERS) >= _MEMBERS_SIZE:
            _MEMBERS.clear()
        _MEMBERS[(self.database, url)] = (self.generation, pairs)
        return pairs


_ACTIVE: ContextVar[_StoredTerminology | None] = ContextVar("fhirsrv_stored_terminology", default=None)


@contextmanager
def stored_terminology(engine: Engine) -> Iterator[None]:
    """Check bindings against the terminology stored in this database for the duration of the
    block (one resource's validation), falling back to the files for what it does not hold."""
    token = _ACTIVE.set(_StoredTerminology(engine))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def clear_cache() -> None:
    """Forget cached memberships (tests; generation checks already keep them fresh)."""
    _MEMBERS.clear()
