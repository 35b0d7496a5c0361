"""Writes are checked against the profiles they claim: 422 with the element's path, nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.helpers import count_rows, post

SOS_HS = "https://sos.example.org/fhir/StructureDefinition/sos-healthcareservice"
DEMO = Path(__file__).resolve().parents[2] / "seed" / "demo" / "05-HealthcareService.ndjson"


def _demo_service() -> dict:
    res = json.loads(DEMO.read_text(encoding="utf-8").splitlines()[0])
    res.pop("id")
    return res


def test_a_resource_meeting_its_claimed_profile_is_stored(client):
    res = _demo_service()
    assert SOS_HS in res["meta"]["profile"]
    assert post(client, res).status_code == 201


def test_a_resource_breaking_its_claimed_profile_is_422_and_not_stored(client):
    res = _demo_service()
    res.pop("providedBy")
    answer = post(client, res)
    assert answer.status_code == 422
    issues = answer.get_json()["issue"]
    assert any("providedBy" in " ".join(i.get("expression", [])) + i["diagnostics"] for i in issues)
    assert count_rows(client) == (0, 0)


def test_validate_with_profile_parameter_reports_without_storing(client):
    res = _demo_service()
    res.pop("providedBy")
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": res}, {"name": "profile", "valueUri": SOS_HS}],
    }
    answer = client.post(
        "/fhir/HealthcareService/$validate", json=body, headers={"Content-Type": "application/fhir+json"}
    )
    assert answer.status_code == 200
    assert any(i["severity"] == "error" for i in answer.get_json()["issue"])
    assert count_rows(client) == (0, 0)
