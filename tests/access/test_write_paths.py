"""Every write path, for every principal: who may write what, refused before any work, with
the same answer whether or not the target exists, and never with stored content."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from tests.access.directory import CANONICAL, ENTRIES, PRINCIPALS, Directory, lifecycle

BY_NAME = {p.name: p for p in PRINCIPALS}
# Setting a status by hand is a regional administrator's audited repair (the procedure's
# operations are tested in tests/workflow); these tests use it to set up their entries.
REPAIR = {"X-Lifecycle-Repair": "test set-up"}


@pytest.fixture
def d(directory: Directory) -> Iterator[Directory]:
    yield directory
    directory.reset()


def body(key: str, **changes: Any) -> dict[str, Any]:
    return dict(ENTRIES[key].body) | changes


@dataclass(frozen=True)
class Attempt:
    who: str
    method: str
    url: str
    payload: Any
    expected: int
    why: str

    def send(self, d: Directory, extra: dict[str, str] | None = None) -> Any:
        headers = d.headers(BY_NAME[self.who]) | (extra or {})
        if self.method == "PATCH":
            headers["Content-Type"] = "application/json-patch+json"
        return d.web.open(self.url, method=self.method, json=self.payload, headers=headers)


TEST_OP = [{"op": "test", "path": "", "value": 0}]
RENAME = [{"op": "replace", "path": "/name", "value": "Renommé"}]
HS = "HealthcareService"

ATTEMPTS = [
    # Anonymous callers write nothing, and learn nothing from trying.
    Attempt("anonymous", "POST", f"/fhir/{HS}", {"resourceType": HS, "name": "x"}, 401, "no token"),
    Attempt("anonymous", "PUT", f"/fhir/{HS}/hs-o29-published", body(f"{HS}/hs-o29-published"), 401, "no token"),
    Attempt("anonymous", "PATCH", f"/fhir/{HS}/hs-o29-draft", TEST_OP, 401, "before the patch is applied"),
    Attempt("anonymous", "DELETE", f"/fhir/{HS}/hs-o29-draft", None, 401, "a hidden entry"),
    Attempt("anonymous", "DELETE", f"/fhir/{HS}/does-not-exist", None, 401, "the same for an unknown one"),
    # Partners read.
    Attempt("partner-reader", "PUT", f"/fhir/{HS}/hs-o29-published", body(f"{HS}/hs-o29-published"), 403, "reader"),
    # A referent: its own structure, nothing else; no deletes, no new structure.
    Attempt("referent", "PUT", f"/fhir/{HS}/hs-o29-draft", body(f"{HS}/hs-o29-draft", name="À nous"), 200, "own"),
    Attempt("referent", "PATCH", f"/fhir/{HS}/hs-o29-draft", RENAME, 200, "own"),
    Attempt("referent", "PUT", f"/fhir/{HS}/hs-o35-draft", body(f"{HS}/hs-o35-draft", name="x"), 403, "another's"),
    Attempt("referent", "PATCH", f"/fhir/{HS}/hs-o35-draft", TEST_OP, 404, "hidden: as unknown"),
    Attempt("referent", "PATCH", f"/fhir/{HS}/does-not-exist", TEST_OP, 404, "unknown"),
    Attempt("referent", "PATCH", f"/fhir/{HS}/hs-o29-published", RENAME, 403, "visible, not its own"),
    Attempt("referent", "DELETE", f"/fhir/{HS}/hs-o29-draft", None, 403, "deletes are regional"),
    Attempt(
        "referent",
        "POST",
        f"/fhir/{HS}",
        {
            "resourceType": HS,
            "name": "Offre jamais publiée",
            "providedBy": {"reference": "Organization/o29-draft"},
            "extension": lifecycle("draft", published_on="2025-03-01"),
        },
        403,
        "a draft claiming a publication",
    ),
    Attempt(
        "referent",
        "POST",
        f"/fhir/{HS}",
        {"resourceType": HS, "name": "Offre nouvelle", "providedBy": {"reference": "Organization/o29-draft"}, "extension": lifecycle("draft")},
        201,
        "a new draft offer",
    ),
    Attempt(
        "referent",
        "POST",
        "/fhir/Organization",
        body("Organization/o29-draft", name="Ma seconde structure"),
        403,
        "no second structure",
    ),
    Attempt(
        "referent",
        "PUT",
        f"/fhir/{HS}/hs-o29-draft",
        body(f"{HS}/hs-o29-draft", providedBy={"reference": "Organization/o29-published"}),
        403,
        "handing it over",
    ),
    Attempt(
        "referent",
        "PUT",
        f"/fhir/{HS}/hs-o29-draft",
        body(f"{HS}/hs-o29-draft", location=[{"reference": "Location/loc-o35-draft"}]),
        403,
        "another structure's place",
    ),
    Attempt(
        "referent",
        "PUT",
        "/fhir/Practitioner/p-o29-draft",
        body("Practitioner/p-o29-draft", name=[{"family": "Nommée"}]),
        200,
        "its contact person",
    ),
    Attempt(
        "referent",
        "PUT",
        "/fhir/Practitioner/p-shared",
        body("Practitioner/p-shared", name=[{"family": "x"}]),
        403,
        "a person of other structures",
    ),
    Attempt(
        "referent",
        "POST",
        "/fhir/Practitioner",
        {"resourceType": "Practitioner", "name": [{"family": "Nouvelle"}]},
        201,
        "a new contact person",
    ),
    Attempt(
        "referent",
        "POST",
        f"/fhir/{HS}",
        {"resourceType": HS, "name": "Nouvelle offre", "providedBy": {"reference": "Organization/o29-draft"}},
        201,
        "a new offer of its own",
    ),
    # A territorial admin: the structures located in its départements.
    Attempt("territorial-29", "PUT", f"/fhir/{HS}/hs-o29-draft", body(f"{HS}/hs-o29-draft", name="x"), 200, "in 29"),
    Attempt("territorial-29", "PUT", f"/fhir/{HS}/hs-o35-draft", body(f"{HS}/hs-o35-draft", name="x"), 403, "in 35"),
    Attempt("territorial-29", "DELETE", f"/fhir/{HS}/hs-o29-draft", None, 403, "deletes are regional"),
    Attempt(
        "territorial-29",
        "PUT",
        "/fhir/Organization/o29-draft",
        body("Organization/o29-draft", address=[{"city": "Rennes", "postalCode": "35000"}]),
        403,
        "moving a structure out",
    ),
    Attempt(
        "territorial-29",
        "PUT",
        "/fhir/Location/loc-o29-draft",
        body(
            "Location/loc-o29-draft",
            address={
                "postalCode": "35000",
                "extension": [
                    {
                        "url": f"{CANONICAL}/StructureDefinition/sos-departement",
                        "valueCoding": {"code": "35"},
                    }
                ],
            },
        ),
        200,
        "a place's département does not move its structure",
    ),
    Attempt(
        "territorial-29",
        "POST",
        "/fhir/Organization",
        {"resourceType": "Organization", "name": "Nouvelle", "extension": lifecycle("draft"), "address": [{"postalCode": "29200"}]},
        201,
        "a structure in 29",
    ),
    Attempt(
        "territorial-29",
        "POST",
        "/fhir/Organization",
        {"resourceType": "Organization", "name": "Ailleurs", "address": [{"postalCode": "35000"}]},
        403,
        "a structure in 35",
    ),
    Attempt("territorial-35", "PUT", "/fhir/Location/loc-o29-draft", body("Location/loc-o29-draft"), 403, "29's"),
    # Regional administrators write and delete; a token's scopes still bound them.
    Attempt("regional", "DELETE", f"/fhir/{HS}/hs-o29-draft", None, 204, "regional"),
    Attempt("services-only", "PUT", f"/fhir/{HS}/hs-o29-draft", body(f"{HS}/hs-o29-draft"), 403, "read scope"),
    Attempt("regional-read-only", "DELETE", f"/fhir/{HS}/hs-o29-draft", None, 403, "read scope"),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=[f"{a.who}-{a.method}-{a.url.rsplit('/', 1)[-1]}-{a.why}" for a in ATTEMPTS])
def test_write_attempt(d: Directory, attempt: Attempt) -> None:
    before = d.web.get(attempt.url, headers=d.headers(BY_NAME["regional"])).get_data()
    response = attempt.send(d)
    assert response.status_code == attempt.expected, (attempt, response.get_json())
    if attempt.expected >= 400:
        text = response.get_data(as_text=True)
        assert "Offre o" not in text and "Structure o" not in text, "a refusal shows no stored content"
        after = d.web.get(attempt.url, headers=d.headers(BY_NAME["regional"])).get_data()
        assert after == before, "a refused write changes nothing"


def test_refusals_do_not_depend_on_existence(d: Directory) -> None:
    """DELETE, If-Match and PATCH answer a caller outside the perimeter the same for a hidden
    entry as for one that does not exist: no version, no existence, no content."""
    anonymous = d.headers(BY_NAME["anonymous"])
    for url in (f"/fhir/{HS}/hs-o29-draft", f"/fhir/{HS}/nope"):
        assert d.web.delete(url, headers=anonymous).status_code == 401
        response = d.web.put(url, json={"resourceType": HS, "id": url.rsplit("/", 1)[1]}, headers=anonymous | {"If-Match": 'W/"7"'})
        assert response.status_code == 401
    referent = d.headers(BY_NAME["referent"]) | {"Content-Type": "application/json-patch+json"}
    answers = [
        d.web.patch(url, json=RENAME, headers=referent | {"If-Match": 'W/"9"'})
        for url in (f"/fhir/{HS}/hs-o35-draft", f"/fhir/{HS}/nope")
    ]
    assert [a.status_code for a in answers] == [404, 404]
    assert "version" not in answers[0].get_data(as_text=True)


def test_a_deleted_entry_cannot_be_recreated_outside_the_perimeter(d: Directory) -> None:
    regional = d.headers(BY_NAME["regional"])
    assert d.web.delete(f"/fhir/{HS}/hs-o35-draft", headers=regional).status_code == 204
    recreated = body(f"{HS}/hs-o35-draft", providedBy={"reference": "Organization/o29-draft"}, location=[])
    del recreated["location"]
    answer = d.web.put(f"/fhir/{HS}/hs-o35-draft", json=recreated, headers=d.headers(BY_NAME["territorial-29"]))
    assert answer.status_code == 403


def test_a_deleted_public_entry_answers_410_and_a_deleted_draft_404(d: Directory) -> None:
    regional = d.headers(BY_NAME["regional"])
    for key in (f"{HS}/hs-o29-published", f"{HS}/hs-o29-draft"):
        assert d.web.delete(f"/fhir/{key}", headers=regional).status_code == 204
    anonymous = d.headers(BY_NAME["anonymous"])
    assert d.web.get(f"/fhir/{HS}/hs-o29-published", headers=anonymous).status_code == 410
    assert d.web.get(f"/fhir/{HS}/hs-o29-draft", headers=anonymous).status_code == 404


def test_deleting_a_structure_hides_what_belongs_to_it(d: Directory) -> None:
    regional = d.headers(BY_NAME["regional"])
    anonymous = d.headers(BY_NAME["anonymous"])
    assert d.web.get(f"/fhir/{HS}/hs-o29-published", headers=anonymous).status_code == 200
    assert d.web.delete("/fhir/Organization/o29-published", headers=regional).status_code == 204
    assert d.web.get(f"/fhir/{HS}/hs-o29-published", headers=anonymous).status_code == 404
    listed = d.web.get(f"/fhir/{HS}?_count=200", headers=anonymous).get_json()
    assert "hs-o29-published" not in {e["resource"]["id"] for e in listed.get("entry", [])}


def test_publishing_a_structure_publishes_its_entries_at_once(d: Directory) -> None:
    """One write of the structure's status changes what every reader sees of its offers,
    places, roles and people, in the same transaction."""
    anonymous = d.headers(BY_NAME["anonymous"])
    keys = ("HealthcareService/hs-o29-submitted", "Location/loc-o29-submitted", "Practitioner/p-o29-submitted")
    assert [d.web.get(f"/fhir/{k}", headers=anonymous).status_code for k in keys] == [404, 404, 404]
    published = body("Organization/o29-submitted", extension=lifecycle("published"))
    regional = d.headers(BY_NAME["regional"]) | REPAIR
    assert d.web.put("/fhir/Organization/o29-submitted", json=published, headers=regional).status_code == 200
    assert [d.web.get(f"/fhir/{k}", headers=anonymous).status_code for k in keys] == [200, 200, 200]
    delisted = body("Organization/o29-submitted", extension=lifecycle("delisted"))
    assert d.web.put("/fhir/Organization/o29-submitted", json=delisted, headers=regional).status_code == 200
    # Delisted: the offer and place stay citeable by id; the person is no longer shown.
    assert [d.web.get(f"/fhir/{k}", headers=anonymous).status_code for k in keys] == [200, 200, 404]
    found = d.web.get(f"/fhir/{HS}?_id=hs-o29-submitted", headers=anonymous).get_json()
    assert not found.get("entry")


def test_transaction_conditional_entries_match_only_what_the_caller_sees(d: Directory) -> None:
    """ifNoneExist in a transaction handed back an AuditEvent or a draft: now anonymous
    callers are refused before any match, and a writer's match is within its view."""
    entry = {
        "resource": {"resourceType": HS, "name": "x"},
        "request": {"method": "POST", "url": HS, "ifNoneExist": "_id=hs-o35-draft"},
    }
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    anonymous = d.web.post("/fhir", json=bundle, headers=d.headers(BY_NAME["anonymous"]))
    assert anonymous.status_code == 401
    referent = d.web.post("/fhir", json=bundle, headers=d.headers(BY_NAME["referent"]))
    assert referent.status_code == 403  # no match in its view: a creation, of an offer with no structure
    assert "Offre o35-draft" not in referent.get_data(as_text=True)


def test_a_patch_in_a_transaction_is_refused_before_it_is_applied(d: Directory) -> None:
    patch = base64.b64encode(orjson.dumps(TEST_OP)).decode()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
                "request": {"method": "PATCH", "url": f"{HS}/hs-o35-draft"},
            }
        ],
    }
    answer = d.web.post("/fhir", json=bundle, headers=d.headers(BY_NAME["referent"]))
    assert answer.status_code == 404
    assert "Offre o35-draft" not in answer.get_data(as_text=True)


def test_territorial_admins_cannot_search_the_audit_log_across_types(d: Directory) -> None:
    answer = d.web.get("/fhir?_type=AuditEvent", headers=d.headers(BY_NAME["territorial-29"]))
    assert answer.status_code == 403


def test_head_reads_and_never_writes(d: Directory) -> None:
    """HEAD used to fall through to DELETE: a regional administrator's HEAD deleted the entry."""
    regional = d.headers(BY_NAME["regional"])
    assert d.web.head(f"/fhir/{HS}/hs-o29-published", headers=regional).status_code == 200
    assert d.web.head(f"/fhir/{HS}?_id=hs-o29-published", headers=regional).status_code == 200
    assert d.web.get(f"/fhir/{HS}/hs-o29-published", headers=regional).status_code == 200
    anonymous = d.headers(BY_NAME["anonymous"])
    assert d.web.head(f"/fhir/{HS}/hs-o29-published", headers=anonymous).status_code == 200
    assert d.web.head(f"/fhir/{HS}/hs-o29-draft", headers=anonymous).status_code == 404


# ------------------------------------------------ found by attacking the policy from outside
def test_a_role_cannot_name_a_hidden_person_of_another_structure(d: Directory) -> None:
    """Naming a person in a role pulled a hidden person into the writer's perimeter, and into
    public view when the writer's structure was listed."""
    role = {"resourceType": "PractitionerRole", "organization": {"reference": "Organization/o29-draft"}}
    hidden = role | {"practitioner": {"reference": "Practitioner/p-o35-draft"}}
    referent = d.headers(BY_NAME["referent"])
    refused = d.web.post("/fhir/PractitionerRole", json=hidden, headers=referent)
    assert refused.status_code == 403
    assert d.web.get("/fhir/Practitioner/p-o35-draft", headers=referent).status_code == 404
    territorial = d.headers(BY_NAME["territorial-29"])
    assert d.web.post("/fhir/PractitionerRole", json=hidden, headers=territorial).status_code == 403
    # A person the writer may see (public), or one no role names yet, can be named.
    public = role | {"practitioner": {"reference": "Practitioner/p-o29-published"}}
    created = d.web.post("/fhir/PractitionerRole", json=public, headers=referent)
    assert created.status_code == 201
    regional = d.headers(BY_NAME["regional"])
    assert d.web.delete(f"/fhir/PractitionerRole/{created.get_json()['id']}", headers=regional).status_code == 204


def test_a_deleted_role_no_longer_opens_its_person(d: Directory) -> None:
    regional = d.headers(BY_NAME["regional"])
    role = {
        "resourceType": "PractitionerRole",
        "organization": {"reference": "Organization/o29-draft"},
        "practitioner": {"reference": "Practitioner/p-o35-draft"},
    }
    created = d.web.post("/fhir/PractitionerRole", json=role, headers=regional)
    referent = d.headers(BY_NAME["referent"])
    assert d.web.get("/fhir/Practitioner/p-o35-draft", headers=referent).status_code == 200
    assert d.web.delete(f"/fhir/PractitionerRole/{created.get_json()['id']}", headers=regional).status_code == 204
    assert d.web.get("/fhir/Practitioner/p-o35-draft", headers=referent).status_code == 404


def test_a_put_tells_nothing_of_an_unseen_id(d: Directory) -> None:
    """403 for an unseen entry against 412 (with If-Match) or 201 for a free id told which
    ids exist: below regional administrators a PUT updates what the caller sees, and nothing
    else, with one answer."""
    referent = d.headers(BY_NAME["referent"]) | {"If-Match": 'W/"1"'}
    answers = []
    for res_id in ("hs-o35-draft", "hs-free-id"):
        attempt = body(f"{HS}/hs-o29-draft", id=res_id)
        response = d.web.put(f"/fhir/{HS}/{res_id}", json=attempt, headers=referent)
        answers.append((response.status_code, response.get_json()["issue"][0]["diagnostics"].replace(res_id, "X")))
    assert answers[0] == answers[1] and answers[0][0] == 403
    territorial = d.headers(BY_NAME["territorial-29"])
    free = d.web.put(f"/fhir/{HS}/hs-free-id", json=body(f"{HS}/hs-o29-draft", id="hs-free-id"), headers=territorial)
    assert free.status_code == 403


def test_history_does_not_show_a_past_under_a_hidden_structure(d: Directory) -> None:
    regional = d.headers(BY_NAME["regional"]) | REPAIR
    offer = {
        "resourceType": HS,
        "id": "hs-moved",
        "extension": lifecycle("published"),
        "name": "Offre confidentielle en préparation",
        "providedBy": {"reference": "Organization/o29-draft"},
    }
    assert d.web.put(f"/fhir/{HS}/hs-moved", json=offer, headers=regional).status_code == 201
    moved = offer | {"name": "Offre publiée", "providedBy": {"reference": "Organization/o29-published"}}
    assert d.web.put(f"/fhir/{HS}/hs-moved", json=moved, headers=regional).status_code == 200
    anonymous = d.headers(BY_NAME["anonymous"])
    assert d.web.get(f"/fhir/{HS}/hs-moved", headers=anonymous).status_code == 200
    assert d.web.get(f"/fhir/{HS}/hs-moved/_history/1", headers=anonymous).status_code == 404
    history = d.web.get(f"/fhir/{HS}/hs-moved/_history", headers=anonymous)
    assert history.get_json()["total"] == 1
    assert "confidentielle" not in history.get_data(as_text=True)
    assert "confidentielle" not in d.web.get(f"/fhir/{HS}/_history?_count=500", headers=anonymous).get_data(as_text=True)
    assert d.web.delete(f"/fhir/{HS}/hs-moved", headers=regional).status_code == 204


def test_paging_cursors_are_opaque_and_forgeries_refused(d: Directory) -> None:
    territorial = d.headers(BY_NAME["territorial-29"])
    page = d.web.get("/fhir/Organization?_sort=name&_count=1", headers=territorial).get_json()
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    cursor = next_url.split("_cursor=", 1)[1]
    from urllib.parse import unquote

    raw = base64.urlsafe_b64decode(unquote(cursor) + "==")
    assert raw[:1] == b"\x80", "a sealed (Fernet) token, not the clear JSON of sort values and row ids"
    assert b"Structure" not in raw
    assert d.web.get(next_url.replace("http://fhir.test", ""), headers=territorial).status_code == 200
    forged = base64.urlsafe_b64encode(b'{"v":[[1,2],5]}').decode()
    assert d.web.get(f"/fhir/Organization?_cursor={forged}", headers=territorial).status_code == 400
    history = d.web.get("/fhir/Organization/_history?_count=1", headers=territorial).get_json()
    history_next = next(link["url"] for link in history["link"] if link["relation"] == "next")
    sealed = base64.urlsafe_b64decode(unquote(history_next.split("_cursor=", 1)[1]) + "==")
    assert sealed[:1] == b"\x80", "not the clear 'lastUpdated|rid|version'"


def test_sorting_by_distance_ignores_hidden_places(d: Directory) -> None:
    regional = d.headers(BY_NAME["regional"]) | REPAIR

    def place(lid: str, org: str, lat: float) -> dict[str, Any]:
        return {
            "resourceType": "Location",
            "id": lid,
            "name": lid,
            "managingOrganization": {"reference": f"Organization/{org}"},
            "position": {"latitude": lat, "longitude": -3.0},
        }

    near_offer = {
        "resourceType": HS,
        "id": "hs-near",
        "extension": lifecycle("published"),
        "name": "Offre près",
        "providedBy": {"reference": "Organization/o29-published"},
        "location": [{"reference": "Location/loc-near"}],
    }
    far_offer = near_offer | {
        "id": "hs-far",
        "name": "Offre loin",
        "location": [{"reference": "Location/loc-far"}, {"reference": "Location/loc-secret"}],
    }
    for res in (
        place("loc-near", "o29-published", 48.05),  # about 6 km from the point
        place("loc-far", "o29-published", 49.5),  # about 167 km
        place("loc-secret", "o29-draft", 48.0),  # at the point, hidden
        near_offer,
        far_offer,
    ):
        assert d.web.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=regional).status_code == 201
    url = f"/fhir/{HS}?location.near=48.0|-3.0|500|km&_sort=near&_count=10"
    found = [e["resource"]["id"] for e in d.web.get(url, headers=d.headers(BY_NAME["anonymous"])).get_json()["entry"]]
    assert found.index("hs-near") < found.index("hs-far"), found
    for key in ("HealthcareService/hs-near", "HealthcareService/hs-far", "Location/loc-near", "Location/loc-far", "Location/loc-secret"):
        assert d.web.delete(f"/fhir/{key}", headers=regional).status_code == 204
