"""The ROR consumer API scenarios (shared/ror/ROR-API.md), with exact matches and includes."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.search.directory import FINESS, OFFER, R30, R211, R244, R338, load

FULL = (
    "_include:iterate=HealthcareService:organization&_include=HealthcareService:location"
    "&_revinclude=PractitionerRole:service&_include=PractitionerRole:practitioner"
)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    load(app.extensions["fhirsrv"])
    return app.test_client()


def split(client, query: str):  # type: ignore[no-untyped-def]
    res = client.get(query)
    assert res.status_code == 200, res.get_json()
    bundle = res.get_json()
    matches = sorted(e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match")
    included = sorted(
        e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "include"
    )
    return bundle, matches, included


def test_full_synchronisation(client):
    bundle, matches, included = split(client, f"/fhir/HealthcareService?{FULL}")
    assert bundle["total"] == 5 and len(matches) == 5
    assert included == sorted(["cem", "ligue29", "loc-rennes", "loc-brest", "loc-quimper", "role-1", "pr-1"])


def test_by_establishment(client):
    _, matches, included = split(
        client, f"/fhir/HealthcareService?organization:identifier={FINESS}|290000017&{FULL}"
    )
    assert matches == ["hs-apa", "hs-psy"]
    assert included == ["ligue29", "loc-brest", "loc-quimper"]


def test_since_a_date_with_filter_on_the_structure(client):
    _, matches, _ = split(client, "/fhir/HealthcareService?_lastUpdated=ge2022-11-06T15:00")
    assert len(matches) == 5
    _, matches, _ = split(client, "/fhir/HealthcareService?_lastUpdated=ge2999-01-01")
    assert matches == []
    expression = quote("(_lastUpdated ge 2999-01-01) or (providedBy:_lastUpdated ge 2022-11-06T15:00)")
    _, matches, _ = split(client, f"/fhir/HealthcareService?_filter={expression}")
    assert len(matches) == 5


def test_partial_by_source_region_with_elements(client):
    bundle, matches, _ = split(client, f"/fhir/HealthcareService?_tag={R30}|53&_elements=identifier")
    assert matches == ["hs-apa", "hs-dietetique", "hs-douleur", "hs-psy"]
    for entry in bundle["entry"]:
        assert set(entry["resource"]) <= {"resourceType", "id", "meta", "identifier"}


def test_one_value_a_list_and_and(client):
    _, matches, _ = split(client, f"/fhir/HealthcareService?specialty={R211}|330")
    assert matches == ["hs-apa"]
    _, matches, _ = split(client, f"/fhir/HealthcareService?specialty={R211}|330,{R211}|289")
    assert matches == ["hs-apa", "hs-psy"]
    _, matches, _ = split(
        client, f"/fhir/HealthcareService?service-category={R244}|317&characteristic={R338}|02"
    )
    assert matches == ["hs-dietetique", "hs-palliatif"]


def test_or_and_and_or_with_filter(client):
    either = quote(f"(service-category eq {R244}|355) or (specialty eq {R211}|170)")
    _, matches, _ = split(client, f"/fhir/HealthcareService?_filter={either}")
    assert matches == ["hs-apa", "hs-palliatif", "hs-psy"]
    mixed = quote(
        f"((service-category eq {R244}|355) or (specialty eq {R211}|040)) and characteristic eq {R338}|01"
    )
    _, matches, _ = split(client, f"/fhir/HealthcareService?_filter={mixed}")
    assert matches == ["hs-apa"]
    chained = quote(f"providedBy:type eq {R244}|101")
    _, matches, _ = split(client, f"/fhir/HealthcareService?_filter={chained}")
    assert matches == ["hs-dietetique", "hs-douleur", "hs-palliatif"]
    assert client.get("/fhir/HealthcareService?_filter=" + quote("name eq")).status_code == 400


def test_not_in_a_filter_keeps_what_its_expression_does_not_match(client):
    _, everything, _ = split(client, "/fhir/HealthcareService?_count=100")
    _, either, _ = split(client, "/fhir/HealthcareService?_filter=" + quote(f"(service-category eq {R244}|355) or (specialty eq {R211}|170)"))
    negated = quote(f"not ((service-category eq {R244}|355) or (specialty eq {R211}|170))")
    _, matches, _ = split(client, f"/fhir/HealthcareService?_filter={negated}&_count=100")
    assert matches == sorted(set(everything) - set(either)) and matches
    twice = quote(f"not (not (specialty eq {R211}|330))")
    assert split(client, f"/fhir/HealthcareService?_filter={twice}")[1] == ["hs-apa"]


def test_near_a_patient(client):
    _, matches, included = split(
        client,
        f"/fhir/HealthcareService?specialty={R211}|330&location.near=48.4|-4.5|30|km"
        "&_include=HealthcareService:location",
    )
    assert matches == ["hs-apa"] and included == ["loc-brest"]


def test_near_a_patient_as_the_ror_spells_it(client):
    """The ROR publishes `location:near=…`: the same search as the chain `location.near=…`."""
    standard = split(client, f"/fhir/HealthcareService?specialty={R211}|330&location.near=48.4|-4.5|30|km")
    ror = split(client, f"/fhir/HealthcareService?specialty={R211}|330&location:near=48.4|-4.5|30|km")
    assert ror[1:] == standard[1:] and ror[1] == ["hs-apa"]
    assert split(client, "/fhir/HealthcareService?location:near=48.4|-4.5|30|km&_sort=near")[1] == ["hs-apa"]


def test_near_the_commune_of_a_patient(client):
    """ROR scenario 6, request 1: offers within a distance of a commune given by its INSEE code."""
    # 29232 is Quimper: loc-quimper is about 0 km away, loc-brest about 52 km.
    for spelling in ("location.near-insee-code", "location:near-insee-code"):
        _, near, _ = split(client, f"/fhir/HealthcareService?{spelling}=29232|15|km")
        assert near == ["hs-psy"]
        _, wider, _ = split(client, f"/fhir/HealthcareService?{spelling}=29232|60|km")
        assert wider == ["hs-apa", "hs-psy"]
    _, located, _ = split(client, "/fhir/Location?near-insee-code=29232|15|km")
    assert located == ["loc-quimper"]


def test_location_capacity_views(client):
    _, matches, included = split(client, "/fhir/Location?_revinclude=HealthcareService:location")
    assert len(matches) == 3
    assert included == ["hs-apa", "hs-dietetique", "hs-douleur", "hs-palliatif", "hs-psy"]
    _, matches, _ = split(client, f"/fhir/Location?identifier={OFFER}|LOC-BREST,{OFFER}|LOC-QUIMPER")
    assert matches == ["loc-brest", "loc-quimper"]
    _, matches, _ = split(client, f"/fhir/Location?_has:HealthcareService:location:identifier={OFFER}|HS-APA")
    assert matches == ["loc-brest"]
