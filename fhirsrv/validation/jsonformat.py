"""R4's structural rules, checked on a resource exactly as it was received.

The server stores and serves the JSON it received, so the JSON itself is held to R4
(https://hl7.org/fhir/R4/json.html), with the shapes of the R4 definitions
(validation/shapes.py):

- every property is an element of its object (or the `_element` of a primitive one, or a
  resource's resourceType); a required element is there; a choice element (value[x]) has at
  most one type, and one when it is required;
- a boolean is JSON true or false; integer, unsignedInt and positiveInt are JSON numbers
  without a fraction, in their ranges; decimal is a finite JSON number; every other primitive
  is a JSON string, in its type's format (validation/primitives.py: dates, codes, ids...);
- no null (save in an array of primitives, to line up with its `_element` array of
  extensions), no empty string, array or object;
- a repeating element is an array, a single one is not;
- a string (and code, id, markdown, which specialise it) is at most 1,048,576 characters: R4
  says strings SHALL NOT exceed 1MB, and its string.value has that maxLength;
- a resource inside another (contained, Bundle.entry.resource, Parameters.parameter.resource)
  names a concrete R4 resource type in resourceType, and is walked as one.

This walk replaced the fhir.resources (R4B) models, which the server used to run after it, and
gives their verdicts (tests/validation/test_structure_parity.py compares them), except where
R4 says otherwise and R4 wins:
- R4B's changes to R4: R4-only resource types (MedicinalProduct..., EffectEvidenceSynthesis,
  Substance...) and elements (Extension.valueMeta, Evidence and EvidenceVariable as R4 has them,
  MarketingStatus.country required) are R4's; R4B-only ones (Citation, SubscriptionStatus...,
  Extension.valueCodeableReference, ActivityDefinition.subjectCanonical...) are unknown;
- what the models let through that no R4 definition allows: a contained resource without
  resourceType or of an abstract type (Resource, DomainResource), `fhir_comments`, the
  models' own Python names (`name__ext`), and a `resourceType` inside a datatype; and what they
  refused that R4 allows: extensions on an extension's value (`_valueString`) and on
  StructureMap.import. A contained resource of a type they did not know made them fail (500), and
so did the extensions of a required repeating primitive given without its values
(SearchParameter `_base` without `base`), which R4 allows.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fhirsrv.errors import Issue
from fhirsrv.validation.primitives import CHECKS
from fhirsrv.validation.shapes import PRIMITIVE, RESOURCE, Element, Shape, Shapes, core_shapes

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
        if type(value) is int or (type(value) is float and math.isfinite(value)):
            return None
        if type(value) is float:
            return f"a decimal is a finite number, not {value}"
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
    check = CHECKS.get(type_name)
    return None if check is None else check(value)


class _Walk:
    """One resource's walk: the shapes it reads and the issues it found.

    Paths are only spelled out for objects it descends into and for the values it refuses: a
    resource has about a hundred values, nearly all of them fine.
    """

    __slots__ = ("extensions_shape", "issues", "shapes")

    def __init__(self, shapes: Shapes) -> None:
        self.shapes = shapes
        self.issues: list[Issue] = []
        # What `_element` holds beside a primitive: its id and extensions.
        self.extensions_shape: Shape = shapes.by_name["Element"]

    def problem(self, path: str, message: str) -> None:
        self.issues.append(Issue("error", "structure", f"{path}: {message}", [path]))

    def resource(self, res: dict[str, Any], path: str) -> None:
        """A resource inside another: it names a concrete R4 resource type, then is walked."""
        res_type = res.get("resourceType")
        if type(res_type) is not str:
            self.problem(path, "a resource names its type in resourceType (a JSON string)")
        elif res_type in self.shapes.resources:
            self.object(res, self.shapes.by_name[res_type], path)
        elif res_type in self.shapes.abstract:
            self.problem(path, f"{res_type} is abstract: name the resource's own type in resourceType")
        else:
            self.problem(path, f"'{res_type[:64]}' is not an R4 resource type")

    def object(self, node: dict[str, Any], shape: Shape, path: str) -> None:
        """An object's properties, then what it must hold: its required datatypes and backbone
        elements always; its choices and required primitives once everything inside it is
        right (as the models did), so a wrong value is not also reported as a second one."""
        elements = shape.elements
        found = len(self.issues)
        chosen: dict[str, str] | None = None  # choice element -> the type given, e.g. value -> valueString
        doubled: list[tuple[str, str, str]] = []
        for key, value in node.items():
            el = elements.get(key)
            if el is None:
                self.other_property(node, shape, key, value, path)
                continue
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
            elif not (
                el.text
                and type(value) is str
                and 0 < len(value) <= MAX_STRING_CHARS
                and (el.check is None or el.check(value) is None)
            ):
                self.primitive(el, value, f"{path}.{key}")
            if el.choice is not None:
                if chosen is None:
                    chosen = {}
                first = chosen.setdefault(el.choice, key)
                if first != key:
                    doubled.append((el.choice, first, key))
        for name in shape.required:
            if name not in node:
                self.problem(f"{path}.{name}", f"{name} is required (min 1) and missing")
        if len(self.issues) > found:
            return
        for base, first, second in doubled:
            self.problem(path, f"{base}[x] takes one type: {first} and {second} are both given")
        if shape.required_primitives or shape.required_choices:
            self.required(node, shape, path, chosen)

    def other_property(self, node: dict[str, Any], shape: Shape, key: str, value: Any, path: str) -> None:
        """A property that is not an element: a resource's resourceType, a primitive's
        `_element`, or unknown."""
        if key == "resourceType" and shape.resource:
            return  # read by resource() (or by the caller, for the resource itself)
        if key[:1] == "_":
            base = shape.elements.get(key[1:])
            if base is not None and base.extensible:
                self.primitive_extension(node, key, base, value, f"{path}.{key}")
                return
        self.problem(f"{path}.{key}", f"unknown element: {shape.name} has no element '{key[:64]}'")

    def required(self, node: dict[str, Any], shape: Shape, path: str, chosen: dict[str, str] | None) -> None:
        """Required primitives and choices; one given as null was already refused as such."""
        for name in shape.required_primitives:
            if name not in node and not _has_extensions(node.get("_" + name)):
                self.problem(f"{path}.{name}", f"{name} is required (min 1) and missing")
        for base, names in shape.required_choices:
            if (chosen is None or base not in chosen) and not any(n in node for n in names):
                self.problem(path, f"{base}[x] is required: give one of {', '.join(names)}")

    def primitives(self, node: dict[str, Any], key: str, el: Element, values: list[Any], path: str) -> None:
        """The items of a repeating primitive; a null stands for an item that has only extensions."""
        text = el.text
        check = el.check
        for i, item in enumerate(values):
            if (
                text
                and type(item) is str
                and 0 < len(item) <= MAX_STRING_CHARS
                and (check is None or check(item) is None)
            ):
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
        else:
            self.object(value, self.shapes.by_name[el.name], path)

    def primitive_extension(
        self, node: dict[str, Any], key: str, base: Element, value: Any, path: str
    ) -> None:
        """`_element`: the id and extensions of a primitive, item by item for a repeating one."""
        if value is None:
            self.problem(path, "null is not allowed: leave the element out")
        elif not base.many:
            self.extensions(value, path)
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
                    self.extensions(item, f"{path}[{i}]")

    def extensions(self, value: Any, path: str) -> None:
        if type(value) is not dict:
            self.problem(path, f"expected a JSON object, not {_shown(value)}")
        elif not value:
            self.problem(path, "an empty object is not allowed: leave the element out")
        else:
            self.object(value, self.extensions_shape, path)


def _held(partner: Any, i: int) -> bool:
    return isinstance(partner, list) and i < len(partner) and partner[i] is not None


def _has_extensions(partner: Any) -> bool:
    """A `_element` that stands for a required primitive's missing value: it has extensions
    (R4: "the element must be present, but ... an extension explains why the value is not")."""
    if isinstance(partner, dict):
        return isinstance(partner.get("extension"), list) and bool(partner["extension"])
    if isinstance(partner, list):
        return any(_has_extensions(item) for item in partner)
    return False


def json_format_issues(res: dict[str, Any], shapes: Shapes | None = None) -> list[Issue]:
    """Where `res` breaks the R4 structural rules, each issue at its element (Organization.active).

    The resource's own type is the caller's to check (validate_structure answers an unknown one
    with not-supported); here an unknown or abstract one is a structure issue like any other."""
    walk = _Walk(shapes if shapes is not None else core_shapes())
    res_type = res.get("resourceType")
    walk.resource(res, res_type if isinstance(res_type, str) and res_type else "Resource")
    return walk.issues
