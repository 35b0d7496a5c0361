"""Parameters defined as a chain: `departement` on HealthcareService is its locations' département
(`location.departement`), read from the Location at search time, on both back-ends."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.api.helpers import FHIR
from tests.search.directory import R244, load, match_ids


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    load(app.extensions["fhirsrv"])
    return app.test_client()


def ids(client, query: str) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(match_ids(client, query))


def test_offers_by_the_departement_of_their_locations(client):
    # loc-brest and loc-quimper are in the Finistère (29), loc-rennes in Ille-et-Vilaine (35).
    assert ids(client, "/fhir/HealthcareService?departement=29") == ["hs-apa", "hs-psy"]
    assert ids(client, "/fhir/HealthcareService?departement=35") == [
        "hs-dietetique",
        "hs-douleur",
        "hs-palliatif",
    ]
    assert ids(client, "/fhir/HealthcareService?departement=29,35&specialty=330") == ["hs-apa"]
    assert ids(client, "/fhir/HealthcareService?departement=56") == []


def test_negation_and_missing_apply_to_the_offer_not_to_each_location(client):
    assert ids(client, "/fhir/HealthcareService?departement:not=35") == ["hs-apa", "hs-psy"]
    assert ids(client, "/fhir/HealthcareService?departement:missing=true") == []
    assert len(ids(client, "/fhir/HealthcareService?departement:missing=false")) == 5
    assert client.get("/fhir/HealthcareService?departement:missing=perhaps").status_code == 400
    assert client.get("/fhir/HealthcareService?departement:exact=29").status_code == 400


def test_a_moved_location_moves_its_offers_without_rewriting_them(client):
    quimper = client.get("/fhir/Location/loc-quimper").get_json()
    quimper["address"] = {"postalCode": "56100"}  # the site moves to Lorient (Morbihan)
    res = client.put("/fhir/Location/loc-quimper", json=quimper, headers={"Content-Type": FHIR})
    assert res.status_code == 200, res.get_json()
    assert ids(client, "/fhir/HealthcareService?departement=56") == ["hs-psy"]
    assert ids(client, "/fhir/HealthcareService?departement=29") == ["hs-apa"]


def test_in_filter_expressions_too(client):
    expression = quote("departement eq 29 and active eq false")
    assert ids(client, f"/fhir/HealthcareService?_filter={expression}") == ["hs-psy"]


def test_a_posted_chained_parameter_searches_through_its_chain(client):
    """Any SearchParameter may name its chain; a system|code value is looked up through it too."""
    chained = {
        "resourceType": "SearchParameter",
        "url": "https://sos.example.org/fhir/SearchParameter/test-healthcareservice-structure-category",
        "name": "structure_category",
        "status": "active",
        "description": "The category of the offer's structure (organization.type)",
        "code": "structure-category",
        "base": ["HealthcareService"],
        "type": "token",
        "expression": "HealthcareService.providedBy.resolve().type",
        "extension": [
            {
                "url": "https://sos.example.org/fhir/StructureDefinition/sos-search-chain",
                "valueString": "organization.type",
            }
        ],
    }
    assert (
        client.post("/fhir/SearchParameter", json=chained, headers={"Content-Type": FHIR}).status_code == 201
    )
    assert ids(client, f"/fhir/HealthcareService?structure-category={R244}|355") == ["hs-apa", "hs-psy"]
    assert ids(client, "/fhir/HealthcareService?structure-category=101") == [
        "hs-dietetique",
        "hs-douleur",
        "hs-palliatif",
    ]
