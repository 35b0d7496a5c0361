"""ConceptMap $translate, in both directions (reverse=true)."""

from __future__ import annotations

from typing import Any


def translate(
    conceptmap: dict[str, Any], system: str | None, code: str, reverse: bool, target_system: str | None = None
) -> dict[str, Any]:
    matches: list[dict[str, Any]] = []
    for group in conceptmap.get("group") or []:
        source, target = group.get("source"), group.get("target")
        for element in group.get("element") or []:
            for tgt in element.get("target") or []:
                if tgt.get("equivalence") == "unmatched" or "code" not in tgt:
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
