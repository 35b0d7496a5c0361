"""The `regex` filter operator of ValueSet.compose: a full match against the code, or against a
property's values when the filter names another property (R4 filter-operator `regex`)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from fhirsrv.errors import BadRequest
from fhirsrv.storage.engine import read_transaction
from fhirsrv.terminology import valueset
from tests.live_server import Answer, call, probe_during, serving

CAT = "https://sos.example.org/fhir/CodeSystem/sos-category"
STRUCTURES = "https://sos.example.org/fhir/CodeSystem/sos-structure-type"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def inline(*filters: dict[str, str], system: str = CAT) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {"include": [{"system": system, "filter": list(filters)}]},
    }


def expanded_codes(services, vs: dict[str, Any]) -> set[str]:  # type: ignore[no-untyped-def]
    with read_transaction(services.engine) as conn:
        return {c.code for c in valueset.codes(conn, vs)}


def test_regex_on_the_code_is_a_full_match(services):
    prefixed = expanded_codes(services, inline({"property": "code", "op": "regex", "value": "douleur-.*"}))
    assert "douleur-hypnoanalgesie" in prefixed
    assert "douleur" not in prefixed and not any(not c.startswith("douleur-") for c in prefixed)
    # "douleur" alone must not match "douleur-hypnoanalgesie": the pattern is anchored both ends
    exact = expanded_codes(services, inline({"property": "code", "op": "regex", "value": "douleur"}))
    assert exact == {"douleur"}
    # `concept` names the code too, as for the other operators
    same = expanded_codes(services, inline({"property": "concept", "op": "regex", "value": "douleur"}))
    assert same == {"douleur"}


def test_regex_on_a_property_matches_any_of_its_values(services):
    found = expanded_codes(
        services, inline({"property": "basket", "op": "regex", "value": "special-.*|psnc"})
    )
    assert {"douleur-hypnoanalgesie", "sophrologie"} <= found
    assert "douleur" not in found  # basket "core"
    partial = expanded_codes(services, inline({"property": "basket", "op": "regex", "value": "spec"}))
    assert partial == set()  # a partial match is not a match


def test_regex_combines_with_other_filters(services):
    found = expanded_codes(
        services,
        inline(
            {"property": "concept", "op": "is-a", "value": "douleur"},
            {"property": "code", "op": "regex", "value": ".*hypno.*"},
        ),
    )
    assert found == {"douleur-hypnoanalgesie"}


def test_boolean_property_values_compare_as_fhir_writes_them(services):
    flt = {"property": "inactive", "op": "=", "value": "true"}
    inactive = expanded_codes(services, inline(flt, system=STRUCTURES))
    flt = {"property": "inactive", "op": "regex", "value": "t.*"}
    by_regex = expanded_codes(services, inline(flt, system=STRUCTURES))
    assert inactive == by_regex == {"professionnel-liberal"}


def test_invalid_regex_is_the_clients_error(services, app):
    with pytest.raises(BadRequest):
        expanded_codes(services, inline({"property": "code", "op": "regex", "value": "douleur-(("}))
    answer = app.test_client().post(
        "/fhir/ValueSet/$expand",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "valueSet", "resource": inline({"property": "code", "op": "regex", "value": "(("})}
            ],
        },
        headers=FHIR_JSON,
    )
    assert answer.status_code == 400


def test_regex_expand_over_http(services, app):
    answer = app.test_client().post(
        "/fhir/ValueSet/$expand",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "valueSet",
                    "resource": inline({"property": "code", "op": "regex", "value": "sp-.*"}),
                }
            ],
        },
        headers=FHIR_JSON,
    )
    assert answer.status_code == 200
    codes = {c["code"] for c in answer.get_json()["expansion"]["contains"]}
    assert codes and all(c.startswith("sp-") for c in codes)


def test_file_checker_knows_regex_filters_too(tmp_path):
    from fhirsrv.validation.codes import LocalCodeChecker

    cs = {
        "resourceType": "CodeSystem",
        "url": "http://example.org/cs",
        "content": "complete",
        "concept": [{"code": "a1"}, {"code": "a2"}, {"code": "b1"}],
    }
    vs = {
        "resourceType": "ValueSet",
        "url": "http://example.org/vs",
        "compose": {
            "include": [
                {
                    "system": "http://example.org/cs",
                    "filter": [{"property": "code", "op": "regex", "value": "a."}],
                }
            ]
        },
    }
    (tmp_path / "cs.json").write_text(json.dumps(cs))
    (tmp_path / "vs.json").write_text(json.dumps(vs))
    checker = LocalCodeChecker([tmp_path])
    assert checker.validate_code("http://example.org/vs", "http://example.org/cs", "a2") is True
    assert checker.validate_code("http://example.org/vs", "http://example.org/cs", "b1") is False


# Python's `re` backtracks on this pattern: ×3 per character of the code past the first 20
# (about 20 s on the 35-character structure types before matching stopped backtracking, hours
# with a shorter prefix), holding the interpreter lock, so every other client waited too.
CATASTROPHIC = ".{20}(.*.*)*Zfreeze"


def _expand_inline(base_url: str, pattern: str, system: str = STRUCTURES) -> Answer:
    vs = inline({"property": "code", "op": "regex", "value": pattern}, system=system)
    body = {"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": vs}]}
    return call("POST", f"{base_url}/ValueSet/$expand", body)


def test_a_backtracking_pattern_neither_hangs_nor_stalls_other_clients(services, app):
    with serving(app) as base_url:
        probed = probe_during(base_url, lambda: _expand_inline(base_url, CATASTROPHIC))
    assert probed.attack is not None, "the $expand did not finish"
    assert probed.failures == []
    assert probed.attack.status == 200
    assert "contains" not in probed.attack.json()["expansion"]  # nothing ends with Zfreeze


def test_patterns_that_need_backtracking_are_refused(services, app):
    client = app.test_client()
    for pattern in [r"(a)\1", "(?=douleur).*", "a{1001}"]:
        vs = inline({"property": "code", "op": "regex", "value": pattern})
        answer = client.post(
            "/fhir/ValueSet/$expand",
            json={"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": vs}]},
            headers=FHIR_JSON,
        )
        assert answer.status_code == 400, pattern
        assert "regex" in answer.get_json()["issue"][0]["diagnostics"]


def test_the_file_checker_does_not_backtrack_either(tmp_path):
    """In a child process: a backtracking match holds the interpreter lock, and a thread of
    this one could not even be given up on."""
    code = "x" * 60
    cs = {"resourceType": "CodeSystem", "url": "http://example.org/cs", "content": "complete"}
    cs["concept"] = [{"code": code}]
    flt = {"property": "code", "op": "regex", "value": "(.*.*)*Zfreeze"}
    vs = {
        "resourceType": "ValueSet",
        "url": "http://example.org/vs",
        "compose": {"include": [{"system": "http://example.org/cs", "filter": [flt]}]},
    }
    (tmp_path / "cs.json").write_text(json.dumps(cs))
    (tmp_path / "vs.json").write_text(json.dumps(vs))
    script = (
        "import pathlib, sys\n"
        "from fhirsrv.validation.codes import LocalCodeChecker\n"
        "checker = LocalCodeChecker([pathlib.Path(sys.argv[1])])\n"
        f"print(checker.validate_code('http://example.org/vs', 'http://example.org/cs', '{code}'))\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the regex filter of a ValueSet file ran for over a minute")
    assert done.stdout.strip() == "False", done.stderr
