"""StructureDefinitions and their snapshots, computed lazily in memory.

Profiles are shipped in differential form (what they change), as FHIR Shorthand produces
them. A validator needs the full tree, so the snapshot of a profile is its differential merged
over the snapshot of its base, recursively down to the HL7 core definitions in profiles/r4.
Each snapshot is computed once per process and cached: profiles are data loaded at start-up.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"


class ProfileError(Exception):
    """A StructureDefinition that cannot be turned into a snapshot (a bug in the profile)."""


class StructureDefinitionSource(Protocol):
    def get(self, url: str) -> dict[str, Any] | None:
        """The StructureDefinition with this canonical URL (a `|version` suffix is ignored)."""
        ...


def canonical(url: str) -> str:
    return url.split("|", 1)[0]


def core_url(type_code: str) -> str:
    return type_code if "/" in type_code else CORE_PREFIX + type_code


def iter_json_resources(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every resource in the JSON files under `paths` (files or directories; Bundles unpacked)."""
    for root in paths:
        files = sorted(root.rglob("*.json")) if root.is_dir() else [root]
        for file in files:
            data = json.loads(file.read_text(encoding="utf-8"))
            if data.get("resourceType") == "Bundle":
                yield from (e["resource"] for e in data.get("entry", []) if "resource" in e)
            else:
                yield data


class DirectorySource:
    """StructureDefinitions read from JSON files: the project's profiles/ by default."""

    def __init__(self, paths: Iterable[Path] | None = None) -> None:
        if paths is None:
            paths = [PROFILES_DIR / "r4", PROFILES_DIR / "ror", PROFILES_DIR / "sos"]
        self._by_url: dict[str, dict[str, Any]] = {}
        for res in iter_json_resources(p for p in paths if p.exists()):
            if res.get("resourceType") == "StructureDefinition" and res.get("url"):
                self._by_url[res["url"]] = res

    def add(self, sd: dict[str, Any]) -> None:
        self._by_url[sd["url"]] = sd

    def get(self, url: str) -> dict[str, Any] | None:
        return self._by_url.get(canonical(url))

    def urls(self) -> list[str]:
        return list(self._by_url)


@dataclass
class Snapshot:
    """The full element tree of one StructureDefinition, indexed for the validator's walk."""

    sd: dict[str, Any]
    elements: dict[str, dict[str, Any]]
    children: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    slices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.sd["url"]

    @property
    def root_id(self) -> str:
        return next(iter(self.elements))

    def __post_init__(self) -> None:
        for el_id, el in self.elements.items():
            if "." not in el_id:
                continue
            parent, last = el_id.rsplit(".", 1)
            name, _, slice_name = last.partition(":")
            if slice_name:
                self.slices.setdefault(f"{parent}.{name}", []).append(el)
            else:
                self.children.setdefault(parent, []).append(el)


def _split(el_id: str) -> tuple[str, str]:
    if "." not in el_id:
        raise ProfileError(f"'{el_id}' is not an element of a resource or type")
    return el_id.rsplit(".", 1)  # type: ignore[return-value]


class SnapshotBuilder:
    """Turns differentials into snapshots, with a per-URL cache shared by all validations."""

    def __init__(self, source: StructureDefinitionSource) -> None:
        self.source = source
        self._cache: dict[str, Snapshot] = {}
        self._lock = threading.RLock()

    def get(self, url: str) -> Snapshot | None:
        url = canonical(core_url(url))
        snap = self._cache.get(url)
        if snap is None:
            sd = self.source.get(url)
            if sd is None:
                return None
            with self._lock:
                snap = self._cache.get(url) or Snapshot(sd, self._elements(sd))
                self._cache[url] = snap
        return snap

    def _elements(self, sd: dict[str, Any]) -> dict[str, dict[str, Any]]:
        diff = sd.get("differential", {}).get("element")
        if not diff or not sd.get("baseDefinition"):
            if "snapshot" not in sd:
                raise ProfileError(f"{sd.get('url')} has neither a snapshot nor a base to derive one from")
            return {el["id"]: el for el in sd["snapshot"]["element"]}
        base = self.get(sd["baseDefinition"])
        if base is None:
            raise ProfileError(f"{sd['url']}: base {sd['baseDefinition']} is not known")
        elements = {k: copy.deepcopy(v) for k, v in base.elements.items()}
        base_root = next(iter(elements))
        own_root = sd.get("type", base_root)
        if own_root != base_root:
            raise ProfileError(f"{sd['url']} constrains {own_root} but its base is a {base_root}")
        for d in diff:
            target = self._ensure(elements, d["id"])
            _merge(target, d, sd["url"])
        return elements

    def _ensure(self, elements: dict[str, dict[str, Any]], el_id: str) -> dict[str, Any]:
        if el_id in elements:
            return elements[el_id]
        parent_id, last = _split(el_id)
        name, _, slice_name = last.partition(":")
        if slice_name:
            sliced_id = f"{parent_id}.{name}"
            sliced = self._ensure(elements, sliced_id)
            new = copy.deepcopy(sliced)
            new.pop("slicing", None)
            new.update(id=el_id, sliceName=slice_name, min=0)
            elements[el_id] = new
            prefix = sliced_id + "."
            for desc_id in [k for k in elements if k.startswith(prefix)]:
                elements[el_id + desc_id[len(sliced_id) :]] = copy.deepcopy(elements[desc_id]) | {
                    "id": el_id + desc_id[len(sliced_id) :]
                }
            return new
        parent = self._ensure(elements, parent_id)
        if not any(k.startswith(parent_id + ".") for k in elements):
            self._expand(elements, parent_id, parent)
        if el_id not in elements:
            raise ProfileError(f"'{el_id}' is not an element of {parent_id}")
        return elements[el_id]

    def _expand(self, elements: dict[str, dict[str, Any]], parent_id: str, parent: dict[str, Any]) -> None:
        """Inline the children of a datatype (or extension profile) under `parent_id`."""
        types = parent.get("type", [])
        if len(types) != 1:
            raise ProfileError(f"cannot constrain the children of {parent_id}: restrict it to one type first")
        profiles = types[0].get("profile") or [types[0]["code"]]
        snap = self.get(profiles[0]) or self.get(types[0]["code"])
        if snap is None:
            raise ProfileError(f"type {types[0]['code']} of {parent_id} is not known")
        root = snap.root_id
        for child_id, child in list(snap.elements.items())[1:]:
            rebased = copy.deepcopy(child)
            rebased["id"] = parent_id + child_id[len(root) :]
            rebased["path"] = parent["path"] + child["path"][len(root) :]
            elements[rebased["id"]] = rebased


def _merge(target: dict[str, Any], diff: dict[str, Any], source: str) -> None:
    for key, value in diff.items():
        if key in ("id", "path"):
            continue
        if key == "constraint":
            # Constraints add up along the derivation chain; the source says which to evaluate.
            target["constraint"] = target.get("constraint", []) + [
                c | {"source": c.get("source", source)} for c in value
            ]
        else:
            target[key] = copy.deepcopy(value)
