"""What the public is shown of entries whose visibility changed: a structure that left the
directory, the people of such a structure, versions written while an entry was hidden. Each
read path (include, type and system history, instance history, vread) shows them as a read
by id now would, and each version as it was when it was written.

Found by an anonymous attack on the demo: each of these showed a name or an e-mail, or a
version written while hidden, to anonymous callers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from sqlalchemy import select

from fhirsrv.access.facts import GOVERNED_TYPES
from fhirsrv.access.principal import ANONYMOUS, SERVER, Principal
from fhirsrv.interactions import writes
from fhirsrv.storage.schema import resource
from tests.api.helpers import auth_app, token_headers
from tests.api.test_history_sync import EPOCH, REPAIR, entries_of, lifecycle, structure

FHIR = "application/fhir+json"
SOS_ORGANIZATION = "https://sos.example.org/fhir/StructureDefinition/sos-organization"  # contact: 1..*
CONTACT = {"name": {"text": "Dr Katell Perrin"}, "telecom": [{"system": "email", "value": "k.perrin@example.org"}]}


@pytest.fixture
def app(db_url: str) -> Iterator[Flask]:
    app = auth_app(db_url)
    services = app.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        for oid in ("left", "mother"):
            named = {"contact": [CONTACT]} if oid == "left" else {}
            for res in ({**structure(oid, "published"), **named}, *entries_of(oid)):
                writes.create(services, conn, dict(res), res["id"], actor=SERVER)
    yield app
    services.engine.dispose()


def _admin(app: Flask) -> dict[str, str]:
    return token_headers(app, "regional-admin") | {"Content-Type": FHIR}


def _withdraw(app: Flask, oid: str) -> None:
    web = app.test_client()
    current = web.get(f"/fhir/Organization/{oid}", headers=_admin(app)).get_json()
    answer = web.put(
        f"/fhir/Organization/{oid}",
        json={**current, "extension": lifecycle("withdrawn")},
        headers=_admin(app) | REPAIR,
    )
    assert answer.status_code == 200, answer.get_json()


def test_a_structure_that_left_is_included_without_its_contact_person(app: Flask) -> None:
    """`_include` follows a reference as a read by id would: to a structure that left, which
    care plans cite, but without the person it names, whatever the search's shape."""
    web = app.test_client()
    mother = web.get("/fhir/Organization/mother", headers=_admin(app)).get_json()
    part = web.put(
        "/fhir/Organization/mother",
        json={**mother, "partOf": {"reference": "Organization/left"}},
        headers=_admin(app),
    )
    assert part.status_code == 200, part.get_json()
    _withdraw(app, "left")
    searches = [
        "Organization?_id=mother&_include=Organization:partof",
        "Organization?_id=mother&_include=*",
        "Organization?_id=mother&_include=Organization:partof&_elements=contact,name",
        "HealthcareService?organization=mother&_include=HealthcareService:organization"
        "&_include:iterate=Organization:partof",
    ]
    for url in searches:
        answer = web.get(f"/fhir/{url}")
        assert answer.status_code == 200, (url, answer.get_json())
        included = [e["resource"] for e in answer.get_json()["entry"] if e["resource"]["id"] == "left"]
        assert included and "contact" not in included[0], url  # it is there, without the person
        assert "k.perrin" not in answer.get_data(as_text=True), url
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": searches[0]}}]}
    assert "k.perrin" not in web.post("/fhir", json=batch, headers={"Content-Type": FHIR}).get_data(as_text=True)
    partner = token_headers(app, "partner-reader", "system/*.rs")
    assert "k.perrin" in web.get(f"/fhir/{searches[0]}", headers=partner).get_data(as_text=True)


def _replayed(app: Flask, headers: dict[str, str], url: str) -> str:
    """Every page of a history walk, as text."""
    web = app.test_client()
    text, next_url = "", url
    while next_url:
        answer = web.get(next_url.replace("http://fhir.test", ""), headers=headers)
        assert answer.status_code == 200, answer.get_json()
        text += answer.get_data(as_text=True)
        links = answer.get_json()["link"]
        next_url = next((link["url"] for link in links if link["relation"] == "next"), None)
        # A page short of its entries, with more to come, would tell of those left out.
        assert answer.get_json()["entry"] or next_url is None, "an empty page with a next link"
    return text


def test_a_history_does_not_replay_the_people_of_a_structure_that_left(app: Flask) -> None:
    """Its person and role were public once; now a read of them is 404 for the public, and no
    history replays their versions to it either (a client that had copied them is told they
    left). A partner, who still reads them, still gets them."""
    _withdraw(app, "left")
    web = app.test_client()
    assert web.get("/fhir/Practitioner/p-left").status_code == 404
    partner = token_headers(app, "partner-reader", "system/*.rs")
    for url, kept, left in (
        (f"/fhir/Practitioner/_history?_since={EPOCH}&_count=2", "Personne mother", "Personne left"),
        (f"/fhir/PractitionerRole/_history?_since={EPOCH}&_count=1", '"id":"role-mother"', '"id":"role-left"'),
        ("/fhir/Practitioner/_history?_count=1", "Personne mother", "Personne left"),
        ("/fhir/_history?_type=Practitioner,PractitionerRole,Organization&_count=3", "Personne mother", "Personne left"),
        (f"/fhir/_history?_since={EPOCH}", '"id":"role-mother"', '"id":"role-left"'),
    ):
        public = _replayed(app, {}, url)
        assert left not in public and "k.perrin" not in public, url
        assert kept in public, url  # the listed structure's are replayed
        assert left in _replayed(app, partner, url), url


def test_versions_written_while_hidden_are_not_shown_once_the_entry_is_listed(app: Flask) -> None:
    """A place changed while its structure was a draft, and a structure's first version with no
    status (hidden): neither is shown to the public, by instance history or vread, once the
    structure is listed; as the type history judges them, by their visibility when written."""
    web = app.test_client()
    admin = _admin(app)
    draft = web.put("/fhir/Organization/mother", json=structure("mother", "draft"), headers=admin | REPAIR)
    assert draft.status_code == 200, draft.get_json()
    place = web.get("/fhir/Location/loc-mother", headers=admin).get_json()
    secret = web.put("/fhir/Location/loc-mother", json={**place, "description": "SECRETPREPUB"}, headers=admin)
    assert secret.status_code == 200
    later = {k: v for k, v in secret.get_json().items() if k not in ("description", "meta")}
    assert web.put("/fhir/Location/loc-mother", json=later, headers=admin).status_code == 200
    listed = web.put("/fhir/Organization/mother", json=structure("mother", "published"), headers=admin | REPAIR)
    assert listed.status_code == 200
    secret_version = secret.get_json()["meta"]["versionId"]

    unnamed: dict[str, Any] = {"resourceType": "Organization", "name": "Sans statut", "contact": [CONTACT]}
    first = web.put("/fhir/Organization/nostatus", json={**unnamed, "id": "nostatus"}, headers=admin)
    assert first.status_code == 201, first.get_json()
    shown = {"resourceType": "Organization", "id": "nostatus", "name": "Sans statut", "extension": lifecycle("published")}
    assert web.put("/fhir/Organization/nostatus", json=shown, headers=admin | REPAIR).status_code == 200

    for url in ("/fhir/Location/loc-mother/_history", "/fhir/Organization/nostatus/_history"):
        history = web.get(url)
        assert history.status_code == 200
        text = history.get_data(as_text=True)
        assert "SECRETPREPUB" not in text and "k.perrin" not in text, url
        assert history.get_json()["total"] == len(history.get_json()["entry"]) >= 1
    assert web.get(f"/fhir/Location/loc-mother/_history/{secret_version}").status_code == 404
    # The version current when the structure was listed was shown by a read then, and is now:
    # its vread answers as the read's Content-Location says, and every history lists it.
    current = web.get("/fhir/Location/loc-mother")
    assert current.status_code == 200
    assert web.get(current.headers["Content-Location"].replace("http://fhir.test", "")).status_code == 200
    version = current.get_json()["meta"]["versionId"]
    instance = web.get("/fhir/Location/loc-mother/_history").get_json()
    assert version in [e["resource"]["meta"]["versionId"] for e in instance["entry"]]
    replayed = web.get(f"/fhir/Location/_history?_since={EPOCH}").get_json()
    assert version in [e["resource"]["meta"]["versionId"] for e in replayed["entry"] if "resource" in e and e["fullUrl"].endswith("loc-mother")]
    assert web.get("/fhir/Organization/nostatus/_history/1").status_code == 404
    assert web.get("/fhir/Organization/nostatus/_history/2").status_code == 200
    # The administrator, who saw them then, still does.
    assert web.get(f"/fhir/Location/loc-mother/_history/{secret_version}", headers=admin).status_code == 200
    assert "SECRETPREPUB" not in web.get(f"/fhir/Location/_history?_since={EPOCH}").get_data(as_text=True)


def test_a_history_at_an_instant_fills_its_pages_with_what_the_caller_may_see(app: Flask) -> None:
    """Offers drafted, then published: at an instant between, their current versions are the
    drafts, which the public may not see. A page of `_count=1` holds a public version, not
    nothing and a `next` link (which told that hidden versions lie there), and the last page
    has no `next` link however many hidden versions lie beyond it."""
    web = app.test_client()
    admin = _admin(app)
    drafts = []
    for n in range(3):
        draft = {
            "resourceType": "HealthcareService",
            "id": f"hs-draft-{n}",
            "extension": lifecycle("draft"),
            "name": f"Brouillon {n}",
            "providedBy": {"reference": "Organization/mother"},
        }
        answer = web.put(f"/fhir/HealthcareService/hs-draft-{n}", json=draft, headers=admin | REPAIR)
        assert answer.status_code == 201, answer.get_json()
        drafts.append(answer.get_json())
    between = drafts[-1]["meta"]["lastUpdated"]
    for draft in drafts:
        published = {**draft, "extension": lifecycle("published")}
        assert web.put(f"/fhir/HealthcareService/{draft['id']}", json=published, headers=admin | REPAIR).status_code == 200
    seen: list[str] = []
    url: str | None = f"/fhir/HealthcareService/_history?{urlencode({'_at': between, '_count': 1})}"
    while url:
        page = web.get(url.replace("http://fhir.test", "")).get_json()
        assert page["entry"], "an empty page with a next link"
        seen += [e["resource"]["id"] for e in page["entry"]]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == ["hs-left", "hs-mother"]


def test_validating_a_structure_that_left_says_nothing_of_its_contact_person(app: Flask) -> None:
    """`$validate` of a stored entry validates it as a read shows it to the caller: the issues
    of a contact the caller may not see would describe it."""
    web = app.test_client()
    admin = _admin(app)
    current = web.get("/fhir/Organization/left", headers=admin).get_json()
    odd = {**CONTACT, "purpose": {"coding": [{"system": "https://example.org/nature", "code": "inconnue"}]}}
    assert web.put("/fhir/Organization/left", json={**current, "contact": [odd]}, headers=admin).status_code == 200
    _withdraw(app, "left")
    seen_by_admin = web.post("/fhir/Organization/left/$validate", json={"resourceType": "Parameters"}, headers=admin)
    assert "contact" in seen_by_admin.get_data(as_text=True)  # the issue is there to be found
    for who in ({}, token_headers(app, "structure-referent", organization="Organization/mother")):
        answer = web.post("/fhir/Organization/left/$validate", json={"resourceType": "Parameters"}, headers=who)
        assert answer.status_code == 200, answer.get_json()
        assert "contact" not in answer.get_data(as_text=True)
    # Against a profile that wants a contact: the public is told what the administrator is,
    # less what concerns the contact, not "a contact is missing" (which told one was withheld).
    current = web.get("/fhir/Organization/left", headers=admin).get_json()
    fine = web.put("/fhir/Organization/left", json={**current, "contact": [CONTACT]}, headers=admin | REPAIR)
    assert fine.status_code == 200, fine.get_json()
    against = {"resourceType": "Parameters", "parameter": [{"name": "profile", "valueUri": SOS_ORGANIZATION}]}
    outcomes = [
        web.post("/fhir/Organization/left/$validate", json=against, headers=who).get_json() for who in (admin, {})
    ]
    issues = [sorted((i["severity"], i["diagnostics"]) for i in outcome["issue"]) for outcome in outcomes]
    about_the_rest = [issue for issue in issues[0] if not issue[1].startswith("Organization.contact")]
    assert about_the_rest and issues[1] == about_the_rest and "contact" not in str(outcomes[1]), outcomes


def test_what_the_visibility_alone_decides_is_what_the_database_decides(app: Flask) -> None:
    """A history decides from the entry's visibility, carried by its page, whether a caller may
    read it now (`readable_with`): for every principal it decides for, the same answer as the
    `readable` condition the database checks; for one with a perimeter, it leaves it to it."""
    _withdraw(app, "left")
    services = app.extensions["fhirsrv"]
    policy = services.policy
    partner = Principal.client(role="partner-reader", client_id="p", name="p", scope="system/*.rs")
    referent = Principal.client(
        role="structure-referent", client_id="r", name="r", scope="system/*.cruds", organization="Organization/mother"
    )
    with services.engine.connect() as conn:
        entries = [(t, rid, vis) for t, rid, vis in conn.execute(select(resource.c.res_type, resource.c.rid, resource.c.visibility))]
        assert {vis for _, _, vis in entries} >= {"public", "retired"}
        for principal in (ANONYMOUS, partner):
            scope = policy.scope(principal)
            governed = [(t, rid, vis) for t, rid, vis in entries if t in GOVERNED_TYPES]
            by_database = policy._readable_rids(conn, principal, [(t, rid) for t, rid, _ in governed])
            for res_type, rid, visibility in governed:
                assert scope.readable_with(res_type, visibility) == (rid in by_database), (principal.role, res_type, visibility)
        assert policy.scope(referent).readable_with("Location", "public") is None


def test_a_deleted_structure_s_versions_are_shown_without_its_contact_person(app: Flask) -> None:
    """A deleted structure left the directory too: its versions, which care plans that cite
    them may still read, no longer show the person it named, but to those who see such people."""
    web = app.test_client()
    admin = _admin(app)
    deleted = web.delete("/fhir/Organization/left", headers=admin)
    assert deleted.status_code in (200, 204), deleted.get_json()
    history = web.get("/fhir/Organization/left/_history")
    assert history.status_code == 200
    assert [e for e in history.get_json()["entry"] if "resource" in e]  # its listed version is there
    assert "k.perrin" not in history.get_data(as_text=True)
    assert web.get("/fhir/Organization/left/_history/1").status_code == 200
    assert "k.perrin" not in web.get("/fhir/Organization/left/_history/1").get_data(as_text=True)
    partner = token_headers(app, "partner-reader", "system/*.rs")
    assert "k.perrin" in web.get("/fhir/Organization/left/_history/1", headers=partner).get_data(as_text=True)
