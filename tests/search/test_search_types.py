"""Each parameter type and modifier, over the ROR-shaped directory, on both back-ends."""

from __future__ import annotations

import pytest

from tests.search.directory import FINESS, OFFER, R30, R211, R244, load


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    load(app.extensions["fhirsrv"])
    return app.test_client()


def ids(client, query: str, **headers: str) -> list[str]:  # type: ignore[no-untyped-def]
    res = client.get(query, headers=headers)
    assert res.status_code == 200, res.get_json()
    return sorted(
        e["resource"]["id"] for e in res.get_json().get("entry", []) if e["search"]["mode"] == "match"
    )


def test_string_is_accent_and_case_insensitive_prefix(client):
    assert ids(client, "/fhir/HealthcareService?name=equipe") == ["hs-palliatif"]
    assert ids(client, "/fhir/HealthcareService?name=ÉQUIPE MOBILE") == ["hs-palliatif"]
    assert ids(client, "/fhir/Organization?name=centre eugene") == ["cem"]
    assert ids(client, "/fhir/HealthcareService?name:contains=nutrition") == ["hs-dietetique"]
    assert ids(client, "/fhir/HealthcareService?name:exact=Diététique et nutrition") == ["hs-dietetique"]
    assert ids(client, "/fhir/HealthcareService?name:exact=diététique et nutrition") == []
    assert ids(client, "/fhir/Organization?address-postalcode=29") == ["ligue29"]


def test_token_forms_and_modifiers(client):
    assert ids(client, f"/fhir/HealthcareService?specialty={R211}|004") == ["hs-douleur"]
    assert ids(client, "/fhir/HealthcareService?specialty=004,330") == ["hs-apa", "hs-douleur"]
    assert ids(client, f"/fhir/HealthcareService?specialty={R211}|") == [
        "hs-apa",
        "hs-dietetique",
        "hs-douleur",
        "hs-palliatif",
        "hs-psy",
    ]
    assert ids(client, "/fhir/HealthcareService?specialty=|004") == []  # no system: none has it
    assert ids(client, f"/fhir/HealthcareService?specialty:not={R211}|004") == [
        "hs-apa",
        "hs-dietetique",
        "hs-palliatif",
        "hs-psy",
    ]
    assert ids(client, "/fhir/HealthcareService?active=false") == ["hs-psy"]
    assert ids(client, f"/fhir/Organization?identifier={FINESS}|290000017") == ["ligue29"]
    assert ids(client, "/fhir/HealthcareService?_id=hs-apa,hs-psy") == ["hs-apa", "hs-psy"]
    assert ids(client, f"/fhir/HealthcareService?_tag={R30}|52") == ["hs-palliatif"]


def test_missing(client):
    assert ids(client, "/fhir/HealthcareService?active:missing=false") == ["hs-psy"]
    assert "hs-apa" in ids(client, "/fhir/HealthcareService?active:missing=true")


def test_reference_forms(client):
    assert ids(client, "/fhir/HealthcareService?organization=ligue29") == ["hs-apa", "hs-psy"]
    assert ids(client, "/fhir/HealthcareService?organization=Organization/ligue29") == ["hs-apa", "hs-psy"]
    assert ids(client, "/fhir/HealthcareService?organization=http://fhir.test/fhir/Organization/cem") == [
        "hs-dietetique",
        "hs-douleur",
        "hs-palliatif",
    ]
    assert ids(client, "/fhir/HealthcareService?organization:Organization=cem&specialty=004") == [
        "hs-douleur"
    ]
    assert ids(client, "/fhir/PractitionerRole?service:missing=false") == ["role-1"]


def test_text_modifier_reads_the_concept_text_and_the_codings_display(app):
    services = app.extensions["fhirsrv"]
    role = "http://example.org/role"
    load(
        services,
        [
            {
                "resourceType": "PractitionerRole",
                "id": "both",
                "code": [
                    {
                        "coding": [{"system": role, "code": "ref", "display": "Référent"}],
                        "text": "Personne ressource",
                    }
                ],
            },
            {
                "resourceType": "PractitionerRole",
                "id": "display-only",
                "code": [{"coding": [{"system": role, "code": "ref", "display": "Personne à prévenir"}]}],
            },
            {
                "resourceType": "PractitionerRole",
                "id": "text-only",
                "code": [{"text": "Praticien d'accueil"}],
            },
        ],
    )
    client = app.test_client()
    assert ids(client, "/fhir/PractitionerRole?role:text=Personne") == ["both", "display-only"]
    assert ids(client, "/fhir/PractitionerRole?role:text=referent") == ["both"]
    assert ids(client, "/fhir/PractitionerRole?role:text=praticien") == ["text-only"]
    # The text is not a code: code searches and sorting by code are unchanged ("ref" sorts
    # after "praticien d'accueil", which has no code, and "personne ressource" is no code).
    assert ids(client, f"/fhir/PractitionerRole?role={role}|ref") == ["both", "display-only"]
    assert ids_in_order(client, "/fhir/PractitionerRole?_sort=role,_id") == [
        "text-only",
        "both",
        "display-only",
    ]


def test_versioned_reference_values_match_that_version(app):
    services = app.extensions["fhirsrv"]
    load(
        services,
        [
            {"resourceType": "HealthcareService", "id": "hs", "name": "Offre"},
            {
                "resourceType": "PractitionerRole",
                "id": "cites-v1",
                "healthcareService": [{"reference": "HealthcareService/hs/_history/1"}],
            },
            {
                "resourceType": "PractitionerRole",
                "id": "cites-v2",
                "healthcareService": [{"reference": "HealthcareService/hs/_history/2"}],
            },
            {
                "resourceType": "PractitionerRole",
                "id": "cites-current",
                "healthcareService": [{"reference": "HealthcareService/hs"}],
            },
        ],
    )
    client = app.test_client()
    assert ids(client, "/fhir/PractitionerRole?service=HealthcareService/hs/_history/1") == ["cites-v1"]
    assert ids(
        client, "/fhir/PractitionerRole?service=http://fhir.test/fhir/HealthcareService/hs/_history/2"
    ) == ["cites-v2"]
    assert ids(client, "/fhir/PractitionerRole?service:HealthcareService=hs/_history/2") == ["cites-v2"]
    assert ids(client, "/fhir/PractitionerRole?service=HealthcareService/hs/_history/3") == []
    # Without a version, every reference to the resource, versioned or not.
    assert ids(client, "/fhir/PractitionerRole?service=HealthcareService/hs") == [
        "cites-current",
        "cites-v1",
        "cites-v2",
    ]


@pytest.mark.parametrize("configured", ["", "http://fhir.test/fhir"])
def test_absolute_references_on_this_server_are_local(db_url, configured):
    """With or without a configured public base, a search value on the base the client used is local."""
    from fhirsrv.app import create_app
    from fhirsrv.settings import Settings

    settings = Settings.from_env(database_url=db_url, load_demo=False, base_url=configured, auth=False)
    app = create_app(settings)
    try:
        load(app.extensions["fhirsrv"])
        client = app.test_client()
        base = configured or "http://localhost/fhir"  # the test client's host
        assert ids(client, f"/fhir/HealthcareService?organization={base}/Organization/ligue29") == [
            "hs-apa",
            "hs-psy",
        ]
        assert ids(
            client, f"/fhir/HealthcareService?organization:Organization={base}/Organization/ligue29"
        ) == [
            "hs-apa",
            "hs-psy",
        ]
        assert (
            ids(
                client, "/fhir/HealthcareService?organization=http://elsewhere.test/fhir/Organization/ligue29"
            )
            == []
        )
    finally:
        app.extensions["fhirsrv"].engine.dispose()


def test_date_prefixes_on_last_updated(client):
    everything = ids(client, "/fhir/HealthcareService?_lastUpdated=gt2000-01-01")
    assert len(everything) == 5
    assert ids(client, "/fhir/HealthcareService?_lastUpdated=lt2000") == []
    assert ids(client, "/fhir/HealthcareService?_lastUpdated=sa2000") == everything
    assert ids(client, "/fhir/HealthcareService?_lastUpdated=eb3000-01") == everything
    assert ids(client, "/fhir/HealthcareService?_lastUpdated=ge2000&_lastUpdated=le3000") == everything
    assert client.get("/fhir/HealthcareService?_lastUpdated=yesterday").status_code == 400


def test_uri_below_and_above(client):
    client.post(
        "/fhir/ValueSet",
        json={
            "resourceType": "ValueSet",
            "status": "active",
            "url": "https://sos.example.org/fhir/ValueSet/sos-audience",
        },
        headers={"Content-Type": "application/fhir+json"},
    )
    assert len(ids(client, "/fhir/ValueSet?url:below=https://sos.example.org/fhir/")) == 1
    assert (
        len(ids(client, "/fhir/ValueSet?url:above=https://sos.example.org/fhir/ValueSet/sos-audience/x")) == 1
    )
    assert ids(client, "/fhir/ValueSet?url=https://sos.example.org/fhir") == []


def test_near_on_location_and_through_a_chain(client):
    brest = "48.39|-4.49"
    assert ids(client, f"/fhir/Location?near={brest}|5|km") == ["loc-brest"]
    assert ids(client, f"/fhir/Location?near={brest}|80|km") == ["loc-brest", "loc-quimper"]
    assert ids(client, f"/fhir/HealthcareService?location.near={brest}|20|km") == ["hs-apa"]
    assert ids(client, f"/fhir/HealthcareService?location.near={brest}|20000|m") == ["hs-apa"]
    assert client.get("/fhir/Location?near=91|0|1|km").status_code == 400


def test_unknown_parameters_are_refused_unless_the_client_prefers_lenient(client):
    # By default an unknown parameter is an error: ignoring it would answer a broader search
    # than the one asked (every offer of the region for a misspelt département).
    for headers in ({}, {"Prefer": "handling=strict"}, {"Prefer": "handling=whatever"}):
        refused = client.get("/fhir/HealthcareService?nonsense=1&specialty=004", headers=headers)
        assert refused.status_code == 400
        issue = refused.get_json()["issue"][0]
        assert issue["severity"] == "error" and "nonsense" in issue["diagnostics"]
    lenient = client.get(
        "/fhir/HealthcareService?nonsense=1&specialty=004", headers={"Prefer": "handling=lenient"}
    )
    assert lenient.status_code == 200
    res = lenient.get_json()
    assert [e["resource"]["id"] for e in res["entry"] if e["search"]["mode"] == "match"] == ["hs-douleur"]
    outcome = [e for e in res["entry"] if e["search"]["mode"] == "outcome"][0]["resource"]
    assert outcome["issue"][0]["severity"] == "warning"
    assert "nonsense" in outcome["issue"][0]["diagnostics"]
    assert "nonsense" not in next(lk["url"] for lk in res["link"] if lk["relation"] == "self")
    assert client.get("/fhir/HealthcareService?name:nope=x").status_code == 400
    assert client.get("/fhir/HealthcareService?_contained=true").status_code == 400


def test_post_search_equals_get(client):
    get = client.get(f"/fhir/HealthcareService?specialty={R211}|004,{R211}|330&_sort=name").get_json()
    post = client.post(
        "/fhir/HealthcareService/_search", data={"specialty": f"{R211}|004,{R211}|330", "_sort": "name"}
    ).get_json()
    assert [e["fullUrl"] for e in get["entry"]] == [e["fullUrl"] for e in post["entry"]]
    assert get["total"] == post["total"] == 2


def test_system_level_search(client):
    found = ids(client, f"/fhir?_type=Organization,Location&identifier={OFFER}|LOC-BREST")
    assert found == ["loc-brest"]
    assert client.get("/fhir?_type=Patient").status_code == 400


def test_system_level_negation_holds_for_every_type(client):
    everything = ids(client, "/fhir?_type=Organization,Location&_count=100")
    assert "loc-brest" in everything
    without = ids(client, "/fhir?_type=Organization,Location&_id:not=loc-brest&_count=100")
    assert sorted(without) == sorted(i for i in everything if i != "loc-brest")


def test_category_token(client):
    assert ids(client, f"/fhir/HealthcareService?service-category={R244}|355") == ["hs-apa", "hs-psy"]


def test_sort_by_distance_to_the_near_point(client):
    quimper = "47.99|-4.10"
    assert ids_in_order(client, f"/fhir/Location?near={quimper}|300|km&_sort=near") == [
        "loc-quimper",
        "loc-brest",
        "loc-rennes",
    ]
    assert ids_in_order(client, f"/fhir/Location?near={quimper}|300|km&_sort=-near")[0] == "loc-rennes"
    # Through the chain: the offers nearest the patient first.
    rennes = "48.11|-1.68"
    assert ids_in_order(client, f"/fhir/HealthcareService?location.near={rennes}|300|km&_sort=near,_id") == [
        "hs-dietetique",
        "hs-douleur",
        "hs-palliatif",
        "hs-psy",  # Quimper, about 180 km from Rennes
        "hs-apa",  # Brest, about 210 km
    ]
    assert client.get("/fhir/Location?_sort=near").status_code == 400


def ids_in_order(client, query: str) -> list[str]:  # type: ignore[no-untyped-def]
    res = client.get(query)
    assert res.status_code == 200, res.get_json()
    return [e["resource"]["id"] for e in res.get_json().get("entry", []) if e["search"]["mode"] == "match"]


def test_string_prefix_edges(app):
    services = app.extensions["fhirsrv"]
    names = {"a": "100% Sport_Santé", "b": "100 pour cent", "c": "Zoé", "d": "zoé\U0001f600 ateliers"}
    load(services, [{"resourceType": "Organization", "id": k, "name": v} for k, v in names.items()])
    client = app.test_client()
    assert ids(client, "/fhir/Organization?name=100%25") == ["a"]  # % is a character, not a wildcard
    assert ids(client, "/fhir/Organization?name=100%25 sport_") == ["a"]
    assert ids(client, "/fhir/Organization?name=100_") == []
    assert ids(client, "/fhir/Organization?name=100") == ["a", "b"]
    assert ids(client, "/fhir/Organization?name=zoe") == ["c", "d"]  # the whole name is a prefix too
    assert ids(client, "/fhir/Organization?name=zoé\U0001f600") == ["d"]


def test_sort_by_a_token_reference_or_uri_takes_each_resource_smallest_value(app):
    """Such a key is the resource's smallest value by code point (a coding's code; the concept's
    text when no coding has one; an identifier's type|value among its codes; `Type/id` for a
    local reference, the URL for another), and a resource without any sorts last both ways."""
    services = app.extensions["fhirsrv"]
    role, org = "http://example.org/role", "Organization"
    load(
        services,
        [
            {"resourceType": org, "id": "o-a", "name": "A"},
            {"resourceType": org, "id": "o-B", "name": "B"},
            {
                "resourceType": "PractitionerRole",
                "id": "two-codes",
                "code": [{"coding": [{"system": role, "code": "zz"}, {"system": role, "code": "Mid"}]}],
                "organization": {"reference": f"{org}/o-a"},
                "identifier": [
                    {"system": "urn:x", "value": "x9"},
                    {
                        "type": {"coding": [{"system": "urn:t", "code": "A"}]},
                        "system": "urn:x",
                        "value": "y1",
                    },
                ],
            },
            {
                "resourceType": "PractitionerRole",
                "id": "lower-case",
                "code": [{"coding": [{"system": role, "code": "alpha"}]}],
                "organization": {"reference": "http://elsewhere.example/Organization/x"},
                "identifier": [{"system": "urn:x", "value": "b5"}],
            },
            {
                "resourceType": "PractitionerRole",
                "id": "text-only",
                "code": [{"text": "Accueil"}],
                "organization": {"reference": f"{org}/o-B"},
            },
            {"resourceType": "PractitionerRole", "id": "nothing"},
        ],
    )
    client = app.test_client()
    # "Mid" < "accueil" (the folded text) < "alpha": code points, upper case first; "zz" is
    # not a key. Without a value, "nothing" is last both ways.
    assert ids_in_order(client, "/fhir/PractitionerRole?_sort=role") == [
        "two-codes",
        "text-only",
        "lower-case",
        "nothing",
    ]
    assert ids_in_order(client, "/fhir/PractitionerRole?_sort=-role") == [
        "lower-case",
        "text-only",
        "two-codes",
        "nothing",
    ]
    # "A|y1" (an of-type row) < "b5" < "x9"; the two without identifiers last, in row order.
    assert ids_in_order(client, "/fhir/PractitionerRole?_sort=identifier") == [
        "two-codes",
        "lower-case",
        "text-only",
        "nothing",
    ]
    # "Organization/o-B" < "Organization/o-a" < "http://…"; the one without sorts last.
    assert ids_in_order(client, "/fhir/PractitionerRole?_sort=organization,_id") == [
        "text-only",
        "two-codes",
        "lower-case",
        "nothing",
    ]
    assert ids_in_order(client, "/fhir/PractitionerRole?_sort=-organization,_id") == [
        "lower-case",
        "two-codes",
        "text-only",
        "nothing",
    ]
