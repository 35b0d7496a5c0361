"""Profile validation checks bindings to the server's own ValueSets against the terminology
stored in the database: a code an administrator adds through the API validates at once, a code
removed (from the CodeSystem, or excluded by the ValueSet) is refused; the files remain the
answer when no database is at hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fhirsrv.validation.codes import LocalCodeChecker, stored_terminology

BASE = "https://sos.example.org/fhir"
CAT = f"{BASE}/CodeSystem/sos-category"
CAT_VS = f"{BASE}/ValueSet/sos-category"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
DEMO = Path(__file__).resolve().parents[2] / "seed" / "demo" / "05-HealthcareService.ndjson"


def service_with(code: str) -> dict[str, Any]:
    """The demo HealthcareService (claims the SOS profile), its second SOS category set to `code`
    and its directory identifier made its own (two live offers never share one)."""
    res = json.loads(DEMO.read_text(encoding="utf-8").splitlines()[0])
    res.pop("id")
    res["identifier"][0]["value"] += f"-{code}"
    sos = [s for s in res["specialty"] if s["coding"][0]["system"] == CAT]
    sos[0]["coding"][0].update({"code": code, "display": code})
    return res


def code_errors(answer) -> list[str]:  # type: ignore[no-untyped-def]
    return [i["diagnostics"] for i in answer.get_json().get("issue", []) if i.get("code") == "code-invalid"]


def concepts_without(concepts: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [
        {**c, "concept": concepts_without(c.get("concept") or [], code)} if c.get("concept") else c
        for c in concepts
        if c["code"] != code
    ]


def stored(client, path: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = client.get(f"/fhir/{path}").get_json()
    body.pop("meta", None)
    body.pop("text", None)
    return body


def test_a_code_added_through_the_api_validates_and_a_removed_one_fails(client):
    assert (
        client.post("/fhir/HealthcareService", json=service_with("douleur"), headers=FHIR_JSON).status_code
        == 201
    )
    before = client.post(
        "/fhir/HealthcareService", json=service_with("douleur-nouveau-soin"), headers=FHIR_JSON
    )
    assert before.status_code == 422 and any("douleur-nouveau-soin" in d for d in code_errors(before))

    cs = stored(client, "CodeSystem/sos-category")
    douleur = next(c for c in cs["concept"] if c["code"] == "douleur")
    douleur["concept"].append({"code": "douleur-nouveau-soin", "display": "Nouveau soin"})
    cs["concept"] = concepts_without(cs["concept"], "sophrologie")
    assert client.put("/fhir/CodeSystem/sos-category", json=cs, headers=FHIR_JSON).status_code == 200

    added = client.post(
        "/fhir/HealthcareService", json=service_with("douleur-nouveau-soin"), headers=FHIR_JSON
    )
    assert added.status_code == 201, added.get_json()
    removed = client.post("/fhir/HealthcareService", json=service_with("sophrologie"), headers=FHIR_JSON)
    assert removed.status_code == 422
    assert any("sophrologie" in d and CAT_VS in d for d in code_errors(removed))

    # $validate gives the same answer as the write
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": service_with("sophrologie")}],
    }
    report = client.post("/fhir/HealthcareService/$validate", json=body, headers=FHIR_JSON)
    assert any("sophrologie" in d for d in code_errors(report))


def test_a_value_set_change_through_the_api_is_what_the_validator_checks(client):
    assert (
        client.post("/fhir/HealthcareService", json=service_with("douleur"), headers=FHIR_JSON).status_code
        == 201
    )
    vs = stored(client, "ValueSet/sos-category")
    vs["compose"]["exclude"] = [{"system": CAT, "concept": [{"code": "douleur"}]}]
    assert client.put("/fhir/ValueSet/sos-category", json=vs, headers=FHIR_JSON).status_code == 200
    refused = client.post("/fhir/HealthcareService", json=service_with("douleur"), headers=FHIR_JSON)
    assert refused.status_code == 422 and any("douleur" in d for d in code_errors(refused))
    assert (
        client.post("/fhir/HealthcareService", json=service_with("eri"), headers=FHIR_JSON).status_code == 201
    )


def test_files_answer_without_a_database_and_for_value_sets_it_does_not_hold(client, app):
    cs = stored(client, "CodeSystem/sos-category")
    next(c for c in cs["concept"] if c["code"] == "douleur")["concept"].append({"code": "douleur-neuf"})
    assert client.put("/fhir/CodeSystem/sos-category", json=cs, headers=FHIR_JSON).status_code == 200
    checker = LocalCodeChecker()
    assert checker.validate_code(CAT_VS, CAT, "douleur-neuf") is False  # the files do not know it
    with stored_terminology(app.extensions["fhirsrv"].engine):
        assert checker.validate_code(CAT_VS, CAT, "douleur-neuf") is True
        assert checker.validate_code(CAT_VS, None, "douleur-neuf") is True
        # a FHIR core ValueSet is not in the database: the files still answer
        gender = "http://hl7.org/fhir/ValueSet/administrative-gender"
        assert checker.validate_code(gender, "http://hl7.org/fhir/administrative-gender", "female") is True
        assert checker.validate_code("http://unknown.org/ValueSet/x", None, "x") is None
