"""CodeSystem $lookup, $validate-code and $subsumes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, select

from fhirsrv.errors import BadRequest, NotFound
from fhirsrv.storage.schema import code_closure


def iter_concepts(
    concepts: list[dict[str, Any]], parent: str | None = None
) -> Iterator[tuple[dict[str, Any], str | None]]:
    for concept in concepts or []:
        yield concept, parent
        yield from iter_concepts(concept.get("concept") or [], concept.get("code"))


def find_concept(codesystem: dict[str, Any], code: str) -> tuple[dict[str, Any], str | None] | None:
    sensitive = codesystem.get("caseSensitive", True)
    for concept, parent in iter_concepts(codesystem.get("concept") or []):
        other = concept.get("code", "")
        if other == code or (not sensitive and other.lower() == code.lower()):
            return concept, parent
    return None


def display_in(concept: dict[str, Any], language: str | None, default_language: str | None) -> str | None:
    """The display in the language asked (designations), else the concept's own display."""
    if language and language.split("-")[0] != (default_language or "fr").split("-")[0]:
        for designation in concept.get("designation") or []:
            if (designation.get("language") or "").split("-")[0] == language.split("-")[0]:
                return designation.get("value")
    return concept.get("display")


def lookup(
    codesystem: dict[str, Any], code: str, language: str | None, properties: list[str]
) -> dict[str, Any]:
    found = find_concept(codesystem, code)
    if found is None:
        raise NotFound(
            f"Code '{code}' is not in the code system {codesystem.get('url')}", code="code-invalid"
        )
    concept, parent = found
    params: list[dict[str, Any]] = [{"name": "name", "valueString": codesystem.get("name", "")}]
    if codesystem.get("version"):
        params.append({"name": "version", "valueString": codesystem["version"]})
    params.append(
        {"name": "display", "valueString": display_in(concept, language, codesystem.get("language")) or ""}
    )
    if concept.get("definition"):
        params.append({"name": "definition", "valueString": concept["definition"]})
    for designation in concept.get("designation") or []:
        parts = [{"name": "value", "valueString": designation.get("value", "")}]
        if designation.get("language"):
            parts.insert(0, {"name": "language", "valueCode": designation["language"]})
        params.append({"name": "designation", "part": parts})
    props = [
        (p["code"], p) for p in concept.get("property") or [] if p.get("code") not in ("parent", "child")
    ]
    props += [("parent", {"valueCode": parent})] if parent else []
    props += [("child", {"valueCode": c["code"]}) for c in concept.get("concept") or []]
    for name, prop in props:
        if properties and name not in properties:
            continue
        value = {k: v for k, v in prop.items() if k.startswith("value")}
        params.append(
            {"name": "property", "part": [{"name": "code", "valueCode": name}, {"name": "value", **value}]}
        )
    return {"resourceType": "Parameters", "parameter": params}


def validate_code(codesystem: dict[str, Any], code: str, display: str | None) -> dict[str, Any]:
    found = find_concept(codesystem, code)
    url = codesystem.get("url")
    if found is None:
        return _result(False, f"Code '{code}' is not in the code system {url}")
    concept, _ = found
    shown = concept.get("display")
    if display is not None:
        accepted = {shown} | {d.get("value") for d in concept.get("designation") or []}
        if display not in accepted:
            return _result(False, f"Wrong display '{display}' for {url}#{code}: expected '{shown}'", shown)
    return _result(True, None, shown)


def _result(ok: bool, message: str | None, display: str | None = None) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": "result", "valueBoolean": ok}]
    if message:
        params.append({"name": "message", "valueString": message})
    if display:
        params.append({"name": "display", "valueString": display})
    return {"resourceType": "Parameters", "parameter": params}


def subsumes(conn: Connection, codesystem: dict[str, Any], code_a: str, code_b: str) -> str:
    for code in (code_a, code_b):
        if find_concept(codesystem, code) is None:
            raise BadRequest(
                f"Code '{code}' is not in the code system {codesystem.get('url')}", code="code-invalid"
            )
    if code_a == code_b:
        return "equivalent"
    system = codesystem["url"]

    def is_ancestor(ancestor: str, descendant: str) -> bool:
        return (
            conn.execute(
                select(code_closure.c.system)
                .where(
                    code_closure.c.system == system,
                    code_closure.c.ancestor == ancestor,
                    code_closure.c.descendant == descendant,
                )
                .limit(1)
            ).first()
            is not None
        )

    if is_ancestor(code_a, code_b):
        return "subsumes"
    if is_ancestor(code_b, code_a):
        return "subsumed-by"
    return "not-subsumed"
