"""The shapes the structural check walks with (profiles/r4/elements.json) agree with the R4
definitions the profile validator reads (profiles/r4/structuredefinitions.json) on every type
this server stores, and say what a resource must hold."""

from __future__ import annotations

import json

from fhirsrv.resource_types import SUPPORTED_TYPES
from fhirsrv.validation.definitions import PROFILES_DIR
from fhirsrv.validation.shapes import PRIMITIVE, core_shapes

# What the npm package that both files come from adds to R4, and elements.json leaves out.
NOT_R4 = {
    "Meta.project",
    "Meta.author",
    "Meta.onBehalfOf",
    "Meta.account",
    "Meta.accounts",
    "Meta.compartment",
}


def _snapshot_elements() -> dict[str, dict]:
    bundle = json.loads((PROFILES_DIR / "r4" / "structuredefinitions.json").read_text(encoding="utf-8"))
    out = {}
    for entry in bundle["entry"]:
        sd = entry["resource"]
        if sd["kind"] == "primitive-type" or sd.get("derivation") == "constraint":
            continue
        for el in sd["snapshot"]["element"][1:]:
            if ":" not in el["id"]:
                out[el["path"]] = el
    return out


def _disagreement(path: str, el: dict) -> str | None:
    parent, name = path.rsplit(".", 1)
    shape = core_shapes().get(parent)
    if shape is None:
        return "no shape"
    if name.endswith("[x]"):
        names = [name[:-3] + t["code"][0].upper() + t["code"][1:] for t in el["type"]]
        if not all(n in shape.elements and shape.elements[n].choice == name[:-3] for n in names):
            return "choice types"
        if (name[:-3] in {base for base, _ in shape.required_choices}) != (el["min"] >= 1):
            return "choice required"
        return None
    element = shape.elements.get(name)
    if element is None:
        return "missing"
    if element.many != (el["max"] != "1"):
        return "repeats"
    required = shape.required_primitives if element.kind == PRIMITIVE else shape.required
    return None if (name in required) == (el["min"] >= 1) else "required"


def test_the_core_definitions_and_the_shapes_agree_on_every_element() -> None:
    elements = _snapshot_elements()
    disagree = {path: _disagreement(path, el) for path, el in elements.items() if path not in NOT_R4}
    assert {path: why for path, why in disagree.items() if why} == {}
    assert len(disagree) > 1000
    # The package's R4 types Bundle.entry.response.outcome OperationOutcome; R4 says any resource.
    assert core_shapes().get("Bundle.entry.response").elements["outcome"].name == "Resource"


def test_every_type_the_server_stores_is_a_resource_with_a_shape() -> None:
    shapes = core_shapes()
    assert set(SUPPORTED_TYPES) <= shapes.resources
    assert {"Resource", "DomainResource"} == shapes.abstract
    assert len(shapes.resources) == 146  # R4 4.0.1's resource types


def test_what_an_extension_and_a_usage_context_must_hold() -> None:
    extension = core_shapes().get("Extension")
    assert extension.required_primitives == ("url",)
    assert not extension.elements["url"].extensible  # an XML attribute: no `_url`
    assert extension.elements["valueString"].extensible  # R4 allows `_valueString`
    assert extension.required_choices == ()
    usage = core_shapes().get("UsageContext")
    assert usage.required == ("code",)
    ((base, names),) = usage.required_choices
    assert base == "value" and set(names) == {
        "valueCodeableConcept",
        "valueQuantity",
        "valueRange",
        "valueReference",
    }
