"""Search parameters as data: the R4 definitions, the SOS/ROR ones in profiles/, and any
SearchParameter resource stored at run time.

Each definition's FHIRPath expression is specialised per base type ("Resource.id" becomes
"HealthcareService.id") and compiled once; plain dotted paths skip FHIRPath entirely, which
keeps indexing cheap on the write path and in bulk loads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.models import models
from sqlalchemy import Connection, select

from fhirsrv.settings import Settings
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.schema import resource

R4_MODEL = models["r4"]
_SIMPLE = re.compile(r"^[A-Z][A-Za-z]+(\.[a-z][A-Za-z]*)+$")
ABSTRACT_BASES = ("Resource", "DomainResource")


def _walk(node: Any, parts: list[str]) -> list[Any]:
    values = node if isinstance(node, list) else [node]
    for part in parts:
        nxt: list[Any] = []
        for value in values:
            if isinstance(value, dict) and part in value:
                child = value[part]
                nxt.extend(child if isinstance(child, list) else [child])
        values = nxt
    return values


def _compile(expression: str) -> Callable[[dict[str, Any]], list[Any]]:
    alternatives = [alt.strip() for alt in expression.split("|")]
    if all(_SIMPLE.match(alt) for alt in alternatives):
        paths = [(alt.split(".")[0], alt.split(".")[1:]) for alt in alternatives]

        def evaluate(res: dict[str, Any]) -> list[Any]:
            out: list[Any] = []
            for res_type, parts in paths:
                if res.get("resourceType") == res_type:
                    out.extend(_walk(res, parts))
            return out

        return evaluate
    compiled = fhirpath_compile(expression, model=R4_MODEL)
    return lambda res: compiled(res)


@dataclass
class SearchParamDef:
    code: str
    type: str  # number date string token reference composite quantity uri special
    expression: str
    url: str = ""
    description: str = ""
    base: tuple[str, ...] = ()
    target: tuple[str, ...] = ()
    modifiers: tuple[str, ...] = ()
    evaluate: Callable[[dict[str, Any]], list[Any]] = field(default=lambda res: [], repr=False)


def _specialise(expression: str, res_type: str) -> str:
    """Keep the alternatives of a multi-type expression that concern res_type."""
    parts = [p.strip() for p in expression.split("|")]
    mine = []
    for part in parts:
        bare = part.strip("()")
        head = bare.split(".", 1)[0].split(" ", 1)[0]
        if head in ABSTRACT_BASES:
            mine.append(part.replace(f"{head}.", f"{res_type}.", 1))
        elif head == res_type:
            mine.append(part)
    return " | ".join(mine)


class SearchParamRegistry:
    def __init__(self) -> None:
        self._by_type: dict[str, dict[str, SearchParamDef]] = {}
        self._abstract: dict[str, dict[str, Any]] = {}
        self.known_types: set[str] = set()

    def add_definition(self, sp: dict[str, Any], types: Iterable[str]) -> None:
        if sp.get("status") == "retired" or sp.get("type") == "composite":
            return
        expression = sp.get("expression") or ""
        if not expression:
            return  # _text, _content, _query: not supported (and so not advertised)
        for base in sp.get("base") or []:
            targets = list(types) if base in ABSTRACT_BASES else [base]
            for res_type in targets:
                specialised = _specialise(expression, res_type) if expression else ""
                if expression and not specialised:
                    continue
                definition = SearchParamDef(
                    code=sp["code"],
                    type=sp["type"],
                    expression=specialised,
                    url=sp.get("url", ""),
                    description=sp.get("description", ""),
                    base=tuple(sp.get("base") or ()),
                    target=tuple(sp.get("target") or ()),
                    modifiers=tuple(sp.get("modifier") or ()),
                )
                if specialised:
                    try:
                        definition.evaluate = _compile(specialised)
                    except Exception:  # noqa: BLE001 - an expression fhirpathpy cannot compile is skipped
                        continue
                self._by_type.setdefault(res_type, {})[sp["code"]] = definition

    def for_type(self, res_type: str) -> list[SearchParamDef]:
        return list(self._by_type.get(res_type, {}).values())

    def get(self, res_type: str, code: str) -> SearchParamDef | None:
        return self._by_type.get(res_type, {}).get(code)


def _definitions_in(path: Path) -> Iterable[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("resourceType") == "Bundle":
        for entry in data.get("entry") or []:
            res = entry.get("resource") or {}
            if res.get("resourceType") == "SearchParameter":
                yield res
    elif data.get("resourceType") == "SearchParameter":
        yield data


def build_registry(settings: Settings, types: Iterable[str]) -> SearchParamRegistry:
    types = tuple(types)
    registry = SearchParamRegistry()
    registry.known_types = set(types)
    r4 = settings.profiles_dir / "r4" / "search-parameters.json"
    for sp in _definitions_in(r4):
        if set(sp.get("base") or ()) & (set(types) | set(ABSTRACT_BASES)):
            registry.add_definition(sp, types)
    if settings.profiles_dir.exists():
        for path in sorted(settings.profiles_dir.rglob("SearchParameter-*.json")):
            for sp in _definitions_in(path):
                registry.add_definition(sp, types)
    # Server-computed parameters with no FHIRPath of their own.
    for res_type in types:
        registry._by_type.setdefault(res_type, {})
    return registry


def stored_definitions(conn: Connection) -> Iterable[dict[str, Any]]:
    rows = conn.execute(
        select(resource.c.content).where(
            resource.c.res_type == "SearchParameter", resource.c.deleted.is_(False)
        )
    )
    for (content,) in rows:
        sp = loads(content)
        if sp.get("status") in ("active", "draft"):
            yield sp
