"""Chains, reverse chains, includes, sort and paging that stays stable under writes."""

from __future__ import annotations

import pytest

from tests.search.directory import R211, load, match_ids


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    load(app.extensions["fhirsrv"])
    return app.test_client()


ids = match_ids


def test_chains_one_and_two_levels(client):
    assert sorted(ids(client, "/fhir/HealthcareService?organization.name=ligue")) == ["hs-apa", "hs-psy"]
    assert ids(client, "/fhir/Location?organization.address-postalcode=35") == ["loc-rennes"]
    assert ids(client, f"/fhir/PractitionerRole?service.specialty={R211}|004") == ["role-1"]
    assert ids(client, "/fhir/PractitionerRole?service.organization.name=centre") == ["role-1"]
    assert client.get("/fhir/HealthcareService?name.x=1").status_code == 400


def test_reverse_chain(client):
    assert ids(client, f"/fhir/Organization?_has:HealthcareService:organization:specialty={R211}|330") == [
        "ligue29"
    ]
    assert ids(client, "/fhir/Practitioner?_has:PractitionerRole:practitioner:service.name=consultation") == [
        "pr-1"
    ]
    assert client.get("/fhir/Organization?_has:HealthcareService:name:x=1").status_code == 400


def test_include_iterate_and_wildcard(client):
    res = client.get(
        "/fhir/PractitionerRole?_include=PractitionerRole:service&_include:iterate=HealthcareService:location"
    ).get_json()
    included = sorted(e["resource"]["id"] for e in res["entry"] if e["search"]["mode"] == "include")
    assert included == ["hs-douleur", "loc-rennes"]
    res = client.get("/fhir/PractitionerRole?_include=*").get_json()
    included = sorted(e["resource"]["id"] for e in res["entry"] if e["search"]["mode"] == "include")
    assert included == ["cem", "hs-douleur", "pr-1"]


@pytest.mark.parametrize(
    ("include", "named"),
    [
        ("_include=Foo:bar", "'Foo'"),  # no such type
        ("_include=Organization:foo", "'Organization:foo'"),  # no such parameter; no Organization matches
        ("_include=HealthcareService:name", "'HealthcareService:name'"),  # not a reference
        ("_include=HealthcareService:organization:Foo", "'Foo'"),  # no such target type
        ("_revinclude=Foo:organization", "'Foo'"),
    ],
)
def test_an_include_naming_what_does_not_exist_is_refused_whatever_the_page_holds(client, include, named):
    """A typo in an include was taken and did nothing when the page held none of its source
    type: the client got fewer resources without a word."""
    answer = client.get(f"/fhir/Location?_id=nothing-matches&{include}")
    assert answer.status_code == 400 and answer.get_json()["resourceType"] == "OperationOutcome"
    assert named in answer.get_json()["issue"][0]["diagnostics"]


def test_a_reference_typed_with_a_type_it_cannot_point_to_is_refused(client):
    """`organization:Foo=x` matched nothing without a word; a type it can point to still works."""
    answer = client.get("/fhir/HealthcareService?organization:Foo=ligue29")
    assert answer.status_code == 400 and ":Foo" in answer.get_json()["issue"][0]["diagnostics"]
    assert sorted(ids(client, "/fhir/HealthcareService?organization:Organization=ligue29")) == ["hs-apa", "hs-psy"]


def test_revinclude_applies_to_the_matches_only_unless_iterate(client):
    # role-1 refers to Organization/cem, which is included here, not matched.
    query = "/fhir/Location?_id=loc-rennes&_include=Location:organization&_revinclude=PractitionerRole:organization"
    res = client.get(query).get_json()
    assert sorted(e["resource"]["id"] for e in res["entry"] if e["search"]["mode"] == "include") == ["cem"]
    res = client.get(query.replace("_revinclude=", "_revinclude:iterate=")).get_json()
    included = sorted(e["resource"]["id"] for e in res["entry"] if e["search"]["mode"] == "include")
    assert included == ["cem", "role-1"]


def test_sort_several_keys(client):
    assert ids(client, "/fhir/HealthcareService?_sort=name") == [
        "hs-apa",
        "hs-douleur",
        "hs-dietetique",
        "hs-palliatif",
        "hs-psy",
    ]
    assert ids(client, "/fhir/HealthcareService?_sort=-name")[0] == "hs-psy"
    by_org_then_name = ids(client, "/fhir/HealthcareService?_sort=organization,-name")
    assert by_org_then_name == ["hs-palliatif", "hs-dietetique", "hs-douleur", "hs-psy", "hs-apa"]
    assert client.get("/fhir/HealthcareService?_sort=nonsense").status_code == 400


def test_paging_next_previous_and_stability_under_writes(client):
    seen, url, pages = [], "/fhir/HealthcareService?_sort=name&_count=2", []
    while url:
        bundle = client.get(url).get_json()
        pages.append(bundle)
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        if len(pages) == 1:
            # Concurrent writes: a new match sorting first, and an update of a match already seen.
            client.post(
                "/fhir/HealthcareService",
                json={"resourceType": "HealthcareService", "name": "AAA nouveau"},
                headers={"Content-Type": "application/fhir+json"},
            )
            client.patch(
                "/fhir/HealthcareService/hs-apa",
                json=[{"op": "replace", "path": "/comment", "value": "x"}],
                headers={"Content-Type": "application/json-patch+json"},
            )
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0].replace("http://fhir.test", "") if nxt else None
    assert seen == ["hs-apa", "hs-douleur", "hs-dietetique", "hs-palliatif", "hs-psy"]
    previous = [link["url"] for link in pages[1]["link"] if link["relation"] == "previous"][0]
    back = client.get(previous.replace("http://fhir.test", "")).get_json()
    assert [e["resource"]["id"] for e in back["entry"]] == ["hs-apa", "hs-douleur"]
    assert client.get("/fhir/HealthcareService?_cursor=garbage").status_code == 400


def test_total_modes_and_summary_count(client):
    assert client.get("/fhir/HealthcareService?_total=none").get_json().get("total") is None
    count = client.get("/fhir/HealthcareService?_summary=count").get_json()
    assert count["total"] == 5 and "entry" not in count
    assert client.get("/fhir/HealthcareService?_total=maybe").status_code == 400


def test_summary_and_elements_on_entries(client):
    bundle = client.get("/fhir/HealthcareService?_id=hs-douleur&_summary=true").get_json()
    entry = bundle["entry"][0]["resource"]
    assert "characteristic" not in entry and entry["name"] == "Consultation douleur chronique"


def test_include_costs_one_query_per_parameter(app, client):
    """No N+1: the number of SQL statements does not grow with the page size."""
    from sqlalchemy import event

    engine = app.extensions["fhirsrv"].engine
    counts = []
    for size in (1, 5):
        statements: list[str] = []

        def count(conn, cursor, statement, *args, _seen=statements):  # type: ignore[no-untyped-def]
            _seen.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        client.get(
            # _total=none: how the total is found depends on the page size, and is not at issue here.
            f"/fhir/HealthcareService?_count={size}&_total=none&_include=HealthcareService:organization"
            "&_include=HealthcareService:location&_revinclude=PractitionerRole:service"
        )
        event.remove(engine, "before_cursor_execute", count)
        counts.append(len(statements))
    assert counts[0] == counts[1]
