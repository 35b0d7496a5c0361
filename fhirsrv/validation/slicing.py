"""Assigning repeated values to slices by their value/pattern discriminators.

A slice is recognised by what its definition fixes at the discriminator path: a fixed or
pattern value on a child element (specialty:sosService.coding.system), a pattern on the slice
itself (patternCodeableConcept.coding.system), the profile of an extension slice (url), or the
fixed value of a nested extension (extension(url)). Only value and pattern discriminators are
supported; a slice whose discriminators cannot be read matches nothing, so it can never pass
a value off as conforming.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fhirsrv.validation.definitions import Snapshot

_MISSING = object()
_EXTENSION_CALL = re.compile(r"^extension\(['\"]?([^'\")]+)['\"]?\)$")


_FIXED_CACHE: dict[int, tuple[dict[str, Any], tuple[str, Any] | None]] = {}


def fixed_or_pattern(el: dict[str, Any]) -> tuple[str, Any] | None:
    """('fixed'|'pattern', value) of an element definition, if it has one.

    Asked for every value of every element, so the answer is memoised per definition (the
    definition is kept in the cache too, so its id cannot be reused by another dict).
    """
    hit = _FIXED_CACHE.get(id(el))
    if hit is not None and hit[0] is el:
        return hit[1]
    found = _scan_fixed_or_pattern(el)
    _FIXED_CACHE[id(el)] = (el, found)
    return found


def _scan_fixed_or_pattern(el: dict[str, Any]) -> tuple[str, Any] | None:
    for key, value in el.items():
        if key.startswith("fixed") and key != "fixed":
            return "fixed", value
        if key.startswith("pattern") and key != "pattern":
            return "pattern", value
    return None


def matches_pattern(value: Any, pattern: Any) -> bool:
    """FHIR pattern semantics: every property of the pattern is present with the same value."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            matches_pattern(value.get(k, _MISSING), v) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else [value]
        return all(any(matches_pattern(i, p) for i in items) for p in pattern)
    return value == pattern


def _navigate(value: Any, path: list[str]) -> list[Any]:
    """Values reached by following a dotted path through dicts and (flattened) lists."""
    current = [value]
    for segment in path:
        nxt: list[Any] = []
        for v in current:
            if isinstance(v, dict):
                child = v.get(segment, _MISSING)
                if child is _MISSING:
                    continue
                nxt.extend(child if isinstance(child, list) else [child])
        current = nxt
    return current


def _extension_value(ext: dict[str, Any]) -> Any:
    for key, value in ext.items():
        if key.startswith("value"):
            return value
    return _MISSING


@dataclass
class Discriminated:
    """One slice and the value each discriminator expects (None: the slice does not say)."""

    element: dict[str, Any]
    expected: list[Any]


def slice_table(snap: Snapshot, sliced: dict[str, Any]) -> list[Discriminated]:
    """The slices of `sliced` with their expected discriminator values (cached on the snapshot)."""
    cache = snap.__dict__.setdefault("_slice_tables", {})
    table = cache.get(sliced["id"])
    if table is None:
        discriminators = sliced.get("slicing", {}).get("discriminator", [])
        table = [
            Discriminated(el, [_expected(snap, el, d) for d in discriminators])
            for el in snap.slices.get(sliced["id"], [])
        ]
        cache[sliced["id"]] = table
    return table


def _expected(snap: Snapshot, slice_el: dict[str, Any], disc: dict[str, Any]) -> Any:
    if disc.get("type") not in ("value", "pattern"):
        return None
    path = disc.get("path", "$this")
    call = _EXTENSION_CALL.match(path)
    if call:
        return _expected_extension(snap, slice_el, call.group(1))
    if path == "$this":
        found = fixed_or_pattern(slice_el)
        return found[1] if found else None
    child = snap.elements.get(f"{slice_el['id']}.{path}")
    if child is not None and (found := fixed_or_pattern(child)):
        return found[1]
    own = fixed_or_pattern(slice_el)
    if own is not None:
        reached = _navigate(own[1], path.split("."))
        if reached:
            return reached[0]
    if path == "url":
        types = slice_el.get("type", [])
        if types and types[0].get("code") == "Extension" and types[0].get("profile"):
            return types[0]["profile"][0]
    return None


def _expected_extension(snap: Snapshot, slice_el: dict[str, Any], url: str) -> Any:
    prefix = f"{slice_el['id']}.extension:"
    for el_id, el in snap.elements.items():
        if not el_id.startswith(prefix) or "." in el_id[len(prefix) :]:
            continue
        types = el.get("type", [])
        url_el = snap.elements.get(f"{el_id}.url", {})
        if (types and url in (types[0].get("profile") or [])) or url_el.get("fixedUri") == url:
            value_el = snap.elements.get(f"{el_id}.value[x]")
            found = fixed_or_pattern(value_el) if value_el else None
            return found[1] if found else None
    return None


def actual_values(value: Any, disc: dict[str, Any]) -> list[Any]:
    path = disc.get("path", "$this")
    call = _EXTENSION_CALL.match(path)
    if call:
        exts = value.get("extension", []) if isinstance(value, dict) else []
        return [
            v for e in exts if e.get("url") == call.group(1) and (v := _extension_value(e)) is not _MISSING
        ]
    if path == "$this":
        return [value]
    return _navigate(value, path.split("."))


def find_slice(table: list[Discriminated], sliced: dict[str, Any], value: Any) -> dict[str, Any] | None:
    """The first slice every readable discriminator of which the value satisfies."""
    discriminators = sliced.get("slicing", {}).get("discriminator", [])
    for entry in table:
        known = [(d, e) for d, e in zip(discriminators, entry.expected, strict=True) if e is not None]
        if known and all(any(matches_pattern(a, e) for a in actual_values(value, d)) for d, e in known):
            return entry.element
    return None
