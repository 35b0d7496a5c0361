"""The directory's own identifiers (systems under `<canonical base>/sid/`): one live resource of a
type per identifier, on every write path and against concurrent writers; frozen once the entry
is shown to the public, since the shared cancer record (DCC) cites offers by them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhirsrv.access.principal import SERVER
from fhirsrv.app import create_app
from fhirsrv.interactions import writes
from tests.api.helpers import FHIR, IDENT_SYSTEM, count_rows, org, post, put, service
from tests.api.test_concurrency import race
from tests.auth.conftest import Clients, auth_settings, canonical, lifecycle, location, organization

FINESS = "http://finess.esante.gouv.fr"


def _search(client: FlaskClient, res_type: str, value: str, system: str = IDENT_SYSTEM) -> list[str]:
    bundle = client.get(f"/fhir/{res_type}?identifier={system}|{value}").get_json()
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _post_entry(res: dict[str, Any], **request: str) -> dict[str, Any]:
    return {"request": {"method": "POST", "url": res["resourceType"], **request}, "resource": res}


# ------------------------------------------------------------------------------ uniqueness
def test_a_second_live_resource_of_a_type_cannot_take_the_identifier(client: FlaskClient):
    first = post(client, service("HS-1"))
    assert first.status_code == 201
    rows = count_rows(client)

    second = post(client, service("HS-1", name="Doublon"))
    assert second.status_code == 409
    issue = second.get_json()["issue"][0]
    assert issue["code"] == "duplicate"
    assert f"{IDENT_SYSTEM}|HS-1" in issue["diagnostics"]
    assert issue["expression"] == ["HealthcareService.identifier[0]"]
    assert first.get_json()["id"] not in issue["diagnostics"]  # the holder is not named
    assert count_rows(client) == rows
    assert _search(client, "HealthcareService", "HS-1") == [first.get_json()["id"]]

    # Per type: a place may carry the same value; identifiers of other systems are not ours.
    place = {"resourceType": "Location", "identifier": [{"system": IDENT_SYSTEM, "value": "HS-1"}]}
    assert post(client, place).status_code == 201
    finess = [{"system": FINESS, "value": "290000017"}]
    assert post(client, org("A", identifier=finess)).status_code == 201
    assert post(client, org("B", identifier=finess)).status_code == 201


def test_an_update_cannot_take_another_resource_s_identifier(client: FlaskClient):
    post(client, service("HS-A"))
    other = post(client, service("HS-B")).get_json()
    taken = put(client, {**other, "identifier": [{"system": IDENT_SYSTEM, "value": "HS-A"}]})
    assert taken.status_code == 409
    assert f"{IDENT_SYSTEM}|HS-A" in taken.get_json()["issue"][0]["diagnostics"]
    patched = client.patch(
        f"/fhir/HealthcareService/{other['id']}",
        json=[{"op": "replace", "path": "/identifier/0/value", "value": "HS-A"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 409
    assert client.get(f"/fhir/HealthcareService/{other['id']}").headers["ETag"] == 'W/"1"'
    chosen = put(client, service("HS-A", id="chosen-id"))  # create-on-update
    assert chosen.status_code == 409
    assert client.get("/fhir/HealthcareService/chosen-id").status_code == 404
    assert len(_search(client, "HealthcareService", "HS-A")) == 1


def test_an_identifier_is_free_again_once_its_holder_is_deleted_or_gives_it_up(client: FlaskClient):
    gone = post(client, service("HS-D")).get_json()
    assert post(client, service("HS-D")).status_code == 409
    assert client.delete(f"/fhir/HealthcareService/{gone['id']}").status_code == 204
    again = post(client, service("HS-D"))
    assert again.status_code == 201
    # Bringing the deleted one back would make two holders.
    restored = put(client, {k: v for k, v in gone.items() if k != "meta"})
    assert restored.status_code == 409
    moved = put(client, {**again.get_json(), "identifier": [{"system": IDENT_SYSTEM, "value": "HS-E"}]})
    assert moved.status_code == 200
    assert post(client, service("HS-D")).status_code == 201


def test_conditional_create_on_the_identifier_still_answers_the_match(client: FlaskClient):
    criteria = {"If-None-Exist": f"identifier={IDENT_SYSTEM}|HS-C"}
    first = post(client, service("HS-C"), **criteria)
    assert first.status_code == 201
    again = post(client, service("HS-C", name="Autre nom"), **criteria)
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    # Criteria that miss the holder do not make a second one.
    assert post(client, service("HS-C"), **{"If-None-Exist": "name=inconnu"}).status_code == 409


def test_a_transaction_creating_one_identifier_twice_writes_nothing(client: FlaskClient):
    rows = count_rows(client)
    for request in ({}, {"ifNoneExist": f"identifier={IDENT_SYSTEM}|HS-T"}):
        answer = client.post(
            "/fhir",
            json=_bundle(
                "transaction",
                _post_entry(org("Ligue 29")),
                _post_entry(service("HS-T"), **request),
                _post_entry(service("HS-T", name="Deuxième"), **request),
            ),
            headers={"Content-Type": FHIR},
        )
        assert answer.status_code == 409, answer.get_json()
        issue = answer.get_json()["issue"][0]
        assert "Bundle.entry[2]" in issue["diagnostics"] and f"{IDENT_SYSTEM}|HS-T" in issue["diagnostics"]
        assert count_rows(client) == rows
    # A batch runs each entry on its own: the first wins, the second is told.
    batch = client.post(
        "/fhir",
        json=_bundle("batch", _post_entry(service("HS-T")), _post_entry(service("HS-T"))),
        headers={"Content-Type": FHIR},
    ).get_json()
    assert [e["response"]["status"] for e in batch["entry"]] == ["201 Created", "409 Conflict"]


def test_concurrent_creates_of_one_identifier_make_one_resource(app: Flask):
    answers = race(app, 6, lambda c, n: post(c, service("HS-R", name=f"écrivain {n}")))
    assert sorted(r.status_code for r in answers) == [201] + [409] * 5
    assert len(_search(app.test_client(), "HealthcareService", "HS-R")) == 1


def test_concurrent_conditional_creates_of_one_identifier_all_answer_the_one_created(app: Flask):
    criteria = {"If-None-Exist": f"identifier={IDENT_SYSTEM}|HS-Q"}
    answers = race(app, 6, lambda c, n: post(c, service("HS-Q", name=f"écrivain {n}"), **criteria))
    assert sorted(r.status_code for r in answers) == [200] * 5 + [201]
    assert len({r.get_json()["id"] for r in answers}) == 1
    assert len(_search(app.test_client(), "HealthcareService", "HS-Q")) == 1


# ------------------------------------------------------------------------- published: frozen
def _offer(sid: str, status: str, value: str | None) -> dict[str, Any]:
    res = {
        "resourceType": "HealthcareService",
        "id": sid,
        "extension": lifecycle(status),
        "name": f"Offre {sid}",
        "providedBy": {"reference": "Organization/org-29"},
        "location": [{"reference": "Location/loc-29"}],
    }
    if value is not None:
        res["identifier"] = [{"system": canonical("sid/sos-offer"), "value": value}]
    return res


@pytest.fixture
def referent_app(db_url: str) -> Iterator[Flask]:
    app = create_app(auth_settings(db_url))
    services = app.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        for res in (
            organization("org-29", "29"),
            organization("org-35", "35"),
            location("loc-29", "org-29", "29200"),
            location("loc-35", "org-35", "35000"),
            _offer("hs-published", "published", "SOS-29-01"),
            _offer("hs-pending", "verification-pending", "SOS-29-02"),
            _offer("hs-delisted", "delisted", "SOS-29-03"),
            _offer("hs-draft", "draft", "SOS-29-04"),
            _offer("hs-bare", "published", None),
        ):
            writes.create(services, conn, dict(res), res["id"], actor=SERVER)
    yield app
    services.engine.dispose()


def _changed(sid: str, status: str, value: str | None) -> dict[str, Any]:
    return _offer(sid, status, value) | {"name": "Renommée"}


def test_a_published_entry_keeps_its_identifier_whoever_writes(referent_app: Flask):
    web = referent_app.test_client()
    clients = Clients(referent_app)
    writers = {
        "referent": clients.headers("structure-referent", organization="Organization/org-29"),
        "territorial": clients.headers("territorial-admin", departements=["29"]),
        "regional": clients.headers("regional-admin"),
    }
    for who, headers in writers.items():
        for sid, status in (("hs-published", "published"), ("hs-pending", "verification-pending")):
            for value in ("SOS-29-99", None):  # changed, removed
                refused = web.put(f"/fhir/HealthcareService/{sid}", json=_changed(sid, status, value), headers=headers)
                assert refused.status_code == 409, (who, sid, value, refused.get_json())
                assert "X-Lifecycle-Repair" in refused.get_json()["issue"][0]["diagnostics"]
        patched = web.patch(
            "/fhir/HealthcareService/hs-published",
            json=[{"op": "replace", "path": "/identifier/0/value", "value": "SOS-29-99"}],
            headers=headers | {"Content-Type": "application/json-patch+json"},
        )
        assert patched.status_code == 409, who
        # The rest of the entry may change, the identifier staying.
        kept = _changed("hs-published", "published", "SOS-29-01")
        assert web.put("/fhir/HealthcareService/hs-published", json=kept, headers=headers).status_code == 200
    regional = writers["regional"]
    delisted = web.put(
        "/fhir/HealthcareService/hs-delisted", json=_changed("hs-delisted", "delisted", None), headers=regional
    )
    assert delisted.status_code == 409  # a delisted offer is still cited by care plans
    stored = web.get("/fhir/HealthcareService/hs-published", headers=regional).get_json()
    assert stored["identifier"][0]["value"] == "SOS-29-01"


def test_a_draft_may_change_its_identifier_and_a_published_entry_may_gain_one(referent_app: Flask):
    web = referent_app.test_client()
    headers = Clients(referent_app).headers("structure-referent", organization="Organization/org-29")
    draft = web.put("/fhir/HealthcareService/hs-draft", json=_changed("hs-draft", "draft", "SOS-29-44"), headers=headers)
    assert draft.status_code == 200
    gained = web.put("/fhir/HealthcareService/hs-bare", json=_changed("hs-bare", "published", "SOS-29-05"), headers=headers)
    assert gained.status_code == 200
    taken = web.put("/fhir/HealthcareService/hs-draft", json=_changed("hs-draft", "draft", "SOS-29-01"), headers=headers)
    assert taken.status_code == 409


def test_a_regional_admin_repairs_a_published_identifier_with_the_repair_header(referent_app: Flask):
    web = referent_app.test_client()
    clients = Clients(referent_app)
    repair = {"X-Lifecycle-Repair": "typo in the offer's code (ticket 42)"}
    territorial = clients.headers("territorial-admin", departements=["29"])
    fixed = _changed("hs-published", "published", "SOS-29-10")
    assert web.put("/fhir/HealthcareService/hs-published", json=fixed, headers=territorial | repair).status_code == 409
    regional = clients.headers("regional-admin")
    repaired = web.put("/fhir/HealthcareService/hs-published", json=fixed, headers=regional | repair)
    assert repaired.status_code == 200
    events = web.get("/fhir/AuditEvent?_count=200", headers=regional).get_json()["entry"]
    reasons = [e["resource"].get("outcomeDesc", "") for e in events]
    assert any("ticket 42" in r for r in reasons)
    # The old identifier is free, the new one is held.
    assert web.put(
        "/fhir/HealthcareService/hs-draft", json=_changed("hs-draft", "draft", "SOS-29-01"), headers=regional
    ).status_code == 200
    assert web.put(
        "/fhir/HealthcareService/hs-bare", json=_changed("hs-bare", "published", "SOS-29-10"), headers=regional
    ).status_code == 409


def test_a_clash_answers_the_same_whether_or_not_the_writer_may_see_the_holder(referent_app: Flask):
    """A referent learns that an identifier is taken, never by whom nor anything of it: the
    identifier space is the directory's, so the clash itself is not a secret."""
    web = referent_app.test_client()
    headers = Clients(referent_app).headers("structure-referent", organization="Organization/org-35")

    def create(value: str, **extra: str) -> Any:
        new = _offer("x", "draft", value) | {
            "providedBy": {"reference": "Organization/org-35"},
            "location": [{"reference": "Location/loc-35"}],
        }
        new.pop("id")
        return web.post("/fhir/HealthcareService", json=new, headers=headers | extra)

    seen = create("SOS-29-01")  # a published offer of another structure
    hidden = create("SOS-29-04")  # a draft of another structure
    assert seen.status_code == hidden.status_code == 409
    one, other = (r.get_json()["issue"] for r in (seen, hidden))
    assert [i["diagnostics"].replace("SOS-29-01", "V") for i in one] == [
        i["diagnostics"].replace("SOS-29-04", "V") for i in other
    ]
    assert "hs-" not in str(one) + str(other) and "org-29" not in str(one) + str(other)
    # A conditional create does not find what the writer may not see: the same 409.
    system = canonical("sid/sos-offer")
    conditional = create("SOS-29-04", **{"If-None-Exist": f"identifier={system}|SOS-29-04"})
    assert conditional.status_code == 409
