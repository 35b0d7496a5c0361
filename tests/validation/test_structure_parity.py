"""The JSON walk gives the verdicts the fhir.resources models gave: valid resources of the demo
region, the profiles' examples, the ROR's examples and the conformance content, each broken by
one mutation (an element dropped or unknown, a primitive of any type given any value, two
value[x], a nested resource of a wrong type, an empty or null value, an extension without url),
are refused by the new check exactly when the old one refused them, at the same elements.

The old check (tests/validation/structure_oracle.py) is the oracle. Where R4 wins over it, the
mutations stay out of the way (no R4B-only element, no contained resource without a type) and
tests/validation/test_structure.py asserts R4's verdict instead.
"""

from __future__ import annotations

import copy
import json
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhirsrv.validation.definitions import iter_json_resources
from fhirsrv.validation.structure import validate_structure
from tests.validation.structure_oracle import old_verdict

ROOT = Path(__file__).resolve().parents[2]
DEMO_PER_FILE = 12  # the first lines of each demo file: every kind of directory entry


def _seeds() -> list[dict[str, Any]]:
    seeds = []
    for path in sorted((ROOT / "seed" / "demo").glob("*.ndjson")):
        lines = path.read_text(encoding="utf-8").splitlines()[:DEMO_PER_FILE]
        seeds += [json.loads(line) for line in lines if line.strip()]
    folders = [ROOT / "profiles" / "examples", Path(__file__).parent / "fixtures" / "ror-examples"]
    seeds += list(iter_json_resources(folders))
    conformance = list(iter_json_resources([ROOT / "profiles" / "sos", ROOT / "terminology"]))
    by_type: dict[str, list[dict[str, Any]]] = {}
    for res in conformance:
        by_type.setdefault(res["resourceType"], []).append(res)
    seeds += [res for same in by_type.values() for res in same[:3]]
    return seeds


SEEDS = _seeds()

# -- values: every primitive type's good and bad forms, and any other JSON ------------------------

# Not the control characters among Python's whitespace (U+000B, U+000C, U+001C-U+001F): this
# server refuses them before any walk (fhirsrv/jsonshape.py, tests/test_jsonshape.py).
_WHITESPACE = " \t\r\n\x85\xa0\u2028\u202f\u3000"
_TEXT = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + "-._:/|+=#é" + _WHITESPACE), max_size=12
)


@st.composite
def _dates(draw: st.DrawFn) -> str:
    year = draw(st.sampled_from(["2020", "2021", "1900", "2000", "0000", "0001", "9999", "20", "12345"]))
    parts = [year]
    if draw(st.booleans()):
        parts.append("-" + draw(st.sampled_from(["01", "02", "12", "13", "00", "1"])))
        if draw(st.booleans()):
            parts.append("-" + draw(st.sampled_from(["01", "28", "29", "30", "31", "32", "00"])))
            if draw(st.booleans()):
                hour = draw(st.sampled_from(["00", "23", "24", "9"]))
                second = draw(st.sampled_from(["00", "59", "60", "61", "00.5", "00.1234567"]))
                zone = draw(st.sampled_from(["Z", "+01:00", "-13:59", "+14:00", "+14:01", "+15:00", ""]))
                parts.append(f"T{hour}:{draw(st.sampled_from(['00', '59', '60']))}:{second}{zone}")
    return "".join(parts)


@st.composite
def _times(draw: st.DrawFn) -> str:
    hour = draw(st.sampled_from(["00", "12", "23", "24", "7"]))
    minute = draw(st.sampled_from(["00", "59", "60"]))
    second = draw(st.sampled_from(["00", "59", "60", "60.5", "00.123", ""]))
    return f"{hour}:{minute}" + (f":{second}" if second else "") + draw(st.sampled_from(["", "", "Z"]))


@st.composite
def _uuids(draw: st.DrawFn) -> str:
    digits = draw(st.text(alphabet="0123456789abcdefABCDEF", min_size=32, max_size=32))
    digits = (
        digits[:12]
        + draw(st.sampled_from("41c"))
        + digits[13:16]
        + draw(st.sampled_from("8b0f"))
        + digits[17:]
    )
    hyphenated = f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
    form = draw(
        st.sampled_from(["urn:uuid:{h}", "{h}", "{{{h}}}", "{s}", "URN:UUID:{h}", "urn:uuid:{s}", "{h} "])
    )
    return form.format(h=hyphenated, s=digits)


_IDS = st.text(
    alphabet=st.sampled_from(string.ascii_letters + "0123456789-._ /"), min_size=1, max_size=70
) | st.just("a" * 256)
_OIDS = st.from_regex(r"\A(urn:oid:)?[0-3](\.(0|[1-9][0-9]*|01)){0,3}\n?\Z")
_BASE64 = st.text(alphabet=st.sampled_from("QUJDRA+/= é!"), min_size=1, max_size=9)
_CODES = st.text(alphabet=st.sampled_from("ab \t\xa0\u2028-"), min_size=1, max_size=6)
_NUMBERS = st.integers(min_value=-(2**33), max_value=2**33) | st.floats(allow_nan=False, allow_infinity=False)
VALUES = st.one_of(
    _TEXT,
    _dates(),
    _times(),
    _uuids(),
    _IDS,
    _OIDS,
    _BASE64,
    _CODES,
    _NUMBERS,
    st.booleans(),
    st.sampled_from([None, "", [], {}, ["x"], {"text": "x"}, 0, 1, -1, 1.5, "true"]),
)
# Each type's own kind of value, right or wrong, drawn half of the time for that type.
TYPED_VALUES = {
    "Date": _dates(),
    "DateTime": _dates(),
    "Instant": _dates(),
    "Time": _times(),
    "Uuid": _uuids(),
    "Oid": _OIDS,
    "Id": _IDS,
    "Code": _CODES,
    "Base64Binary": _BASE64,
}
PRIMITIVE_TYPES = [
    "Base64Binary", "Boolean", "Canonical", "Code", "Date", "DateTime", "Decimal", "Id", "Instant",
    "Integer", "Markdown", "Oid", "PositiveInt", "String", "Time", "UnsignedInt", "Uri", "Url", "Uuid",
]  # fmt: skip
COMPLEX_VALUES = {
    "Coding": {"system": "http://x.org/cs", "code": "a"},
    "Period": {"start": "2020-01-01"},
    "Quantity": {"value": 1, "unit": "mg"},
    "HumanName": {"family": "Martin"},
    "Reference": {"reference": "Organization/x"},
    "CodeableConcept": {"text": "x"},
}

# -- where a mutation applies ------------------------------------------------------------------

Slot = tuple[Any, Any]  # (container, key or index)


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for item in node:
            yield from _objects(item)


def _slots(node: Any) -> Iterator[Slot]:
    """Every value's place, but the resourceType of a resource (its type is not mutated)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key != "resourceType":
                yield node, key
            yield from _slots(value)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield node, i
            yield from _slots(item)


def _is_extension(obj: dict[str, Any]) -> bool:
    return isinstance(obj.get("url"), str) and any(k.startswith("value") or k == "extension" for k in obj)


# -- the mutations -------------------------------------------------------------------------------

# A nested resource's type: a datatype, a backbone element, no type at all, or another one's.
WRONG_TYPES = ["Coding", "Bogus", "OrganizationContact", "Patient"]


def _add(obj: dict[str, Any], key: str, item: Any) -> None:
    """Append to the array at `key` (made if absent; left alone if a mutation made it something else)."""
    if isinstance(obj.get(key, []), list):
        obj.setdefault(key, []).append(item)


def drop(res: dict[str, Any], draw: st.DrawFn) -> str | None:
    """An element left out: refused where it is required (an extension's url, a status...)."""
    container, key = draw(st.sampled_from([s for s in _slots(res) if isinstance(s[0], dict)]))
    del container[key]


def unknown(res: dict[str, Any], draw: st.DrawFn) -> str | None:
    """A property no R4 element has, or the `_name` of one that is not a primitive."""
    obj = draw(st.sampled_from(list(_objects(res))))
    name = draw(
        st.sampled_from(["colour", "valeur", "_telecom", "_period", "Name", "extensions", "value[x]"])
    )
    obj[name] = draw(VALUES)


def replace(res: dict[str, Any], draw: st.DrawFn) -> str | None:
    """Any value (of an element, an item, an extension's value) replaced by any JSON."""
    container, key = draw(st.sampled_from(list(_slots(res))))
    container[key] = draw(VALUES)


def extension_value(res: dict[str, Any], draw: st.DrawFn) -> str | None:
    """An extension anywhere, its value of any primitive type given any value (its own type's
    kind of value half of the time), or of a datatype; sometimes without its url."""
    obj = draw(st.sampled_from(list(_objects(res))))
    value_type = draw(st.sampled_from(PRIMITIVE_TYPES + list(COMPLEX_VALUES)))
    if value_type in COMPLEX_VALUES:
        value = COMPLEX_VALUES[value_type]
    else:
        value = draw(TYPED_VALUES[value_type] | VALUES if value_type in TYPED_VALUES else VALUES)
    extension: dict[str, Any] = {"url": "http://x.org/e", f"value{value_type}": value}
    if draw(st.integers(0, 9)) == 0:
        del extension["url"]
    _add(obj, "extension", extension)


def two_values(res: dict[str, Any], draw: st.DrawFn) -> str | None:
    """An extension with two types of value[x] (or one, twice the same, when drawn so)."""
    obj = draw(st.sampled_from(list(_objects(res))))
    extension = {"url": "http://x.org/e", "valueString": "x"}
    extension[f"value{draw(st.sampled_from(['Code', 'Boolean', 'String', 'Coding']))}"] = draw(
        st.sampled_from(["y", True, {"code": "c"}])
    )
    _add(obj, "extension", extension)


def contained(res: dict[str, Any], draw: st.DrawFn) -> str | None:
    """A contained resource: of a wrong type (a datatype, a backbone element, an unknown type
    or another resource's), or of its own type and broken by one of the mutations above.

    A wrong type is refused at the contained resource itself: the old check named the resource
    (the models), crashed (an unknown type) or walked it as the datatype it named (its JSON
    walk), so only its verdict is compared."""
    inner = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    inner.pop("contained", None)
    wrong = draw(st.booleans())
    if wrong:
        inner["resourceType"] = draw(st.sampled_from(WRONG_TYPES))
    else:
        draw(st.sampled_from(MUTATIONS[:5]))(inner, draw)
    if not isinstance(res.get("contained", []), list):
        return None
    res.setdefault("contained", []).append(inner)
    return f"contained[{len(res['contained']) - 1}]" if wrong and inner["resourceType"] != "Patient" else None


def emptied(res: dict[str, Any], draw: st.DrawFn) -> str | None:
    """A value made empty or null, or an array of an empty object or a null."""
    container, key = draw(st.sampled_from(list(_slots(res))))
    container[key] = draw(st.sampled_from([{}, [], "", None, [None], [{}]]))


def primitive_extension(res: dict[str, Any], draw: st.DrawFn) -> str | None:
    """A `_name` sibling beside a property: allowed beside a primitive, nowhere else."""
    obj = draw(st.sampled_from(list(_objects(res))))
    keys = [
        k
        for k in obj
        if not k.startswith("_")
        and k != "resourceType"
        and not (_is_extension(obj) and k.startswith("value"))
    ]
    if keys:
        key = draw(st.sampled_from(keys))
        obj["_" + key] = draw(
            st.sampled_from([{"id": "a"}, {"extension": [{"url": "u", "valueString": "x"}]}, [None], {}])
        )


MUTATIONS: list[Callable[[dict[str, Any], st.DrawFn], str | None]] = [
    drop,
    unknown,
    replace,
    extension_value,
    emptied,
    two_values,
    contained,
    primitive_extension,
]  # the first five are also applied inside a contained resource


def _wrapped(res: dict[str, Any], how: str) -> dict[str, Any]:
    """The resource as it is, or inside a Bundle entry or a Parameters parameter."""
    if how == "bundle":
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"fullUrl": "urn:uuid:x", "resource": res}],
        }
    if how == "parameters":
        return {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": res}]}
    return res


def _new_verdict(res: dict[str, Any]) -> tuple[bool, frozenset[str]]:
    issues = validate_structure(res)
    return bool(issues), frozenset(e for i in issues for e in i.expression)


@given(st.data())
@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
def test_one_mutation_same_verdict_same_elements(data: st.DataObject) -> None:
    res = copy.deepcopy(data.draw(st.sampled_from(SEEDS)))
    how = data.draw(st.sampled_from(["as is"] * 4 + ["bundle", "parameters"]))
    if how != "as is" and data.draw(st.integers(0, 3)) == 0:
        # The wrapped resource names a type it is not: refused at the resource, as for contained.
        mutation = "wrong type in " + how
        res["resourceType"] = data.draw(st.sampled_from(WRONG_TYPES))
        refused_at = "resource" if res["resourceType"] != "Patient" else None
    else:
        mutate = data.draw(st.sampled_from(MUTATIONS))
        mutation = mutate.__name__
        refused_at = mutate(res, data.draw)
    res = _wrapped(res, how)
    old_refused, old_paths = old_verdict(res)
    new_refused, new_paths = _new_verdict(res)
    assert new_refused == old_refused, (mutation, old_paths, new_paths)
    if refused_at is not None:
        assert len(new_paths) == 1 and next(iter(new_paths)).endswith("." + refused_at), new_paths
    else:
        assert new_paths == old_paths, mutation


def test_the_seeds_are_valid_for_both() -> None:
    assert len(SEEDS) > 60
    for res in SEEDS:
        assert old_verdict(res) == (False, frozenset()) == _new_verdict(res), res.get("id")
