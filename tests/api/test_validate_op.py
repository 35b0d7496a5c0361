"""$validate answers the OperationOutcome a write would give, and stores nothing."""

from __future__ import annotations

from tests.api.helpers import FHIR, count_rows, org, post


def _validate(client, path, body):  # type: ignore[no-untyped-def]
    return client.post(path, json=body, headers={"Content-Type": FHIR})


def test_validate_valid_and_invalid_resources(client):
    ok = _validate(client, "/fhir/Organization/$validate", org())
    assert ok.status_code == 200
    assert ok.get_json()["issue"][0]["severity"] == "information"
    bad = _validate(client, "/fhir/Organization/$validate", org(active="maybe"))
    assert bad.status_code == 200
    issue = bad.get_json()["issue"][0]
    assert issue["severity"] == "error" and issue["expression"] == ["Organization.active"]
    wrapped = _validate(
        client,
        "/fhir/Organization/$validate",
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "resource", "resource": org(active="maybe")},
                {"name": "mode", "valueCode": "create"},
            ],
        },
    )
    assert wrapped.get_json()["issue"][0]["expression"] == ["Organization.active"]
    assert count_rows(client) == (0, 0)


def test_validate_at_instance_level_and_modes(client):
    oid = post(client, org()).get_json()["id"]
    assert (
        client.get(f"/fhir/Organization/{oid}/$validate").get_json()["issue"][0]["severity"] == "information"
    )
    delete = _validate(
        client,
        f"/fhir/Organization/{oid}/$validate",
        {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]},
    )
    assert delete.status_code == 200
    assert (
        _validate(
            client,
            "/fhir/Organization/$validate",
            {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "update"}]},
        ).status_code
        == 400
    )
    assert client.get("/fhir/Organization/none/$validate").status_code == 404
    assert count_rows(client) == (1, 1)
