"""Every write path refuses what R4's JSON format forbids (a boolean sent as "yes", a decimal as
a string, null, an empty array, a string over 1MB) with 400 and an OperationOutcome naming the
element, and stores nothing: create, update, conditional create and update, PATCH, and the
entries of batches and transactions."""

from __future__ import annotations

import base64
import json

import pytest

from tests.api.helpers import FHIR, IDENT_SYSTEM, count_rows, org, post, put, service

PATCH = "application/json-patch+json"
BAD = [
    (org(active="yes"), "Organization.active"),
    (org(active=0), "Organization.active"),
    (
        {"resourceType": "Location", "name": "Lieu", "position": {"latitude": "48.1", "longitude": -1.68}},
        "Location.position.latitude",
    ),
    ({"resourceType": "Practitioner", "gender": None}, "Practitioner.gender"),
    ({"resourceType": "Practitioner", "name": []}, "Practitioner.name"),
]


def _refused(res, where: str) -> None:  # type: ignore[no-untyped-def]
    assert res.status_code == 400
    outcome = res.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["code"] == "structure" and where in issue["expression"]
    assert where in issue["diagnostics"]


@pytest.mark.parametrize(("bad", "where"), BAD)
def test_create_refuses_json_the_models_would_coerce(client, bad: dict, where: str):
    _refused(post(client, bad), where)
    assert count_rows(client) == (0, 0)


@pytest.mark.parametrize(("bad", "where"), BAD)
def test_update_refuses_it_and_keeps_the_stored_version(client, bad: dict, where: str):
    good = {key: value for key, value in bad.items() if key in ("resourceType", "name") and value}
    stored = post(client, good).get_json()
    _refused(put(client, {**bad, "id": stored["id"]}), where)
    assert client.get(f"/fhir/{bad['resourceType']}/{stored['id']}").get_json() == stored
    assert count_rows(client) == (1, 1)


def test_conditional_create_and_update_refuse_it(client):
    criteria = f"identifier={IDENT_SYSTEM}|C1"
    bad = service("C1", active="yes")
    _refused(post(client, bad, **{"If-None-Exist": criteria}), "HealthcareService.active")
    url = f"/fhir/HealthcareService?{criteria}"
    _refused(client.put(url, json=bad, headers={"Content-Type": FHIR}), "HealthcareService.active")
    assert count_rows(client) == (0, 0)
    post(client, service("C1"))
    _refused(client.put(url, json=bad, headers={"Content-Type": FHIR}), "HealthcareService.active")
    assert count_rows(client) == (1, 1)


@pytest.mark.parametrize(
    ("operation", "where"),
    [
        ({"op": "add", "path": "/active", "value": "yes"}, "Organization.active"),
        ({"op": "add", "path": "/alias", "value": []}, "Organization.alias"),
        ({"op": "replace", "path": "/name", "value": None}, "Organization.name"),
    ],
)
def test_patch_refuses_a_result_that_breaks_the_json_format(client, operation: dict, where: str):
    stored = post(client, org("Stable")).get_json()
    path = f"/fhir/Organization/{stored['id']}"
    _refused(client.patch(path, json=[operation], headers={"Content-Type": PATCH}), where)
    conditional = f"/fhir/Organization?_id={stored['id']}"
    _refused(client.patch(conditional, json=[operation], headers={"Content-Type": PATCH}), where)
    assert client.get(path).get_json() == stored
    assert count_rows(client) == (1, 1)


def _entry(method: str, url: str, resource: dict) -> dict:
    return {"request": {"method": method, "url": url}, "resource": resource}


def test_transaction_entries_refuse_it_and_nothing_is_written(client):
    kept = post(client, org("Gardée")).get_json()
    patch = base64.b64encode(json.dumps([{"op": "add", "path": "/active", "value": 0}]).encode()).decode()
    binary = {"resourceType": "Binary", "contentType": PATCH, "data": patch}
    for bad_entry, where in [
        (_entry("POST", "Organization", org(active="yes")), "Organization.active"),
        (_entry("PUT", f"Organization/{kept['id']}", {**kept, "active": "no"}), "Organization.active"),
        (_entry("PATCH", f"Organization/{kept['id']}", binary), "Organization.active"),
    ]:
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [_entry("POST", "Organization", org("Jamais écrite")), bad_entry],
        }
        res = client.post("/fhir", json=bundle, headers={"Content-Type": FHIR})
        _refused(res, where)
        assert res.get_json()["issue"][0]["expression"][0] == "Bundle.entry[1]"
    assert client.get(f"/fhir/Organization/{kept['id']}").get_json() == kept
    assert count_rows(client) == (1, 1)


def test_a_batch_entry_that_breaks_the_json_format_fails_alone(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            _entry("POST", "Organization", org("Bonne")),
            _entry(
                "POST",
                "Location",
                {"resourceType": "Location", "position": {"latitude": "48.1", "longitude": 0}},
            ),
        ],
    }
    entries = client.post("/fhir", json=bundle, headers={"Content-Type": FHIR}).get_json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"].startswith("400")
    issue = entries[1]["response"]["outcome"]["issue"][0]
    assert "Location.position.latitude" in issue["expression"]
    assert count_rows(client) == (1, 1)


def test_a_string_over_1mb_is_refused_and_one_at_the_limit_kept(client):
    limit = 1024 * 1024
    res = post(client, org("x" * (limit + 1)))
    _refused(res, "Organization.name")
    assert "1MB" in res.get_json()["issue"][0]["diagnostics"]
    assert count_rows(client) == (0, 0)
    created = post(client, org("x" * limit))
    assert created.status_code == 201
    assert client.get(f"/fhir/Organization/{created.get_json()['id']}").get_json()["name"] == "x" * limit
