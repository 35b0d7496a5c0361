"""The shape of every R4 resource, datatype and backbone element, as the JSON walk reads it.

A shape maps each JSON property an object may have to how it is written: a primitive of some
type, a datatype or backbone element (an object with its own shape) or a resource, one value or
an array, required or not, and the choice element (value[x]) it belongs to. The shapes come from
profiles/r4/elements.json, built from the R4 4.0.1 definitions by profiles/r4/extract_elements.py
for all 146 resource types: a contained resource may be of any of them.

Everything a resource's walk asks of a shape is precomputed here, once per process: which
properties exist, which ones are required, which choices must have a value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fhirsrv.validation.definitions import PROFILES_DIR
from fhirsrv.validation.primitives import CHECKS

ELEMENTS_FILE = PROFILES_DIR / "r4" / "elements.json"

PRIMITIVE, COMPLEX, RESOURCE = 0, 1, 2
# Primitives written as JSON booleans and numbers; every other primitive is a JSON string.
NOT_TEXT = frozenset({"boolean", "decimal", "integer", "unsignedInt", "positiveInt"})


@dataclass(frozen=True, slots=True)
class Element:
    """How one JSON property is written: a primitive of type `name`, an object of shape `name`
    (a datatype, or a backbone element keyed by its path) or a resource."""

    kind: int
    name: str
    many: bool
    text: bool = False  # a primitive written as a JSON string (most are): the walk's fast path
    choice: str | None = None  # the choice element it is one type of: "value" for valueString
    extensible: bool = False  # a primitive that may have a `_name` sibling with its id and extensions
    check: Callable[[str], str | None] | None = None  # its format (primitives.py), if it has one


@dataclass(frozen=True, slots=True)
class Shape:
    """The JSON properties of one kind of object, and what it must hold."""

    name: str
    elements: dict[str, Element]
    # Required datatypes, backbone elements and resources, by JSON name.
    required: tuple[str, ...] = ()
    # Required primitives, by JSON name: a `_name` with extensions may stand for the value.
    required_primitives: tuple[str, ...] = ()
    # Choice elements that need a value: (base name, the JSON names of its types).
    required_choices: tuple[tuple[str, tuple[str, ...]], ...] = ()
    resource: bool = False  # a resource: its `resourceType` property names it


@dataclass(frozen=True, slots=True)
class Shapes:
    """All shapes by name (a type, or a backbone element's path), and the resource types."""

    by_name: dict[str, Shape]
    resources: frozenset[str]  # the concrete resource types, those a resourceType may name
    abstract: frozenset[str]  # Resource, DomainResource: never the type of an instance

    def get(self, name: str) -> Shape | None:
        return self.by_name.get(name)


# Properties written in XML as attributes, which R4's JSON gives no `_name` sibling (the models
# agreed): every element's id and an extension's url. A resource's id has none either.
_NO_EXTENSIONS = frozenset({"id"})


def _element(kind: int, type_name: str, high: str, choice: str | None, no_extensions: bool) -> Element:
    text = kind == PRIMITIVE and type_name not in NOT_TEXT
    extensible = kind == PRIMITIVE and not no_extensions
    check = CHECKS.get(type_name) if kind == PRIMITIVE else None
    return Element(kind, type_name, high != "1", text, choice, extensible, check)


def build_shapes(data: dict[str, Any]) -> Shapes:
    """Shapes from the content of elements.json (see profiles/r4/extract_elements.py)."""
    primitives = set(data["primitives"])
    resources = frozenset(data["resources"])
    abstract = frozenset(data["abstract"])
    by_name: dict[str, Shape] = {}
    for name, properties in data["shapes"].items():
        elements: dict[str, Element] = {}
        required: list[str] = []
        required_primitives: list[str] = []
        choices: dict[str, list[str]] = {}
        required_bases: set[str] = set()
        for prop, (type_name, low, high, choice) in properties.items():
            if type_name in primitives:
                kind = PRIMITIVE
            elif type_name in resources or type_name in abstract:
                kind = RESOURCE
            else:
                kind = COMPLEX
            no_extensions = prop in _NO_EXTENSIONS or (name == "Extension" and prop == "url")
            elements[prop] = _element(kind, type_name, high, choice, no_extensions)
            if choice is not None:
                choices.setdefault(choice, []).append(prop)
                if low >= 1:
                    required_bases.add(choice)
            elif low >= 1:
                (required_primitives if kind == PRIMITIVE else required).append(prop)
        by_name[name] = Shape(
            name,
            elements,
            tuple(required),
            tuple(required_primitives),
            tuple((base, tuple(choices[base])) for base in sorted(required_bases)),
            name in resources or name in abstract,
        )
    return Shapes(by_name, resources, abstract)


def load_shapes(path: Path = ELEMENTS_FILE) -> Shapes:
    return build_shapes(json.loads(path.read_text(encoding="utf-8")))


@lru_cache(maxsize=1)
def core_shapes() -> Shapes:
    """The R4 shapes shipped in profiles/r4/elements.json (read once per process)."""
    return load_shapes()
