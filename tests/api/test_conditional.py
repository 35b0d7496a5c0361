"""Conditional create, update, delete and patch through search criteria."""

from __future__ import annotations

from tests.api.helpers import FHIR, IDENT_SYSTEM, count_rows, post, service

# Two live resources may share an identifier of another registry, never one of the directory's
# own (tests/api/test_identifiers.py): several matches are tried with one of those.
FINESS = "http://finess.esante.gouv.fr"


def finess_service(value: str, **extra: object) -> dict:
    return service(value, identifier=[{"system": FINESS, "value": value}], **extra)


def test_conditional_create_reuses_the_match(client):
    criteria = f"identifier={IDENT_SYSTEM}|S1"
    first = post(client, service("S1"), **{"If-None-Exist": criteria})
    assert first.status_code == 201
    again = post(client, service("S1", name="Autre"), **{"If-None-Exist": criteria})
    assert again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert count_rows(client) == (1, 1)


def test_conditional_create_with_several_matches_is_412(client):
    post(client, finess_service("dup"))
    post(client, finess_service("dup"))
    res = post(client, finess_service("dup"), **{"If-None-Exist": f"identifier={FINESS}|dup"})
    assert res.status_code == 412
    assert count_rows(client) == (2, 2)


def test_conditional_update_creates_then_updates_the_match(client):
    url = f"/fhir/HealthcareService?identifier={FINESS}|S2"
    created = client.put(url, json=finess_service("S2"), headers={"Content-Type": FHIR})
    assert created.status_code == 201
    sid = created.get_json()["id"]
    updated = client.put(url, json=finess_service("S2", name="Nouveau nom"), headers={"Content-Type": FHIR})
    assert updated.status_code == 200
    assert updated.get_json()["id"] == sid and updated.headers["ETag"] == 'W/"2"'
    post(client, finess_service("S2"))
    several = client.put(url, json=finess_service("S2", name="x"), headers={"Content-Type": FHIR})
    assert several.status_code == 412


def test_conditional_delete(client):
    post(client, service("D1"))
    res = client.delete(f"/fhir/HealthcareService?identifier={IDENT_SYSTEM}|D1")
    assert res.status_code == 204
    assert count_rows(client) == (1, 2)
    post(client, finess_service("D2"))
    post(client, finess_service("D2"))
    assert client.delete(f"/fhir/HealthcareService?identifier={FINESS}|D2").status_code == 412
    nothing = client.delete(f"/fhir/HealthcareService?identifier={IDENT_SYSTEM}|none")
    assert nothing.status_code == 204


def test_conditional_patch(client):
    post(client, service("P1"))
    res = client.patch(
        f"/fhir/HealthcareService?identifier={IDENT_SYSTEM}|P1",
        json=[{"op": "replace", "path": "/name", "value": "Patché"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert res.status_code == 200 and res.get_json()["name"] == "Patché"


def test_conditional_operation_with_unknown_parameter_is_400(client):
    res = post(client, service("Q"), **{"If-None-Exist": "no-such-param=1"})
    assert res.status_code == 400
    assert count_rows(client) == (0, 0)
