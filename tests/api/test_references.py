"""References that never break (issue 15): care plans and other directories cite structures,
offers, places, roles and endpoints by id, by identifier, and by version. An entry keeps its id
for life, is found by its identifiers, reads `active=false` once delisted instead of vanishing,
is deleted only by a regional administrator (410 afterwards, history and vread kept), and a
versioned reference (`HealthcareService/x/_history/3`) always resolves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhirsrv.access.principal import SERVER
from fhirsrv.interactions import writes
from fhirsrv.storage.jsonfmt import utcnow
from fhirsrv.workflow import runner
from tests.api.helpers import FHIR, auth_app, token_headers

SOS = "https://sos.example.org/fhir"
LIFECYCLE = f"{SOS}/StructureDefinition/sos-entry-lifecycle"
FINESS = "http://finess.esante.gouv.fr"
SIRENE = "http://sirene.fr"
# The directory's own identifiers (FHIRSRV_CANONICAL_BASE/sid/…).
TYPES = ("Organization", "HealthcareService", "Location", "PractitionerRole", "Endpoint")
OWN = {t: f"{SOS}/sid/sos-{t.lower()}" for t in TYPES}
REPAIR = {"X-Lifecycle-Repair": "test"}


def _lifecycle(status: str) -> list[dict[str, Any]]:
    return [{"url": LIFECYCLE, "extension": [{"url": "status", "valueCode": status}]}]


def _entries() -> list[dict[str, Any]]:
    owner = {"reference": "Organization/o1"}
    return [
        {
            "resourceType": "Organization",
            "id": "o1",
            "extension": _lifecycle("published"),
            "identifier": [
                {"system": FINESS, "value": "290000017"},
                {"system": SIRENE, "value": "26290004900011"},
                {"system": OWN["Organization"], "value": "S-0001"},
            ],
            "active": True,
            "name": "Espace ressources cancer de Brest",
            "address": [{"city": "Brest", "postalCode": "29200"}],
        },
        {
            "resourceType": "Location",
            "id": "l1",
            "identifier": [{"system": OWN["Location"], "value": "L-0001"}],
            "status": "active",
            "name": "Site de Brest",
            "managingOrganization": owner,
        },
        {
            "resourceType": "HealthcareService",
            "id": "hs1",
            "extension": _lifecycle("published"),
            "identifier": [{"system": OWN["HealthcareService"], "value": "O-0001"}],
            "active": True,
            "name": "Consultation douleur",
            "providedBy": owner,
            "location": [{"reference": "Location/l1"}],
        },
        {
            "resourceType": "PractitionerRole",
            "id": "r1",
            "identifier": [{"system": OWN["PractitionerRole"], "value": "R-0001"}],
            "active": True,
            "organization": owner,
        },
        {
            "resourceType": "Endpoint",
            "id": "e1",
            "identifier": [{"system": OWN["Endpoint"], "value": "E-0001"}],
            "status": "active",
            "connectionType": {
                "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                "code": "direct-project",
            },
            "payloadType": [{"text": "messagerie sécurisée"}],
            "address": "mailto:erc-brest@mssante.example",
            "managingOrganization": owner,
        },
    ]


@pytest.fixture
def app(db_url: str) -> Iterator[Flask]:
    app = auth_app(db_url)
    services = app.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        for res in _entries():
            writes.create(services, conn, dict(res), res["id"], actor=SERVER)
    yield app
    services.engine.dispose()


@pytest.fixture
def web(app: Flask) -> FlaskClient:
    return app.test_client()


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_every_kind_of_identifier_finds_its_entry(web: FlaskClient) -> None:
    """FINESS, SIRET and the directory's own identifiers, anonymously as a care record would."""
    searches = {
        "Organization": [f"{FINESS}|290000017", f"{SIRENE}|26290004900011", f"{OWN['Organization']}|S-0001", "290000017"],
        "HealthcareService": [f"{OWN['HealthcareService']}|O-0001"],
        "Location": [f"{OWN['Location']}|L-0001"],
    }
    expected = {"Organization": "o1", "HealthcareService": "hs1", "Location": "l1"}
    for res_type, values in searches.items():
        for value in values:
            found = web.get(f"/fhir/{res_type}", query_string={"identifier": value}).get_json()
            assert _ids(found) == [expected[res_type]], (res_type, value)
    assert _ids(web.get("/fhir/Organization", query_string={"identifier": f"{FINESS}|999999999"}).get_json()) == []


def test_a_conditional_update_by_identifier_keeps_the_id(app: Flask, web: FlaskClient) -> None:
    admin = token_headers(app, "regional-admin") | {"Content-Type": FHIR}
    for res in _entries():
        res_type, identifier = res["resourceType"], res["identifier"][-1]
        body = {k: v for k, v in res.items() if k != "id"}
        body["availabilityExceptions" if res_type == "PractitionerRole" else "name"] = "changed"
        answer = web.put(
            f"/fhir/{res_type}", query_string={"identifier": f"{identifier['system']}|{identifier['value']}"},
            json=body, headers=admin,
        )
        assert answer.status_code == 200, (res_type, answer.get_json())
        assert answer.get_json()["id"] == res["id"] and answer.get_json()["meta"]["versionId"] == "2", res_type
    # Nothing matches: the server creates, with an id of its own; again: that one is updated.
    fresh = {
        "resourceType": "Location",
        "identifier": [{"system": OWN["Location"], "value": "L-0002"}],
        "managingOrganization": {"reference": "Organization/o1"},
    }
    criteria = {"identifier": f"{OWN['Location']}|L-0002"}
    created = web.put("/fhir/Location", query_string=criteria, json=fresh, headers=admin)
    assert created.status_code == 201
    again = web.put("/fhir/Location", query_string=criteria, json={**fresh, "name": "Annexe"}, headers=admin)
    assert again.status_code == 200 and again.get_json()["id"] == created.get_json()["id"]


def _delist(app: Flask) -> None:
    """The yearly sweep's two moves, as the server makes them: asked to verify, then delisted."""
    services = app.extensions["fhirsrv"]
    procedure = runner.procedure(services)
    now = utcnow()
    for step, when in (("request-verification", now), ("delist", now + timedelta(days=61))):
        with services.engine.begin() as conn:
            procedure.apply(conn, SERVER, "o1", step, when)


def test_a_delisted_entry_reads_inactive_never_404(app: Flask, web: FlaskClient) -> None:
    _delist(app)
    structure = web.get("/fhir/Organization/o1")
    offer = web.get("/fhir/HealthcareService/hs1")
    place = web.get("/fhir/Location/l1")
    assert [structure.status_code, offer.status_code, place.status_code] == [200, 200, 200]
    assert structure.get_json()["active"] is False and offer.get_json()["active"] is False
    assert place.get_json()["status"] == "inactive"  # a Location's "active" flag is its status
    # Out of every listing: no search finds them any more.
    for res_type in ("Organization", "HealthcareService", "Location"):
        assert _ids(web.get(f"/fhir/{res_type}").get_json()) == [], res_type
    # Roles and endpoints carry people's contacts: not shown to the public once delisted, but
    # the directory's partners read them, inactive too.
    assert web.get("/fhir/PractitionerRole/r1").status_code == 404
    partner = token_headers(app, "partner-reader", "system/*.rs")
    assert web.get("/fhir/PractitionerRole/r1", headers=partner).get_json()["active"] is False


def test_only_a_regional_admin_deletes_and_the_entry_answers_410_with_its_history(app: Flask, web: FlaskClient) -> None:
    others = {
        "anonymous": ({"Content-Type": FHIR}, 401),
        "partner reader": (token_headers(app, "partner-reader", "system/*.rs"), 403),
        "referent": (token_headers(app, "structure-referent", organization="Organization/o1"), 403),
        "territorial admin": (token_headers(app, "territorial-admin", departements=["29"]), 403),
    }
    for res in _entries():
        key = f"{res['resourceType']}/{res['id']}"
        for who, (headers, status) in others.items():
            assert web.delete(f"/fhir/{key}", headers=headers).status_code == status, (who, key)
    admin = token_headers(app, "regional-admin")
    assert web.delete("/fhir/HealthcareService/hs1", headers=admin).status_code == 204
    for headers in ({}, admin):
        gone = web.get("/fhir/HealthcareService/hs1", headers=headers)
        assert gone.status_code == 410 and gone.headers["ETag"] == 'W/"2"'
        assert web.get("/fhir/HealthcareService/hs1/_history/1", headers=headers).get_json()["name"] == "Consultation douleur"
        assert web.get("/fhir/HealthcareService/hs1/_history/2", headers=headers).status_code == 410
        history = web.get("/fhir/HealthcareService/hs1/_history", headers=headers).get_json()
        assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert web.delete("/fhir/HealthcareService/hs1", headers=admin).status_code == 204  # idempotent


def test_a_versioned_reference_resolves_whatever_happens_to_the_entry(app: Flask, web: FlaskClient) -> None:
    """A care plan cites `HealthcareService/hs1/_history/3`: updated since, delisted, deleted —
    the version it cites still answers, to the public as to its authors."""
    admin = token_headers(app, "regional-admin") | {"Content-Type": FHIR}
    offer = web.get("/fhir/HealthcareService/hs1").get_json()
    for name in ("Consultation douleur (mardi)", "Consultation douleur (mardi, jeudi)", "Consultation douleur (jeudi)"):
        offer = web.put("/fhir/HealthcareService/hs1", json={**offer, "name": name}, headers=admin).get_json()
    cited = "HealthcareService/hs1/_history/3"

    def resolves() -> None:
        for headers in ({}, admin):
            answer = web.get(f"/fhir/{cited}", headers=headers)
            assert answer.status_code == 200, answer.get_json()
            assert answer.get_json()["meta"]["versionId"] == "3"
            assert answer.get_json()["name"] == "Consultation douleur (mardi, jeudi)"

    resolves()
    _delist(app)
    assert web.get("/fhir/HealthcareService/hs1").get_json()["meta"]["versionId"] == "6"
    resolves()
    assert web.delete("/fhir/HealthcareService/hs1", headers=admin).status_code == 204
    resolves()


def test_a_deleted_structure_s_versions_still_answer_the_public(app: Flask, web: FlaskClient) -> None:
    """`Organization/o1/_history/1` cited in a care plan resolves for everyone once the structure
    is deleted, while its offers, hidden with it, are not listed any more."""
    admin = token_headers(app, "regional-admin")
    name = web.get("/fhir/Organization/o1").get_json()["name"]
    assert web.delete("/fhir/Organization/o1", headers=admin).status_code == 204
    for headers in ({}, admin):
        assert web.get("/fhir/Organization/o1", headers=headers).status_code == 410
        cited = web.get("/fhir/Organization/o1/_history/1", headers=headers)
        assert cited.status_code == 200 and cited.get_json()["name"] == name
    assert web.get("/fhir/HealthcareService?organization=Organization/o1").get_json().get("total", 0) == 0
