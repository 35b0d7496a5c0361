"""The structural check as it was before the JSON walk replaced the fhir.resources models: the
oracle of tests/validation/test_structure_parity.py, kept here and nowhere in the server.

It is fhirsrv/validation/jsonformat.py and structure.py as they stood then (the walk of R4's
JSON format rules on the core definitions of profiles/r4, then the R4B models), unchanged but
for this docstring, the answer (refused, the element paths it named) and the `root` marker of
the models, dropped from the paths. A model that failed with an exception (a contained resource
of a type it did not know) counts as a refusal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhirsrv.errors import Issue
from fhirsrv.jsonshape import JsonShapeError, check_json_shape
from fhirsrv.validation.definitions import PROFILES_DIR

CORE_DEFINITIONS = PROFILES_DIR / "r4" / "structuredefinitions.json"
# R4 string.value maxLength ("Note that FHIR strings SHALL NOT exceed 1MB in size").
MAX_STRING_CHARS = 1_048_576
_INT32_MAX = 2**31 - 1

_NUMBER_TYPES = {
    "integer": -(2**31),
    "unsignedInt": 0,
    "positiveInt": 1,
}
# The string type and its specialisations: they share its 1MB limit.
_LIMITED_STRINGS = frozenset({"string", "code", "id", "markdown"})
_NOT_TEXT = frozenset({"boolean", "decimal"})
_SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}

PRIMITIVE, COMPLEX, RESOURCE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Element:
    """How one JSON property is written: a primitive of type `name`, or an object of shape `name`."""

    kind: int
    name: str
    many: bool
    text: bool = False  # a primitive written as a JSON string (most are): the walk's fast path


def _element(kind: int, name: str, many: bool) -> Element:
    text = kind == PRIMITIVE and name not in _NUMBER_TYPES and name not in _NOT_TEXT
    return Element(kind, name, many, text)


Shape = dict[str, Element]


# -- the shapes, from the core definitions ------------------------------------------------------


def _element_type(
    el: dict[str, Any], code: str, has_children: bool, primitives: set[str], resources: set[str]
) -> Element:
    many = el.get("max", "1") == "*" or int(el.get("max", "1")) > 1
    if el.get("contentReference"):
        return _element(COMPLEX, el["contentReference"].lstrip("#"), many)
    if has_children:
        return _element(COMPLEX, el["path"], many)
    if code in _SYSTEM_TYPES:
        return _element(PRIMITIVE, _SYSTEM_TYPES[code], many)
    if code in primitives:
        return _element(PRIMITIVE, code, many)
    if code == "Resource" or code in resources:
        return _element(RESOURCE, code, many)
    return _element(COMPLEX, code, many)


def build_shapes(definitions: list[dict[str, Any]]) -> dict[str, Shape]:
    """JSON property -> Element, for every resource, datatype and backbone element defined.

    Backbone elements are keyed by their path (Organization.contact); a contentReference
    (#Bundle.link) points at such a key.
    """
    primitives = {sd["type"] for sd in definitions if sd.get("kind") == "primitive-type"}
    resources = {sd["type"] for sd in definitions if sd.get("kind") == "resource"}
    shapes: dict[str, Shape] = {}
    for sd in definitions:
        if sd.get("kind") == "primitive-type":
            continue
        elements = [el for el in sd["snapshot"]["element"] if ":" not in el["id"]]
        parents = {el["path"].rsplit(".", 1)[0] for el in elements[1:]}
        root = elements[0]["path"]
        shapes.setdefault(sd["name"], {})
        for el in elements[1:]:
            parent, name = el["path"].rsplit(".", 1)
            shape = shapes.setdefault(sd["name"] if parent == root else parent, {})
            codes = [t["code"] for t in el.get("type", [])] or [""]
            has_children = el["path"] in parents
            if name.endswith("[x]"):
                for code in codes:
                    key = name[:-3] + code[0].upper() + code[1:]
                    shape[key] = _element_type(el, code, False, primitives, resources)
            else:
                shape[name] = _element_type(el, codes[0], has_children, primitives, resources)
    return shapes


@lru_cache(maxsize=1)
def core_shapes() -> dict[str, Shape]:
    """The shapes of the R4 core definitions shipped in profiles/r4 (read once per process)."""
    bundle = json.loads(CORE_DEFINITIONS.read_text(encoding="utf-8"))
    return build_shapes([entry["resource"] for entry in bundle["entry"]])


# -- the walk -----------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return f"the string {json.dumps(value[:40], ensure_ascii=False)}{'…' if len(value) > 40 else ''}"
    return json.dumps(value)


def _primitive_problem(type_name: str, value: Any) -> str | None:
    """What is wrong with `value` as the JSON of a primitive of `type_name`, or None."""
    if type_name == "boolean":
        return (
            None
            if value is True or value is False
            else f"a boolean is JSON true or false, not {_shown(value)}"
        )
    if type_name == "decimal":
        if type(value) is int or type(value) is float:
            return None
        return f"a decimal is a JSON number, not {_shown(value)}"
    minimum = _NUMBER_TYPES.get(type_name)
    if minimum is not None:
        if type(value) is not int:
            return f"{type_name} is a JSON number without a fraction, not {_shown(value)}"
        if not minimum <= value <= _INT32_MAX:
            return f"{type_name} must be between {minimum} and {_INT32_MAX}, not {value}"
        return None
    if type(value) is not str:
        return f"{type_name} is a JSON string, not {_shown(value)}"
    if not value:
        return "an empty string is not allowed: leave the element out"
    if len(value) > MAX_STRING_CHARS and type_name in _LIMITED_STRINGS:
        return f"a string may not exceed 1MB ({MAX_STRING_CHARS} characters); this one has {len(value)}"
    return None


class _Walk:
    """One resource's walk: the shapes it reads and the issues it found.

    Paths are only spelled out for objects it descends into and for the values it refuses: a
    resource has about a hundred values, nearly all of them fine.
    """

    __slots__ = ("issues", "shapes")

    def __init__(self, shapes: dict[str, Shape]) -> None:
        self.shapes = shapes
        self.issues: list[Issue] = []

    def problem(self, path: str, message: str) -> None:
        self.issues.append(Issue("error", "structure", f"{path}: {message}", [path]))

    def resource(self, res: dict[str, Any], path: str) -> None:
        res_type = res.get("resourceType")
        shape = self.shapes.get(res_type) if isinstance(res_type, str) else None
        if shape is None:
            self.untyped(res, path)
        else:
            self.object(res, shape, path)

    def object(self, node: dict[str, Any], shape: Shape, path: str) -> None:
        for key, value in node.items():
            el = shape.get(key)
            if el is None:
                if key[:1] == "_":
                    base = shape.get(key[1:])
                    if base is not None and base.kind == PRIMITIVE:
                        self.primitive_extension(node, key, base, value, f"{path}.{key}")
                continue  # not an element here: the models say so
            if value is None:
                self.problem(f"{path}.{key}", "null is not allowed: leave the element out")
            elif el.many:
                if type(value) is not list:
                    self.problem(
                        f"{path}.{key}",
                        f"this element repeats: its value is a JSON array, not {_shown(value)}",
                    )
                elif not value:
                    self.problem(f"{path}.{key}", "an empty array is not allowed: leave the element out")
                elif el.kind == PRIMITIVE:
                    self.primitives(node, key, el, value, path)
                else:
                    for i, item in enumerate(value):
                        if item is None:
                            self.problem(f"{path}.{key}[{i}]", "null is not allowed: leave the item out")
                        else:
                            self.composite(el, item, f"{path}.{key}[{i}]")
            elif type(value) is list:
                self.problem(f"{path}.{key}", "this element does not repeat: its value is not a JSON array")
            elif el.kind != PRIMITIVE:
                self.composite(el, value, f"{path}.{key}")
            elif not (el.text and type(value) is str and 0 < len(value) <= MAX_STRING_CHARS):
                self.primitive(el, value, f"{path}.{key}")

    def primitives(self, node: dict[str, Any], key: str, el: Element, values: list[Any], path: str) -> None:
        """The items of a repeating primitive; a null stands for an item that has only extensions."""
        text = el.text
        for i, item in enumerate(values):
            if text and type(item) is str and 0 < len(item) <= MAX_STRING_CHARS:
                continue
            if item is None:
                if not _held(node.get("_" + key), i):
                    self.problem(
                        f"{path}.{key}[{i}]",
                        f"null is only allowed where _{key}[{i}] holds the item's extensions",
                    )
            else:
                self.primitive(el, item, f"{path}.{key}[{i}]")

    def primitive(self, el: Element, value: Any, path: str) -> None:
        message = _primitive_problem(el.name, value)
        if message is not None:
            self.problem(path, message)

    def composite(self, el: Element, value: Any, path: str) -> None:
        """A complex datatype, backbone element or resource: a non-empty object, walked."""
        if type(value) is not dict:
            self.problem(path, f"expected a JSON object, not {_shown(value)}")
        elif not value:
            self.problem(path, "an empty object is not allowed: leave the element out")
        elif el.kind == RESOURCE:
            self.resource(value, path)
        elif (shape := self.shapes.get(el.name)) is not None:
            self.object(value, shape, path)
        else:
            self.untyped(value, path)

    def primitive_extension(
        self, node: dict[str, Any], key: str, base: Element, value: Any, path: str
    ) -> None:
        """`_element`: the id and extensions of a primitive, item by item for a repeating one."""
        if value is None:
            self.problem(path, "null is not allowed: leave the element out")
        elif not base.many:
            self.composite(_EXTENSIONS_OF_PRIMITIVE, value, path)
        elif type(value) is not list:
            self.problem(path, f"the element repeats: {key} is a JSON array, not {_shown(value)}")
        elif not value:
            self.problem(path, "an empty array is not allowed: leave the element out")
        else:
            values = node.get(key[1:])
            for i, item in enumerate(value):
                if item is None:
                    if not _held(values, i):
                        self.problem(f"{path}[{i}]", f"null is only allowed where {key[1:]}[{i}] has a value")
                else:
                    self.composite(_EXTENSIONS_OF_PRIMITIVE, item, f"{path}[{i}]")

    def untyped(self, value: Any, path: str) -> None:
        """Content of a type this server has no definition of: the rules that need no type."""
        if isinstance(value, dict):
            if not value:
                self.problem(path, "an empty object is not allowed: leave the element out")
            for key, item in value.items():
                if isinstance(item, list):
                    partner = value.get(key[1:] if key[:1] == "_" else "_" + key)
                    if not item:
                        self.problem(f"{path}.{key}", "an empty array is not allowed: leave the element out")
                    for i, member in enumerate(item):
                        if member is None and not _held(partner, i):
                            self.problem(f"{path}.{key}[{i}]", "null is not allowed here")
                        elif member is not None:
                            self.untyped(member, f"{path}.{key}[{i}]")
                elif item is None:
                    self.problem(f"{path}.{key}", "null is not allowed: leave the element out")
                else:
                    self.untyped(item, f"{path}.{key}")
        elif value == "":
            self.problem(path, "an empty string is not allowed: leave the element out")


# What `_element` holds beside a primitive: its id and extensions.
_EXTENSIONS_OF_PRIMITIVE = Element(COMPLEX, "Element", False)


def _held(partner: Any, i: int) -> bool:
    return isinstance(partner, list) and i < len(partner) and partner[i] is not None


def json_format_issues(res: dict[str, Any], shapes: dict[str, Shape] | None = None) -> list[Issue]:
    walk = _Walk(shapes if shapes is not None else core_shapes())
    res_type = res.get("resourceType")
    walk.resource(res, res_type if isinstance(res_type, str) else "Resource")
    return walk.issues


def _expression(res_type: str, loc: tuple[Any, ...]) -> str:
    path = res_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part) not in ("__root__", "root"):
            path += f".{part}"
    return path


def old_validate_structure(res: dict[str, Any]) -> list[Issue]:
    res_type = res.get("resourceType", "")
    try:
        model = get_fhir_model_class(res_type)
    except (KeyError, ValueError):
        return [Issue("error", "not-supported", f"Unknown resource type '{res_type}'", ["resourceType"])]
    try:
        check_json_shape(res)
    except JsonShapeError as exc:
        where = f"{res_type}.{exc.path}" if exc.path else res_type
        return [Issue("error", "structure", f"{where}: {exc.message}", [where])]
    issues = json_format_issues(res)
    if issues:
        return issues
    try:
        model.model_validate(res)
    except ValidationError as exc:
        for err in exc.errors():
            where = _expression(res_type, tuple(err.get("loc", ())))
            issues.append(Issue("error", "structure", f"{where}: {err.get('msg')}", [where]))
    return issues


def old_verdict(res: dict[str, Any]) -> tuple[bool, frozenset[str]]:
    """(refused, the paths named) by the old check; a model that crashed refused at its resource."""
    try:
        issues = old_validate_structure(res)
    except (KeyError, TypeError, AttributeError) as exc:  # an unknown contained type; a `_name` list
        return True, frozenset({f"crash: {type(exc).__name__}"})
    return bool(issues), frozenset(e for i in issues for e in i.expression)
