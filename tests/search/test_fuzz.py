"""Random searches over every search parameter the server declares: never a 5xx, always an
OperationOutcome when refused, and each answer within a generous bound (no search may hang).

The parameters come from the CapabilityStatement, so a parameter added to the registry (or a
SearchParameter posted later) is fuzzed without touching this file. Each example combines a few
criteria: a parameter with any R4 modifier (supported or not) and any prefix, a value shaped for
its type or plain junk, sometimes chained through a reference parameter or reached by `_has`,
with `_sort`, `_count`, `_include` and `_filter` beside them; anonymous or as an administrator.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.helpers import unlimited_app_with_admin_token
from tests.search.directory import load

MODIFIERS = [
    "missing", "exact", "contains", "text", "in", "not-in", "below", "above", "not", "of-type",
    "identifier", "iterate", "Organization", "Location", "Nope", "", "@eq",
]  # fmt: skip
PREFIXES = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", ""]
JUNK = [
    "", ",", "|", "||", "\\", "\\,", "$", "%", "_", "'", '"', "*", "null", "true", "-", "--1",
    "9" * 40, "1e999", "-1e-999", "NaN", "Infinity", "0x10", "é" * 300, "a" * 2000, "\U0001f600",
    "\x00", "a\x00b", "\u202e", "\ufeff", "\u00a0", "../..", "Organization/", "/x", "http://", "urn:", "#", "?",
    "1|2|3|4", "48.1|-1.6|10|km", "29019|10|km", "2024-01-01T25:61:61Z", "2024-01-01T00:00:00+99:00",
    "9999-12-31T23:59:59.9999999-14:00", "0001-01-01T00:00:00+14:00", "--2024", "2024-W01",
]  # fmt: skip
# Generous: a search of this small directory answers in milliseconds; this only catches a hang.
DEADLINE = timedelta(seconds=20)


def _value_for(kind: str) -> st.SearchStrategy[str]:
    """A value shaped for the parameter type (with a prefix where the type takes one), or junk."""
    text = st.text(max_size=30)
    shaped: dict[str, st.SearchStrategy[str]] = {
        "string": text,
        "token": st.builds(
            lambda s, c: f"{s}|{c}", st.sampled_from(["", "https://example.org/cs", "urn:oid:1.2"]), text
        )
        | text,
        "reference": st.sampled_from(
            ["Organization/cem", "cem", "HealthcareService/hs-apa", "Nope/x", "http://x/y|1"]
        )
        | text,
        "date": st.dates().map(str) | st.datetimes().map(lambda d: d.isoformat(timespec="seconds") + "Z"),
        "number": st.decimals(allow_nan=False, allow_infinity=False).map(str) | st.integers().map(str),
        "quantity": st.builds(
            lambda n, s, c: f"{n}|{s}|{c}",
            st.decimals(allow_nan=False, allow_infinity=False),
            st.sampled_from(["", "http://unitsofmeasure.org"]),
            st.sampled_from(["", "km", "mg"]),
        ),
        "uri": st.sampled_from(["http://hl7.org/fhir", "https://example.org/x", "urn:uuid:1"]) | text,
        "composite": st.builds(lambda a, b: f"{a}${b}", text, text),
        "special": st.builds(
            lambda lat, lon, d: f"{lat}|{lon}|{d}|km",
            st.floats(-100, 100, allow_nan=False),
            st.floats(-200, 200, allow_nan=False),
            st.floats(0, 1e6, allow_nan=False),
        )
        | st.sampled_from(["29019|10|km", "35238|5|km", "99999|1|km"]),
    }
    value = shaped.get(kind, text) | st.sampled_from(JUNK)
    return st.builds(lambda p, v: p + v, st.sampled_from(PREFIXES), value) | value


def _declared(metadata: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Resource type -> [(parameter, type)], as the CapabilityStatement declares them."""
    declared = {}
    for res in metadata["rest"][0]["resource"]:
        params = [(p["name"], p["type"]) for p in res.get("searchParam", [])]
        if params:
            declared[res["type"]] = params
    return declared


def _criterion(draw: Any, res_type: str, declared: dict[str, list[tuple[str, str]]]) -> tuple[str, str]:
    name, kind = draw(st.sampled_from(declared[res_type]))
    modifier = draw(st.sampled_from(MODIFIERS) | st.just(""))
    key = f"{name}:{modifier}" if modifier else name
    shape = draw(st.sampled_from(["plain", "plain", "plain", "chain", "has", "deep"]))
    references = [n for n, k in declared[res_type] if k == "reference"]
    if shape == "chain" and references:
        target = draw(st.sampled_from(sorted(declared)))
        inner, kind = draw(st.sampled_from(declared[target]))
        key = f"{draw(st.sampled_from(references))}.{inner}" + (f":{modifier}" if modifier else "")
    elif shape == "has":
        other = draw(st.sampled_from(sorted(declared)))
        refs = [n for n, k in declared[other] if k == "reference"] or ["nope"]
        inner, kind = draw(st.sampled_from(declared[other]))
        key = f"_has:{other}:{draw(st.sampled_from(refs))}:{inner}"
    elif shape == "deep" and references:
        # Past the chain limit: partof.partof.partof.partof.name and the like.
        key = ".".join(draw(st.lists(st.sampled_from(references), min_size=4, max_size=8))) + f".{name}"
    values = draw(st.lists(_value_for(kind), min_size=1, max_size=3))
    return key, ",".join(values)


@st.composite
def searches(
    draw: Any, declared: dict[str, list[tuple[str, str]]]
) -> tuple[str, list[tuple[str, str]], bool]:
    res_type = draw(st.sampled_from(sorted(declared)))
    params = [_criterion(draw, res_type, declared) for _ in range(draw(st.integers(1, 3)))]
    names = [n for n, _ in declared[res_type]]
    extras = st.sampled_from(
        [
            ("_sort", ",".join(draw(st.lists(st.sampled_from(names + ["-_lastUpdated", "_id", "near", "x"]), max_size=3)))),
            ("_count", draw(st.sampled_from(["0", "1", "-1", "x", "100000"]))),
            ("_include", f"{res_type}:{draw(st.sampled_from(names))}"),
            ("_revinclude", f"*:{draw(st.sampled_from(names))}"),
            ("_total", draw(st.sampled_from(["none", "estimate", "accurate", "x"]))),
            ("_filter", f"{draw(st.sampled_from(names))} {draw(st.sampled_from(PREFIXES[:-1] + ['co', 'sw', 'pr']))} "
             f"{draw(_value_for('string'))}"),
            ("_summary", draw(st.sampled_from(["count", "true", "text", "x"]))),
        ]
    )  # fmt: skip
    params += draw(st.lists(extras, max_size=2))
    return res_type, params, draw(st.booleans())


@pytest.fixture
def fuzz_app(db_url: str) -> Iterator[tuple[Flask, str]]:
    with unlimited_app_with_admin_token(db_url, load) as built:
        yield built


def test_random_searches_over_every_declared_parameter_never_5xx(fuzz_app: tuple[Flask, str]) -> None:
    app, token = fuzz_app
    web = app.test_client()
    declared = _declared(web.get("/fhir/metadata", headers={"Authorization": f"Bearer {token}"}).get_json())
    assert {"Organization", "HealthcareService", "Location"} <= set(declared)
    assert any(kind == "special" for params in declared.values() for _, kind in params)

    @settings(
        max_examples=400,
        deadline=DEADLINE,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(searches(declared))
    def run(search: tuple[str, list[tuple[str, str]], bool]) -> None:
        res_type, params, as_admin = search
        headers = {"Authorization": f"Bearer {token}"} if as_admin else {}
        url = f"/fhir/{res_type}?{urlencode(params)}"
        response = web.get(url, headers=headers)
        assert response.status_code < 500, (url, response.get_data(as_text=True)[:500])
        if response.status_code >= 400:
            body = response.get_json(silent=True) or {}
            assert body.get("resourceType") == "OperationOutcome", (url, response.get_data()[:300])

    run()
