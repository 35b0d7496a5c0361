"""ConceptMap $translate, in both directions (reverse=true)."""

from __future__ import annotations

from typing import Any


def _scope(conceptmap: dict[str, Any], side: str) -> str | None:
    return conceptmap.get(f"{side}Canonical") or conceptmap.get(f"{side}Uri")


def candidates(
    maps: list[dict[str, Any]],
    system: str | None,
    source: str | None,
    target: str | None,
    target_system: str | None,
    reverse: bool,
) -> list[dict[str, Any]]:
    """The ConceptMaps that can answer a $translate named by scope instead of url: their value
    set scopes match `source`/`target` and a group goes from `system` to `target_system`
    (read backwards when `reverse`)."""
    if reverse:
        source, target = target, source
    found = []
    for cm in maps:
        if source and _scope(cm, "source") != source:
            continue
        if target and _scope(cm, "target") != target:
            continue
        groups = cm.get("group") or []
        from_key, to_key = ("target", "source") if reverse else ("source", "target")
        if system and not any(g.get(from_key) == system for g in groups):
            continue
        if target_system and not any(g.get(to_key) == target_system for g in groups):
            continue
        found.append(cm)
    return found


def translate_many(
    maps: list[dict[str, Any]], system: str | None, code: str, reverse: bool, target_system: str | None
) -> dict[str, Any]:
    """$translate over several ConceptMaps: the matches of each, one answer."""
    matches = []
    for cm in maps:
        answer = translate(cm, system, code, reverse, target_system)
        matches += [p for p in answer["parameter"] if p["name"] == "match"]
    params: list[dict[str, Any]] = [{"name": "result", "valueBoolean": bool(matches)}]
    if not matches:
        params.append(
            {"name": "message", "valueString": f"No mapping for code '{code}' in {len(maps)} ConceptMap(s)"}
        )
    return {"resourceType": "Parameters", "parameter": params + matches}


def translate(
    conceptmap: dict[str, Any], system: str | None, code: str, reverse: bool, target_system: str | None = None
) -> dict[str, Any]:
    matches: list[dict[str, Any]] = []
    for group in conceptmap.get("group") or []:
        source, target = group.get("source"), group.get("target")
        for element in group.get("element") or []:
            for tgt in element.get("target") or []:
                if tgt.get("equivalence") in ("unmatched", "disjoint") or "code" not in tgt:
                    continue
                if (
                    not reverse
                    and element.get("code") == code
                    and system in (None, source)
                    and target_system in (None, target)
                ):
                    matches.append(
                        _match(tgt.get("equivalence", "equivalent"), target, tgt["code"], tgt.get("display"))
                    )
                if (
                    reverse
                    and tgt.get("code") == code
                    and system in (None, target)
                    and target_system in (None, source)
                ):
                    matches.append(
                        _match(
                            _inverse(tgt.get("equivalence", "equivalent")),
                            source,
                            element["code"],
                            element.get("display"),
                        )
                    )
    params: list[dict[str, Any]] = [{"name": "result", "valueBoolean": bool(matches)}]
    if not matches:
        params.append(
            {"name": "message", "valueString": f"No mapping for code '{code}' in {conceptmap.get('url')}"}
        )
    params += matches
    return {"resourceType": "Parameters", "parameter": params}


def _match(equivalence: str, system: str | None, code: str, display: str | None) -> dict[str, Any]:
    concept: dict[str, Any] = {"system": system, "code": code}
    if display:
        concept["display"] = display
    return {
        "name": "match",
        "part": [
            {"name": "equivalence", "valueCode": equivalence},
            {"name": "concept", "valueCoding": concept},
        ],
    }


def _inverse(equivalence: str) -> str:
    return {
        "wider": "narrower",
        "narrower": "wider",
        "subsumes": "specializes",
        "specializes": "subsumes",
    }.get(equivalence, equivalence)
