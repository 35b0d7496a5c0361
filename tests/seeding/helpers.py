"""Reading NDJSON output back, and walking references, for the seeding tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson


def read_dir(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Resources per type, from every NDJSON file of `directory` (in file order)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            res = orjson.loads(line)
            out.setdefault(res["resourceType"], []).append(res)
    return out


def references(node: Any) -> Iterator[str]:
    """Every Reference.reference anywhere in a resource (valueReference included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def dangling(by_type: dict[str, list[dict[str, Any]]]) -> list[str]:
    known = {f"{t}/{r['id']}" for t, resources in by_type.items() for r in resources}
    return sorted(
        f"{t}/{r['id']} -> {target}"
        for t, resources in by_type.items()
        for r in resources
        for target in references(r)
        if target not in known
    )


def codes(concepts: list[dict[str, Any]], system: str) -> list[str]:
    return [c["code"] for cc in concepts for c in cc.get("coding", []) if c.get("system") == system]


def lifecycle(service: dict[str, Any]) -> dict[str, Any]:
    (ext,) = [e for e in service["extension"] if e["url"].endswith("/sos-entry-lifecycle")]
    out: dict[str, Any] = {}
    for part in ext["extension"]:
        value_key = next(k for k in part if k.startswith("value"))
        out[part["url"]] = part[value_key]
    return out
