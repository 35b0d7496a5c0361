"""_summary and _elements: the subsets of a resource a client may ask for.

Which elements are "summary" comes from the R4 StructureDefinitions (isSummary), extracted once
into summary_elements.json so the server never reads the specification at run time. A shaped
resource is marked with the SUBSETTED tag, as the specification requires.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from fhirsrv.errors import BadRequest

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
SUMMARY_MODES = ("true", "false", "text", "data", "count")
_ALWAYS = ("resourceType", "id", "meta")


@cache
def _definitions() -> dict[str, dict[str, list[str]]]:
    return json.loads((Path(__file__).parent / "summary_elements.json").read_text())


def _matches(key: str, names: list[str]) -> bool:
    for name in names:
        if name.endswith("[x]"):
            if key.startswith(name[:-3]) and key[len(name) - 3 : len(name) - 2].isupper():
                return True
        elif key == name:
            return True
    return False


def _mark_subsetted(res: dict[str, Any]) -> None:
    meta = dict(res.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, dict(SUBSETTED)]
    res["meta"] = meta


def parse_summary(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in SUMMARY_MODES:
        raise BadRequest(f"_summary must be one of {', '.join(SUMMARY_MODES)}, not '{value}'")
    return None if value == "false" else value


def parse_elements(values: list[str]) -> list[str] | None:
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return names or None


def shape(res: dict[str, Any], summary: str | None, elements: list[str] | None) -> dict[str, Any]:
    """Return the subset of `res` asked for (a new dict), or `res` itself if nothing is asked."""
    if summary in (None, "false") and not elements:
        return res
    definition = _definitions().get(res.get("resourceType", ""), {"summary": [], "mandatory": []})
    mandatory = definition["mandatory"]
    if summary == "true":
        keep = definition["summary"] + mandatory
        out = {k: v for k, v in res.items() if k in _ALWAYS or _matches(k, keep)}
    elif summary == "text":
        out = {k: v for k, v in res.items() if k in (*_ALWAYS, "text") or _matches(k, mandatory)}
    elif summary == "data":
        out = {k: v for k, v in res.items() if k != "text"}
    else:
        # _elements: only top-level names are meaningful in R4; a dotted name keeps its root.
        roots = [e.split(".", 1)[0] for e in elements or []]
        out = {k: v for k, v in res.items() if k in _ALWAYS or _matches(k, roots + mandatory)}
    _mark_subsetted(out)
    return out
