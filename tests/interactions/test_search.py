"""The search interaction itself (no HTTP): Bundle shape, links, handling, totals, shaping."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from fhirsrv.access.principal import SERVER
from fhirsrv.errors import BadRequest
from fhirsrv.interactions.context import UNMETERED, RequestInfo
from fhirsrv.interactions.search import search
from tests.search.directory import R211, load

BASE = "http://fhir.test/fhir"


@pytest.fixture
def services(app):  # type: ignore[no-untyped-def]
    services = app.extensions["fhirsrv"]
    load(services)
    return services


def run(services, res_type: str | None, params: list[tuple[str, str]], handling: str = "lenient") -> Any:  # type: ignore[no-untyped-def]
    result = search(
        services,
        RequestInfo(base_url=BASE, principal=SERVER, meter=UNMETERED, prefer_handling=handling),
        res_type,
        params,
    )
    assert result.status == 200
    # Entries splice stored JSON (orjson.Fragment): serialise as the api layer does.
    return orjson.loads(orjson.dumps(result.resource))


def matches(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((lk["url"] for lk in bundle["link"] if lk["relation"] == relation), None)


def test_searchset_bundle_with_full_urls_and_total(services):
    bundle = run(services, "HealthcareService", [("specialty", f"{R211}|004")])
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == 1
    (entry,) = bundle["entry"]
    assert entry["fullUrl"] == f"{BASE}/HealthcareService/hs-douleur"
    assert entry["resource"]["name"] == "Consultation douleur chronique"
    assert link(bundle, "self").startswith(f"{BASE}/HealthcareService?")


def test_system_level_search_over_named_types(services):
    bundle = run(services, None, [("_type", "Organization,Practitioner"), ("_sort", "_id")])
    assert matches(bundle) == ["cem", "ligue29", "pr-1"]
    assert link(bundle, "self").startswith(f"{BASE}?")
    with pytest.raises(BadRequest):
        run(services, None, [("_type", "Nonsense")])


def test_unknown_parameter_lenient_is_reported_strict_is_refused(services):
    bundle = run(services, "Organization", [("colour", "blue"), ("name", "ligue")])
    assert matches(bundle) == ["ligue29"]
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcome) == 1
    assert "colour" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    # The self link says what was applied: not the ignored parameter.
    assert "colour" not in link(bundle, "self")
    with pytest.raises(BadRequest) as err:
        run(services, "Organization", [("colour", "blue")], handling="strict")
    assert err.value.status == 400


def test_unknown_parameter_is_refused_when_the_client_states_no_handling(services):
    info = RequestInfo(base_url=BASE, principal=SERVER, meter=UNMETERED)  # no Prefer: the server's default
    with pytest.raises(BadRequest) as err:
        search(services, info, "Organization", [("colour", "blue"), ("name", "ligue")])
    assert "colour" in str(err.value)


def test_malformed_values_are_refused(services):
    for params in (
        [("_lastUpdated", "yesterday")],
        [("_count", "-1")],
        [("_total", "maybe")],
        [("name:nonsense", "x")],
        [("_contained", "true")],
    ):
        with pytest.raises(BadRequest):
            run(services, "HealthcareService", params)


def test_total_modes_and_summary_count(services):
    assert "total" not in run(services, "HealthcareService", [("_total", "none")])
    counted = run(services, "HealthcareService", [("_summary", "count")])
    assert counted["total"] == 5 and "entry" not in counted
    assert run(services, "HealthcareService", [("_count", "0")])["total"] == 5


def test_estimated_total_is_exact_up_to_the_bound_and_never_below_it(services):
    assert run(services, "HealthcareService", [])["total"] == 5  # default mode: estimate
    first = run(services, "HealthcareService", [("_count", "3")])
    assert first["total"] == 5 and len(matches(first)) == 3
    assert run(services, "HealthcareService", [("_count", "3"), ("_total", "none")]).get("total") is None
    services.search.settings = replace(services.search.settings, exact_total_up_to=2)
    estimated = run(services, "HealthcareService", [("_total", "estimate"), ("_count", "1")])["total"]
    if services.engine.dialect.name == "postgresql":
        assert estimated >= 3  # more than the bound: the planner's figure, at least bound + 1
    else:
        assert estimated == 5  # SQLite has no planner estimate: it counts
    assert run(services, "HealthcareService", [("_total", "accurate"), ("_count", "1")])["total"] == 5

    assert run(services, "HealthcareService", [("_total", "none"), ("_summary", "count")])["total"] == 5


def test_count_is_capped_by_settings(services):
    services.search.settings = replace(services.search.settings, max_count=2)
    bundle = run(services, "HealthcareService", [("_count", "50")])
    assert len(matches(bundle)) == 2 and bundle["total"] == 5
    assert link(bundle, "next") is not None


def test_elements_shapes_the_entries(services):
    bundle = run(services, "HealthcareService", [("_id", "hs-apa"), ("_elements", "identifier")])
    resource = bundle["entry"][0]["resource"]
    assert "identifier" in resource and "name" not in resource and "specialty" not in resource
    assert resource["id"] == "hs-apa"


def test_next_links_walk_every_match_once(services):
    params = [("_sort", "-name"), ("_count", "2")]
    seen: list[str] = []
    bundle = run(services, "HealthcareService", params)
    while True:
        seen += matches(bundle)
        nxt = link(bundle, "next")
        if nxt is None:
            break
        assert nxt.startswith(f"{BASE}/HealthcareService?")
        bundle = run(services, "HealthcareService", parse_qsl(urlsplit(nxt).query))
    assert seen == ["hs-psy", "hs-palliatif", "hs-dietetique", "hs-douleur", "hs-apa"]
    previous = link(bundle, "previous")
    assert previous is not None
    back = run(services, "HealthcareService", parse_qsl(urlsplit(previous).query))
    assert matches(back) == ["hs-dietetique", "hs-douleur"]
