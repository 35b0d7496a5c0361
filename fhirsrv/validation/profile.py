"""Validation of a resource against a StructureDefinition and, through its snapshot, its bases.

The walk follows the instance and the snapshot together: for each element definition it checks
cardinality, choice types, slices, fixed/pattern values, bindings, the profiles of typed
elements (extensions) and the profile's own invariants, then descends into complex values
(into the datatype's definition when the profile says nothing about their children). Every
issue carries the FHIRPath of the offending element, e.g. HealthcareService.telecom[0].system,
so a client can find and fix it.

Core invariants are not evaluated (ele-1, "a value or children", is the structural check's
rule against empty objects; dom-* are not checked); the invariants a profile adds are
evaluated with fhirpathpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.models import models as fhirpath_models

from fhirsrv.errors import Issue
from fhirsrv.validation.codes import CodeChecker
from fhirsrv.validation.definitions import (
    CORE_PREFIX,
    ProfileError,
    Snapshot,
    SnapshotBuilder,
    StructureDefinitionSource,
    canonical,
)
from fhirsrv.validation.slicing import find_slice, fixed_or_pattern, matches_pattern, slice_table

# Assigned by the server on every write: a client need not (and cannot) supply them.
SERVER_ASSIGNED = frozenset({"meta.lastUpdated", "meta.versionId"})
_PRIMITIVES = frozenset(
    [
        "base64Binary",
        "boolean",
        "canonical",
        "code",
        "date",
        "dateTime",
        "decimal",
        "id",
        "instant",
        "integer",
        "markdown",
        "oid",
        "positiveInt",
        "string",
        "time",
        "unsignedInt",
        "uri",
        "url",
        "uuid",
        "xhtml",
    ]
)
_FHIRPATH_MODEL = fhirpath_models["r4"]
_compiled: dict[str, Callable[..., list[Any]]] = {}


def _fhirpath(expression: str) -> Callable[..., list[Any]]:
    fn = _compiled.get(expression)
    if fn is None:
        fn = _compiled[expression] = compile_fhirpath(expression, _FHIRPATH_MODEL)
    return fn


@dataclass
class _Run:
    """State of one validation: the resource (for %resource) and the issues found so far."""

    resource: dict[str, Any]
    issues: list[Issue] = field(default_factory=list)
    unknown_valuesets: set[str] = field(default_factory=set)

    def error(self, code: str, path: str, message: str) -> None:
        self.issues.append(Issue("error", code, f"{path}: {message}", [path]))

    def warning(self, code: str, path: str, message: str) -> None:
        self.issues.append(Issue("warning", code, f"{path}: {message}", [path]))


class ProfileValidator:
    """Applies StructureDefinitions (profiles and core definitions) to resources."""

    def __init__(
        self,
        definitions: StructureDefinitionSource,
        terminology: CodeChecker | None = None,
        *,
        server_assigned: frozenset[str] = SERVER_ASSIGNED,
    ) -> None:
        self.snapshots = SnapshotBuilder(definitions)
        self.terminology = terminology
        self.server_assigned = server_assigned

    def validate(self, res: dict[str, Any], profile_url: str) -> list[Issue]:
        res_type = res.get("resourceType", "")
        try:
            snap = self.snapshots.get(profile_url)
        except ProfileError as exc:
            return [Issue("error", "exception", f"Profile {profile_url} is broken: {exc}", [])]
        if snap is None:
            return [Issue("error", "not-found", f"Profile {profile_url} is not known to this server", [])]
        if snap.sd.get("type") != res_type:
            msg = f"Profile {profile_url} applies to {snap.sd.get('type')}, not to {res_type}"
            return [Issue("error", "invalid", msg, ["resourceType"] if res_type else [])]
        run = _Run(res)
        self._value(run, snap, snap.elements[snap.root_id], res, res_type)
        return run.issues

    # -- the walk -------------------------------------------------------------------------

    def _node(self, run: _Run, snap: Snapshot, el_id: str, node: dict[str, Any], path: str) -> None:
        for child in snap.children.get(el_id, ()):
            name = child["id"].rsplit(".", 1)[1]
            present = self._present(run, child, node, name, path)
            if child.get("slicing") and snap.slices.get(child["id"]):
                # Values in a slice are checked against the slice only (it refines the base).
                present = self._sliced(run, snap, child, present, path, name)
            for value, value_path in present:
                self._value(run, snap, child, value, value_path)

    def _present(
        self, run: _Run, el: dict[str, Any], node: dict[str, Any], name: str, path: str
    ) -> list[tuple[Any, str]]:
        """The instance values of one element, with their paths; checks cardinality and types."""
        found: list[tuple[Any, str]] = []
        if name.endswith("[x]"):
            stem = name[:-3]
            allowed = {t["code"] for t in el.get("type", [])}
            for key, raw in node.items():
                if not key.startswith(stem) or len(key) == len(stem) or not key[len(stem)].isupper():
                    continue
                suffix = key[len(stem) :]
                type_code = (
                    suffix
                    if suffix not in {p[0].upper() + p[1:] for p in _PRIMITIVES}
                    else suffix[0].lower() + suffix[1:]
                )
                if allowed and type_code not in allowed:
                    run.error(
                        "invalid",
                        f"{path}.{key}",
                        f"type {type_code} is not allowed here (expected {', '.join(sorted(allowed))})",
                    )
                    continue
                found.extend(_items(raw, f"{path}.{key}"))
        elif name in node:
            found = _items(node[name], f"{path}.{name}")
        minimum, maximum = el.get("min", 0), el.get("max", "*")
        relative = el["path"].split(".", 1)[1] if "." in el["path"] else ""
        if len(found) < minimum and relative not in self.server_assigned:
            run.error("required", f"{path}.{name}", f"minimum cardinality is {minimum}, found {len(found)}")
        if maximum != "*" and len(found) > int(maximum):
            where = f"{path}.{name}" if maximum != "0" else found[0][1]
            run.error("invalid", where, f"maximum cardinality is {maximum}, found {len(found)}")
        return found

    def _sliced(
        self,
        run: _Run,
        snap: Snapshot,
        el: dict[str, Any],
        present: list[tuple[Any, str]],
        path: str,
        name: str,
    ) -> list[tuple[Any, str]]:
        """Checks the slices; answers the values that belong to none of them."""
        table = slice_table(snap, el)
        unsliced: list[tuple[Any, str]] = []
        counts: dict[str, list[tuple[Any, str]]] = {t.element["sliceName"]: [] for t in table}
        for value, value_path in present:
            hit = find_slice(table, el, value)
            if hit is None:
                if el["slicing"].get("rules") == "closed":
                    run.error(
                        "invalid",
                        value_path,
                        f"matches none of the slices of {name} and the slicing is closed",
                    )
                unsliced.append((value, value_path))
                continue
            counts[hit["sliceName"]].append((value, value_path))
        for entry in table:
            slice_name = entry.element["sliceName"]
            members = counts[slice_name]
            minimum, maximum = entry.element.get("min", 0), entry.element.get("max", "*")
            label = _slice_label(el, entry)
            if len(members) < minimum:
                run.error(
                    "required",
                    label.format(path=path),
                    f"slice '{slice_name}' needs at least {minimum}, found {len(members)}",
                )
            if maximum != "*" and len(members) > int(maximum):
                run.error(
                    "invalid",
                    members[0][1],
                    f"slice '{slice_name}' allows at most {maximum}, found {len(members)}",
                )
            for value, value_path in members:
                self._value(run, snap, entry.element, value, value_path)
        return unsliced

    def _value(self, run: _Run, snap: Snapshot, el: dict[str, Any], value: Any, path: str) -> None:
        fp = fixed_or_pattern(el)
        if fp is not None:
            kind, expected = fp
            if (kind == "fixed" and value != expected) or (
                kind == "pattern" and not matches_pattern(value, expected)
            ):
                run.error("value", path, f"must be {'exactly' if kind == 'fixed' else 'like'} {expected!r}")
        binding = el.get("binding")
        if binding and binding.get("valueSet") and binding.get("strength") in ("required", "extensible"):
            self._binding(run, el, binding, value, path)
        for constraint in el.get("constraint", ()):
            source = constraint.get("source", CORE_PREFIX)
            if constraint.get("expression") and not source.startswith(CORE_PREFIX):
                self._invariant(run, constraint, value, path)
        types = el.get("type", [])
        typed_profiles = types[0].get("profile", []) if len(types) == 1 else []
        for url in typed_profiles:
            self._typed_profile(run, url, value, path)
        if not isinstance(value, dict):
            return
        if snap.children.get(el["id"]):
            # The profile refines this element's children itself (e.g. a fixed extension value).
            self._node(run, snap, el["id"], value, path)
        elif el.get("contentReference"):
            self._node(run, snap, el["contentReference"].lstrip("#"), value, path)
        elif not typed_profiles:
            type_code = value.get("resourceType") if types and types[0]["code"] == "Resource" else None
            type_code = type_code or _single_complex_type(types, path)
            sub = self.snapshots.get(type_code) if type_code else None
            if sub is not None:
                self._value(run, sub, sub.elements[sub.root_id], value, path)

    def _typed_profile(self, run: _Run, url: str, value: Any, path: str) -> None:
        try:
            snap = self.snapshots.get(url)
        except ProfileError as exc:
            run.error("exception", path, f"profile {url} is broken: {exc}")
            return
        if snap is None:
            if not url.startswith(CORE_PREFIX):
                run.issues.append(
                    Issue(
                        "information",
                        "not-supported",
                        f"{path}: profile {url} is not known, not checked",
                        [path],
                    )
                )
            return
        self._value(run, snap, snap.elements[snap.root_id], value, path)

    def _binding(self, run: _Run, el: dict[str, Any], binding: dict[str, Any], value: Any, path: str) -> None:
        if self.terminology is None:
            return
        vs = canonical(binding["valueSet"])
        codings = _codings(el, value)
        if not codings:
            return
        results = [self.terminology.validate_code(vs, system, code) for system, code in codings]
        if any(r is True for r in results):
            return
        if all(r is None for r in results):
            if vs not in run.unknown_valuesets:
                run.unknown_valuesets.add(vs)
                run.warning(
                    "not-supported", path, f"ValueSet {vs} is not known here; its codes were not checked"
                )
            return
        shown = ", ".join(f"{s}|{c}" if s else c for s, c in codings)
        message = f"code {shown} is not in the ValueSet {vs} ({binding['strength']} binding)"
        if binding["strength"] == "required":
            run.error("code-invalid", path, message)
        else:
            run.warning("code-invalid", path, message)

    def _invariant(self, run: _Run, constraint: dict[str, Any], value: Any, path: str) -> None:
        try:
            result = _fhirpath(constraint["expression"])(
                value, {"resource": run.resource, "rootResource": run.resource}
            )
        except Exception as exc:  # noqa: BLE001 - a broken invariant must not break the write path
            run.error("invariant", path, f"invariant {constraint.get('key')} could not be evaluated: {exc}")
            return
        if result == [False] or (result and all(r is False for r in result)):
            severity = "warning" if constraint.get("severity") == "warning" else "error"
            text = f"invariant {constraint.get('key')} failed: {constraint.get('human', constraint['expression'])}"
            run.issues.append(Issue(severity, "invariant", f"{path}: {text}", [path]))


def _items(raw: Any, path: str) -> list[tuple[Any, str]]:
    if isinstance(raw, list):
        return [(v, f"{path}[{i}]") for i, v in enumerate(raw) if v is not None]
    return [] if raw is None else [(raw, path)]


def _single_complex_type(types: list[dict[str, Any]], path: str) -> str | None:
    if len(types) != 1:
        return None
    code = types[0]["code"]
    return None if code in _PRIMITIVES or code.startswith("http://hl7.org/fhirpath/") else code


def _codings(el: dict[str, Any], value: Any) -> list[tuple[str | None, str]]:
    """(system, code) pairs a binding applies to, whatever the bound element's type."""
    if isinstance(value, str):
        types = {t["code"] for t in el.get("type", [])}
        return [(None, value)] if types & {"code", "string", "uri"} or not types else []
    if not isinstance(value, dict):
        return []
    if "coding" in value:
        return [(c.get("system"), c["code"]) for c in value["coding"] if "code" in c]
    if "code" in value and isinstance(value["code"], str):
        return [(value.get("system"), value["code"])]
    return []


def _slice_label(el: dict[str, Any], entry: Any) -> str:
    """Where to point for a missing slice: the sliced element, or the extension by its url."""
    name = el["id"].rsplit(".", 1)[1]
    expected = entry.expected[0] if entry.expected else None
    if name in ("extension", "modifierExtension") and isinstance(expected, str):
        return "{path}." + f"{name}('{expected}')"
    return "{path}." + name
