"""/metadata is generated from what the server registers, not from a hand-kept file."""

from __future__ import annotations

from tests.api.helpers import FHIR


def _statement(client):  # type: ignore[no-untyped-def]
    res = client.get("/fhir/metadata")
    assert res.status_code == 200
    return res.get_json()


def _resource(statement, res_type):  # type: ignore[no-untyped-def]
    return next(r for r in statement["rest"][0]["resource"] if r["type"] == res_type)


def test_capability_statement_lists_types_interactions_and_operations(client):
    statement = _statement(client)
    assert statement["fhirVersion"] == "4.0.1" and statement["kind"] == "instance"
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert {
        "Organization",
        "HealthcareService",
        "Location",
        "PractitionerRole",
        "Practitioner",
        "Endpoint",
        "CodeSystem",
        "ValueSet",
        "ConceptMap",
        "StructureDefinition",
        "SearchParameter",
        "AuditEvent",
    } <= types
    service = _resource(statement, "HealthcareService")
    assert {i["code"] for i in service["interaction"]} >= {
        "read",
        "vread",
        "create",
        "update",
        "patch",
        "delete",
        "history-instance",
        "search-type",
    }
    assert service["versioning"] == "versioned-update" and service["conditionalDelete"] == "single"
    assert "validate" in {o["name"] for o in service["operation"]}
    audit = _resource(statement, "AuditEvent")
    assert "create" not in {i["code"] for i in audit["interaction"]}
    system = {i["code"] for i in statement["rest"][0]["interaction"]}
    assert system == {"transaction", "batch", "search-system", "history-system"}


def test_search_parameters_come_from_the_registry(client):
    params = {p["name"]: p["type"] for p in _resource(_statement(client), "HealthcareService")["searchParam"]}
    assert (
        params["name"] == "string"
        and params["specialty"] == "token"
        and params["organization"] == "reference"
    )
    assert "_lastUpdated" in params or "_id" in params


def test_a_posted_search_parameter_appears(client):
    param = {
        "resourceType": "SearchParameter",
        "url": "https://sos.example.org/fhir/SearchParameter/test-healthcareservice-comment",
        "name": "comment",
        "status": "active",
        "description": "Search on the comment of a service",
        "code": "comment",
        "base": ["HealthcareService"],
        "type": "string",
        "expression": "HealthcareService.comment",
    }
    assert client.post("/fhir/SearchParameter", json=param, headers={"Content-Type": FHIR}).status_code == 201
    params = {p["name"] for p in _resource(_statement(client), "HealthcareService")["searchParam"]}
    assert "comment" in params


def test_stored_profiles_are_supported_profiles(client):
    profile = {
        "resourceType": "StructureDefinition",
        "url": "https://sos.example.org/fhir/StructureDefinition/test-org",
        "name": "TestOrg",
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": "Organization",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Organization",
        "derivation": "constraint",
        "differential": {"element": [{"id": "Organization.name", "path": "Organization.name", "min": 1}]},
    }
    assert (
        client.post("/fhir/StructureDefinition", json=profile, headers={"Content-Type": FHIR}).status_code
        == 201
    )
    org = _resource(_statement(client), "Organization")
    assert "https://sos.example.org/fhir/StructureDefinition/test-org" in org["supportedProfile"]


def test_the_ror_near_insee_code_parameter_is_listed(client):
    location = {p["name"]: p for p in _resource(_statement(client), "Location")["searchParam"]}
    assert location["near-insee-code"]["type"] == "special"
    assert location["near-insee-code"]["definition"] == (
        "https://interop.esante.gouv.fr/ig/fhir/ror/SearchParameter/ror-sp-location-near-insee-code"
    )


def test_the_chained_departement_parameter_is_listed(client):
    service = {p["name"]: p for p in _resource(_statement(client), "HealthcareService")["searchParam"]}
    assert service["departement"]["type"] == "token"
    assert service["departement"]["definition"] == (
        "https://sos.example.org/fhir/SearchParameter/healthcareservice-departement"
    )
