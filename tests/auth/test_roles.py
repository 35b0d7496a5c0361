"""Scopes say which types and interactions; roles say which entries."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.auth.conftest import FHIR, Clients, location, service


def _put(web: FlaskClient, res: dict[str, Any], headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return web.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=headers)


def _current(web: FlaskClient, headers: dict[str, str], path: str) -> dict[str, Any]:
    return web.get(f"/fhir/{path}", headers=headers).get_json()


def test_a_write_without_token_is_401_with_a_challenge(web: FlaskClient) -> None:
    response = web.post(
        "/fhir/Organization",
        json={"resourceType": "Organization", "name": "x"},
        headers={"Content-Type": FHIR},
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["issue"][0]["code"] == "login"
    assert web.delete("/fhir/HealthcareService/hs-29").status_code == 401
    assert web.get("/fhir/HealthcareService/hs-29").status_code == 200  # nothing was deleted


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/fhir/Organization"),
        ("PUT", "/fhir/Organization/o-29"),
        ("PATCH", "/fhir/Organization/o-29"),
        ("PUT", "/fhir/Organization?identifier=x"),
    ],
)
@pytest.mark.parametrize(
    "body, content_type", [(b"{not json", FHIR), (b"<Organization/>", "application/fhir+xml"), (b"", "text/plain")]
)
def test_credentials_are_asked_for_before_the_body_is_judged(
    web: FlaskClient, method: str, path: str, body: bytes, content_type: str
) -> None:
    """An anonymous write is 401 whatever it carries: neither a 400 for a broken body nor a
    415 for a media type tells an anonymous caller anything about how writes are judged."""
    response = web.open(path, method=method, data=body, headers={"Content-Type": content_type})
    assert response.status_code == 401, response.get_data(as_text=True)[:200]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_regional_admin_writes_anywhere(web: FlaskClient, clients: Clients) -> None:
    headers = clients.headers("regional-admin")
    assert _put(web, service("hs-35", "org-35", "loc-35") | {"name": "Renamed"}, headers).status_code == 200
    assert web.delete("/fhir/HealthcareService/hs-29", headers=headers).status_code in (200, 204)


def test_a_territorial_admin_of_35_cannot_touch_an_entry_in_29(web: FlaskClient, clients: Clients) -> None:
    headers = clients.headers("territorial-admin", departements=["35"])
    assert _put(web, service("hs-35", "org-35", "loc-35") | {"name": "Ok in 35"}, headers).status_code == 200
    refused = _put(web, service("hs-29", "org-29", "loc-29") | {"name": "Not mine"}, headers)
    assert refused.status_code == 403
    assert refused.get_json()["issue"][0]["code"] == "forbidden"
    assert web.delete("/fhir/HealthcareService/hs-29", headers=headers).status_code == 403
    assert web.delete("/fhir/Location/loc-29", headers=headers).status_code == 403
    # Nor can it move its own service to a location of a structure in 29, nor create one there.
    moved = _put(web, service("hs-35", "org-35", "loc-29"), headers)
    assert moved.status_code == 403
    created = web.post("/fhir/HealthcareService", json=service("x", "org-29", "loc-29"), headers=headers)
    assert created.status_code == 403
    assert web.get("/fhir/HealthcareService/hs-29").get_json()["name"] == "Offre hs-29"


def test_a_territorial_perimeter_is_its_structures_territory(web: FlaskClient, clients: Clients) -> None:
    """A Location's own address does not decide who manages it (a structure of 29 may have a
    place in 35): its structure's address does, so an admin cannot move an entry out of, or
    into, its territory by editing a place's address or département."""
    headers = clients.headers("territorial-admin", departements=["29"])
    assert (
        _put(web, location("loc-29", "org-29", "29200") | {"name": "Site rénové"}, headers).status_code == 200
    )
    assert _put(web, location("loc-29", "org-29", "35000"), headers).status_code == 200
    assert _put(web, location("loc-29", "org-35", "29200"), headers).status_code == 403  # handed over
    org = _current(web, headers, "Organization/org-29")
    moved = org | {"address": [{"city": "Rennes", "postalCode": "35000"}]}
    assert _put(web, moved, headers).status_code == 403  # the structure leaving the territory
    of_35 = clients.headers("territorial-admin", departements=["35"])
    assert _put(web, location("loc-29", "org-29", "35000") | {"name": "x"}, of_35).status_code == 403


def test_a_referent_writes_its_own_structure_only(web: FlaskClient, clients: Clients) -> None:
    headers = clients.headers("structure-referent", organization="Organization/org-29")
    assert _put(web, service("hs-29", "org-29", "loc-29") | {"name": "Mine"}, headers).status_code == 200
    own_org = _current(web, headers, "Organization/org-29") | {"name": "Notre structure"}
    assert _put(web, own_org, headers).status_code == 200
    assert _put(web, service("hs-35", "org-35", "loc-35") | {"name": "Theirs"}, headers).status_code == 403
    # Handing its service over to another structure is refused too.
    assert _put(web, service("hs-29", "org-35", "loc-29"), headers).status_code == 403
    other_org = _current(web, headers, "Organization/org-35") | {"name": "x"}
    assert _put(web, other_org, headers).status_code == 403
    assert web.get("/fhir/HealthcareService/hs-35").get_json()["name"] == "Offre hs-35"


def test_non_regional_roles_cannot_write_conformance_content(web: FlaskClient, clients: Clients) -> None:
    headers = clients.headers("territorial-admin", departements=["29"])
    practitioner = {"resourceType": "Practitioner", "id": "pr-1", "name": [{"family": "Dupont"}]}
    assert _put(web, practitioner, headers).status_code == 403


def test_scopes_decide_types_and_interactions(web: FlaskClient, clients: Clients) -> None:
    read_only = clients.headers("regional-admin", scopes="system/*.rs")
    changed = service("hs-29", "org-29", "loc-29") | {"name": "changed"}
    assert _put(web, changed, read_only).status_code == 403
    assert web.get("/fhir/HealthcareService?_count=1", headers=read_only).status_code == 200
    hs_only = clients.headers("regional-admin", scopes="system/HealthcareService.cruds")
    assert _put(web, service("hs-29", "org-29", "loc-29") | {"name": "ok"}, hs_only).status_code == 200
    assert _put(web, location("loc-29", "org-29", "29201"), hs_only).status_code == 403
    assert web.get("/fhir/Location/loc-29", headers=hs_only).status_code == 403
    assert web.get("/fhir/Location", headers=hs_only).status_code == 403
    v1 = clients.headers("regional-admin", scopes="system/HealthcareService.read")
    assert web.get("/fhir/HealthcareService/hs-29", headers=v1).status_code == 200
    assert web.delete("/fhir/HealthcareService/hs-29", headers=v1).status_code == 403
    no_delete = clients.headers("regional-admin", scopes="system/HealthcareService.cru")
    assert web.delete("/fhir/HealthcareService/hs-29", headers=no_delete).status_code == 403


def test_a_transaction_entry_outside_the_perimeter_rolls_everything_back(
    web: FlaskClient, clients: Clients
) -> None:
    headers = clients.headers("territorial-admin", departements=["35"])
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": service("hs-35", "org-35", "loc-35") | {"name": "Changed"},
                "request": {"method": "PUT", "url": "HealthcareService/hs-35"},
            },
            {
                "resource": service("hs-29", "org-29", "loc-29") | {"name": "Changed"},
                "request": {"method": "PUT", "url": "HealthcareService/hs-29"},
            },
        ],
    }
    assert web.post("/fhir", json=bundle, headers=headers).status_code == 403
    assert web.get("/fhir/HealthcareService/hs-35").get_json()["name"] == "Offre hs-35"


def test_an_unchanged_put_outside_the_perimeter_is_still_403(web: FlaskClient, clients: Clients) -> None:
    """Nothing would change, but a stranger must not learn it may 'write' another's entry."""
    headers = clients.headers("territorial-admin", departements=["35"])
    unchanged = {k: v for k, v in web.get("/fhir/HealthcareService/hs-29").get_json().items() if k != "meta"}
    assert _put(web, unchanged, headers).status_code == 403
