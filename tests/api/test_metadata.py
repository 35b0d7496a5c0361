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


def test_the_statement_says_in_which_order_a_history_comes(client):
    """A syncing client learns from /metadata that `_since` answers oldest first, and where to
    resume from (tests/api/test_history_sync.py shows both)."""
    statement = _statement(client)
    documented = [
        i for i in [*_resource(statement, "Location")["interaction"], *statement["rest"][0]["interaction"]]
        if i["code"] in ("history-type", "history-system")
    ]
    assert len(documented) == 2
    for interaction in documented:
        assert "oldest first with _since" in interaction["documentation"]
        assert "Bundle.meta.lastUpdated" in interaction["documentation"]


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


# How a client attempts each write interaction the statement may offer or not, on a type T.
_ATTEMPTS = {
    "create": ("POST", "/fhir/{t}", {}),
    "conditional create": ("POST", "/fhir/{t}", {"If-None-Exist": "_id=x1"}),
    "update": ("PUT", "/fhir/{t}/x1", {}),
    "conditional update": ("PUT", "/fhir/{t}?_id=x1", {}),
    "patch": ("PATCH", "/fhir/{t}/x1", {}),
    "conditional patch": ("PATCH", "/fhir/{t}?_id=x1", {}),
    "delete": ("DELETE", "/fhir/{t}/x1", {}),
    "conditional delete": ("DELETE", "/fhir/{t}?_id=x1", {}),
}


def _offered(entry: dict) -> set[str]:
    """The attempts of _ATTEMPTS that the statement's entry for a type says it supports."""
    codes = {i["code"] for i in entry["interaction"]}
    flags = {
        "conditional create": entry.get("conditionalCreate", False),
        "conditional update": entry.get("conditionalUpdate", False),
        "conditional patch": "patch" in codes,
        "conditional delete": entry.get("conditionalDelete", "not-supported") != "not-supported",
    }
    return {a for a in _ATTEMPTS if (a in codes) or flags.get(a, False)}


def test_what_the_statement_does_not_offer_is_405_with_allow_and_the_rest_is_not(client):
    """RFC 9110 and R4: a method the server does not support on a URL is 405 Method Not
    Allowed with an Allow header; the CapabilityStatement and the answers agree."""
    refused: set[str] = set()
    for entry in _statement(client)["rest"][0]["resource"]:
        t = entry["type"]
        offered = _offered(entry)
        for attempt, (method, url, extra) in _ATTEMPTS.items():
            body = (
                {"resourceType": t, "id": "x1"} if method in ("POST", "PUT") else [{"op": "test", "path": ""}]
            )
            ctype = "application/json-patch+json" if method == "PATCH" else FHIR
            answer = client.open(
                url.format(t=t), method=method, json=body, headers={"Content-Type": ctype, **extra}
            )
            where = f"{attempt} on {t}: {answer.status_code} {answer.get_data(as_text=True)[:200]}"
            if attempt in offered:
                assert answer.status_code != 405, where
                continue
            refused.add(t)
            assert answer.status_code == 405, where
            assert answer.get_json()["issue"][0]["code"] == "not-supported", where
            allowed = {m.strip() for m in answer.headers.get("Allow", "").split(",") if m.strip()}
            assert allowed and method not in allowed, where
            for other in allowed - {"HEAD"}:
                assert client.open(url.format(t=t), method=other).status_code != 405, where
    assert "AuditEvent" in refused


def test_a_profile_written_through_another_process_is_in_the_next_statement(settings) -> None:  # type: ignore[no-untyped-def]
    """Each worker process keeps its statement until what it shows changes, whoever changed it:
    two apps on one database stand for two workers."""
    from fhirsrv.app import create_app

    first, second = create_app(settings), create_app(settings)
    try:
        one, other = first.test_client(), second.test_client()
        before = _statement(other)
        assert _statement(other)["date"] == before["date"]  # served as built: nothing changed
        profile = {
            "resourceType": "StructureDefinition",
            "url": "https://sos.example.org/fhir/StructureDefinition/test-location",
            "name": "TestLocation",
            "status": "draft",
            "kind": "resource",
            "abstract": False,
            "type": "Location",
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Location",
            "derivation": "constraint",
            "differential": {"element": [{"id": "Location.name", "path": "Location.name", "min": 1}]},
        }
        assert one.post("/fhir/StructureDefinition", json=profile, headers={"Content-Type": FHIR}).status_code == 201
        location = _resource(_statement(other), "Location")
        assert profile["url"] in location.get("supportedProfile", [])
        assert one.delete("/fhir/StructureDefinition?url=" + profile["url"]).status_code in (200, 204)
        assert profile["url"] not in _resource(_statement(other), "Location").get("supportedProfile", [])
    finally:
        for app in (first, second):
            app.extensions["fhirsrv"].engine.dispose()


def test_the_statement_is_reshaped_on_request(client) -> None:  # type: ignore[no-untyped-def]
    _statement(client)  # built and kept
    summary = client.get("/fhir/metadata?_elements=fhirVersion")
    assert summary.status_code == 200
    # The elements asked for and the mandatory ones (R4's _elements), not the 170 KB of `rest`.
    assert summary.get_json()["fhirVersion"] == "4.0.1" and "rest" not in summary.get_json()
    pretty = client.get("/fhir/metadata?_pretty=true")
    assert pretty.get_data().startswith(b"{\n") and pretty.get_json()["kind"] == "instance"
