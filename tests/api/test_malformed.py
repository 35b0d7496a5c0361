"""Malformed write input answers 400 with an OperationOutcome, never a 500, and writes nothing:
NUL and other control characters (PostgreSQL cannot store NUL in text; R4 strings hold none
but tab, CR and LF), nesting deeper than the validators can
recurse, JSON Patch pointers that are not pointers, and codes longer than their index column."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fhirsrv.jsonshape import MAX_JSON_DEPTH
from tests.api.helpers import FHIR, count_rows, org, post

PATCH = "application/json-patch+json"


def _refused(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return body


def _nested_extensions(levels: int) -> str:
    """An Organization whose extension holds an extension ... `levels` deep, as JSON text
    (json.dumps itself would recurse too deep to write it)."""
    opening = '{"url":"http://example.org/e","extension":[' * levels
    closing = "]}" * levels
    leaf = '{"url":"http://example.org/e","valueString":"v"}'
    return '{"resourceType":"Organization","name":"Deep","extension":[' + opening + leaf + closing + "]}"


# ------------------------------------------------------------------------------------------ NUL


@pytest.mark.parametrize(
    "resource",
    [
        org("Ligue\u0000 29"),
        org("Ligue", alias=["a", "b\u0000"]),
        org("Ligue", identifier=[{"system": "https://example.org/\u0000", "value": "1"}]),
        org("Ligue", extension=[{"url": "http://example.org/e", "valueString": "\u0000"}]),
    ],
    ids=["name", "repeating", "identifier-system", "extension"],
)
def test_nul_in_a_created_resource_is_400_and_nothing_is_written(client, resource: dict[str, Any]) -> None:
    before = count_rows(client)
    body = _refused(post(client, resource))
    assert "NUL" in body["issue"][0]["diagnostics"]
    assert count_rows(client) == before


def test_nul_in_an_update_is_400_and_the_resource_keeps_its_version(client) -> None:
    oid = post(client, org("Ligue")).get_json()["id"]
    changed = {**org("Li\u0000gue"), "id": oid}
    _refused(
        client.put(f"/fhir/Organization/{oid}", data=json.dumps(changed), headers={"Content-Type": FHIR})
    )
    current = client.get(f"/fhir/Organization/{oid}").get_json()
    assert current["name"] == "Ligue" and current["meta"]["versionId"] == "1"


def test_nul_in_a_transaction_entry_is_400_and_no_entry_is_written(client) -> None:
    before = count_rows(client)
    entries = [
        {"resource": org("Bonne"), "request": {"method": "POST", "url": "Organization"}},
        {"resource": org("Mau\u0000vaise"), "request": {"method": "POST", "url": "Organization"}},
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    _refused(client.post("/fhir", data=json.dumps(bundle), headers={"Content-Type": FHIR}))
    assert count_rows(client) == before


def test_nul_brought_in_by_a_patch_is_400(client) -> None:
    oid = post(client, org("Ligue")).get_json()["id"]
    ops = [{"op": "replace", "path": "/name", "value": "Li\u0000gue"}]
    _refused(client.patch(f"/fhir/Organization/{oid}", data=json.dumps(ops), headers={"Content-Type": PATCH}))
    assert client.get(f"/fhir/Organization/{oid}").get_json()["name"] == "Ligue"


@pytest.mark.parametrize("char", ["\x01", "\b", "\f", "\x1b", "\x7f\x1f"])
def test_a_control_character_is_400_on_create_update_and_patch_and_nothing_changes(client, char: str) -> None:
    before = count_rows(client)
    body = _refused(post(client, org(f"Ligue{char}29")))
    assert "control character" in body["issue"][0]["diagnostics"]
    assert body["issue"][0]["expression"] == ["name"]
    assert count_rows(client) == before
    oid = post(client, org("Ligue")).get_json()["id"]
    changed = {**org(f"Li{char}gue"), "id": oid}
    _refused(client.put(f"/fhir/Organization/{oid}", data=json.dumps(changed), headers={"Content-Type": FHIR}))
    ops = [{"op": "replace", "path": "/name", "value": f"Li{char}gue"}]
    _refused(client.patch(f"/fhir/Organization/{oid}", data=json.dumps(ops), headers={"Content-Type": PATCH}))
    current = client.get(f"/fhir/Organization/{oid}").get_json()
    assert current["name"] == "Ligue" and current["meta"]["versionId"] == "1"


def test_tab_and_line_breaks_are_stored_as_sent(client) -> None:
    text = "Ateliers :\n\t- yoga\r\n- sophrologie"
    created = post(client, org("Ligue", alias=[text]))
    assert created.status_code == 201, created.get_data(as_text=True)[:300]
    assert client.get(f"/fhir/Organization/{created.get_json()['id']}").get_json()["alias"] == [text]


def test_an_escaped_backslash_before_u0000_is_text_not_nul(client) -> None:
    # The JSON text `\\u0000` is a backslash followed by "u0000": six ordinary characters.
    created = post(client, org("C:\\u0000"))
    assert created.status_code == 201
    assert created.get_json()["name"] == "C:\\u0000"


# ---------------------------------------------------------------------------------- nesting


@pytest.mark.parametrize("levels", [150, 400, 2000])
def test_deeply_nested_extensions_are_400_naming_the_limit(client, levels: int) -> None:
    before = count_rows(client)
    body = _refused(
        client.post("/fhir/Organization", data=_nested_extensions(levels), headers={"Content-Type": FHIR})
    )
    assert "nest" in body["issue"][0]["diagnostics"]
    assert count_rows(client) == before


def test_deep_nesting_in_validate_is_400(client) -> None:
    _refused(
        client.post(
            "/fhir/Organization/$validate", data=_nested_extensions(400), headers={"Content-Type": FHIR}
        )
    )


def test_nesting_up_to_the_limit_is_stored(client) -> None:
    # Organization > extension array > extension object ...: two JSON levels per extension.
    levels = (MAX_JSON_DEPTH - 4) // 2
    created = client.post(
        "/fhir/Organization", data=_nested_extensions(levels), headers={"Content-Type": FHIR}
    )
    assert created.status_code == 201, created.get_data(as_text=True)[:300]


# ------------------------------------------------------------------------------ JSON Patch


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "replace", "path": "/~2", "value": "x"},
        {"op": "add", "path": "/name~", "value": "x"},
        {"op": "replace", "path": "name", "value": "x"},
        {"op": "remove", "path": "/alias/~3"},
        {"op": "move", "from": "/~2", "path": "/name"},
        {"op": "copy", "from": "name", "path": "/alias/0"},
        {"op": "test", "path": "/~", "value": "x"},
    ],
    ids=["tilde-2", "trailing-tilde", "no-slash", "remove", "move-from", "copy-from", "test"],
)
def test_a_malformed_json_pointer_is_400(client, operation: dict[str, Any]) -> None:
    oid = post(client, org("Ligue")).get_json()["id"]
    body = _refused(
        client.patch(
            f"/fhir/Organization/{oid}", data=json.dumps([operation]), headers={"Content-Type": PATCH}
        )
    )
    assert "pointer" in body["issue"][0]["diagnostics"].lower()
    assert client.get(f"/fhir/Organization/{oid}").get_json()["meta"]["versionId"] == "1"


# ------------------------------------------------------------------ values longer than the index


def test_an_identifier_longer_than_its_index_column_is_stored_and_found(client) -> None:
    system, value = "https://example.org/" + "s" * 600, "v" * 600
    created = post(client, org("Longue", identifier=[{"system": system, "value": value}]))
    assert created.status_code == 201, created.get_data(as_text=True)[:300]
    oid = created.get_json()["id"]
    found = client.get("/fhir/Organization", query_string={"identifier": f"{system}|{value}"}).get_json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [oid]
    other = client.get("/fhir/Organization", query_string={"identifier": f"{system}|w{value[1:]}"}).get_json()
    assert other.get("entry", []) == []


def test_a_code_longer_than_its_index_column_is_stored_and_found(client) -> None:
    code = "c" * 700
    kind = {"coding": [{"system": "https://example.org/kinds", "code": code}], "text": "t" * 900}
    created = post(client, org("Longue", type=[kind]))
    assert created.status_code == 201, created.get_data(as_text=True)[:300]
    oid = created.get_json()["id"]
    for query in ({"type": code}, {"type": f"https://example.org/kinds|{code}"}, {"type:text": "t" * 900}):
        found = client.get("/fhir/Organization", query_string=query).get_json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == [oid], query
    sorted_ = client.get("/fhir/Organization?_sort=type")
    assert sorted_.status_code == 200


def test_a_reference_to_an_overlong_id_is_stored_and_found(client) -> None:
    # A Reference.reference is a string: nothing holds its id to FHIR's 64 characters.
    target = "Organization/" + "x" * 200
    created = post(client, org("Fille", partOf={"reference": target}))
    assert created.status_code == 201, created.get_data(as_text=True)[:300]
    found = client.get("/fhir/Organization", query_string={"partof": target}).get_json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [created.get_json()["id"]]


# ------------------------------------------------------------------ operation input Parameters

_BAD_OPERATION_INPUTS = {
    "parameter-not-a-list": ("Organization/$validate", {"parameter": "x"}),
    "parameter-not-objects": ("Organization/$validate", {"parameter": ["x", 3]}),
    "resource-not-a-resource": ("Organization/$validate", {"parameter": [{"name": "resource", "resource": "x"}]}),
    "coding-a-string": ("CodeSystem/$lookup", {"parameter": [{"name": "coding", "valueCoding": "x"}]}),
    "coding-a-list": ("ValueSet/$validate-code", {"parameter": [{"name": "coding", "valueCoding": [1]}]}),
    "codings-of-numbers": (
        "CodeSystem/$subsumes",
        {"parameter": [{"name": "codingA", "valueCoding": "x"}, {"name": "codingB", "valueCoding": 5}]},
    ),
    "code-an-object": ("CodeSystem/$lookup", {"parameter": [{"name": "code", "valueCode": {}}]}),
    "name-a-number": ("ValueSet/$expand", {"parameter": [{"name": 3, "valueUri": "x"}]}),
    "part-of-strings": ("ConceptMap/$translate", {"parameter": [{"name": "x", "part": ["y"]}]}),
    "compose-a-string": (
        "ValueSet/$expand",
        {"parameter": [{"name": "valueSet", "resource": {"resourceType": "ValueSet", "compose": "x"}}]},
    ),
    "include-of-numbers": (
        "ValueSet/$expand",
        {"parameter": [{"name": "valueSet", "resource": {"resourceType": "ValueSet", "compose": {"include": [3]}}}]},
    ),
    "valueset-of-another-type": (
        "ValueSet/$expand",
        {"parameter": [{"name": "valueSet", "resource": {"resourceType": "Organization"}}]},
    ),
}


@pytest.mark.parametrize("path, parameters", _BAD_OPERATION_INPUTS.values(), ids=_BAD_OPERATION_INPUTS.keys())
def test_malformed_operation_parameters_are_400(client, path: str, parameters: dict[str, Any]) -> None:
    body = {"resourceType": "Parameters", **parameters}
    response = client.post(f"/fhir/{path}", data=json.dumps(body), headers={"Content-Type": FHIR})
    _refused(response)


def test_validate_still_reports_on_a_broken_resource_it_is_given(client) -> None:
    """Only the Parameters wrapper is held to R4 by the registry: the resource `$validate`
    is asked about is judged by `$validate`, which answers with its issues."""
    broken = {"resourceType": "Organization", "name": ["not", "a", "string"]}
    body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": broken}]}
    response = client.post("/fhir/Organization/$validate", data=json.dumps(body), headers={"Content-Type": FHIR})
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any("name" in issue.get("diagnostics", "") for issue in outcome["issue"]), outcome


# ------------------------------------------------------------------------------ contained types


@pytest.mark.parametrize(
    ("contained", "why"),
    [
        ({"resourceType": "Bogus", "id": "x"}, "not an R4 resource type"),  # the models failed: a 500
        ({"id": "x", "name": "Sans type"}, "names its type"),
        ({"resourceType": "DomainResource", "id": "x"}, "abstract"),
    ],
)
def test_a_contained_resource_of_no_real_type_is_400_naming_it(
    client, contained: dict[str, Any], why: str
) -> None:
    body = _refused(post(client, {**org("Ligue 29"), "contained": [contained]}))
    issue = body["issue"][0]
    assert issue["code"] == "structure" and issue["expression"] == ["Organization.contained[0]"]
    assert why in issue["diagnostics"]
    assert count_rows(client) == (0, 0)
