"""A structure or offer that was deleted outright (regional admins only) keeps a page: its last
version the public could read, marked as no longer listed — a care plan's link never dies."""

from __future__ import annotations

from flask.testing import FlaskClient

from fhirsrv.canonical import DEFAULT_BASE

LIFECYCLE = f"{DEFAULT_BASE}/StructureDefinition/sos-entry-lifecycle"
FHIR = {"Content-Type": "application/fhir+json"}


def _published(body: dict) -> dict:
    return {**body, "extension": [{"url": LIFECYCLE, "extension": [{"url": "status", "valueCode": "published"}]}]}


def test_a_deleted_offer_then_its_deleted_structure_still_show_their_last_details(client: FlaskClient):
    org = _published({"resourceType": "Organization", "id": "gone-org", "active": True, "name": "Maison Ker Avel"})
    offer = _published(
        {
            "resourceType": "HealthcareService",
            "id": "gone-offer",
            "active": True,
            "name": "Atelier de sophrologie",
            "providedBy": {"reference": "Organization/gone-org"},
        }
    )
    assert client.put("/fhir/Organization/gone-org", json=org, headers=FHIR).status_code in (200, 201)
    assert client.put("/fhir/HealthcareService/gone-offer", json=offer, headers=FHIR).status_code in (200, 201)
    listed = client.get("/offre/gone-offer").get_data(as_text=True)
    assert "Atelier de sophrologie" in listed and "plus référencée" not in listed

    assert client.delete("/fhir/HealthcareService/gone-offer").status_code in (200, 204)
    answer = client.get("/offre/gone-offer")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "Atelier de sophrologie" in page and "plus référencée" in page
    assert 'data-total="0"' in client.get("/?q=sophrologie").get_data(as_text=True)

    assert client.delete("/fhir/Organization/gone-org").status_code in (200, 204)
    assert client.get("/fhir/Organization/gone-org").status_code == 410
    answer = client.get("/structure/gone-org")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "Maison Ker Avel" in page and "plus référencée" in page
