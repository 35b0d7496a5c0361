"""The public pages as a client without a browser sees them: each list is the anonymous FHIR
search's answer for the same criteria, bad criteria are said beside their field, towns resolve,
and the texts follow the visitor's language."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pytest

from fhirsrv.text import fold
from tests.web.browser import LiveDemo

OFFER = re.compile(r'class="offer" data-offer="([^"]+)"')
TOTAL = re.compile(r'id="result-count" data-total="(\d+)"')
FHIR_LINK = re.compile(r'<p class="fhir"><a href="([^"]+)"')
CATEGORY = "https://sos.example.org/fhir/CodeSystem/sos-category"
AUDIENCE = "https://sos.example.org/fhir/CodeSystem/sos-audience"
INCLUDES = "&_include=HealthcareService:organization&_include=HealthcareService:location&_include=HealthcareService:endpoint"


def _listed(page: str) -> tuple[list[str], int]:
    return OFFER.findall(page), int(TOTAL.search(page).group(1))


def _matches(bundle: dict) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


@pytest.mark.parametrize(
    ("page_query", "fhir_query"),
    [
        ("categorie=douleur", f"sos-category:below={CATEGORY}|douleur&_sort=name"),
        ("service=douleur-equipe-mobile", f"sos-category={CATEGORY}|douleur-equipe-mobile&_sort=name"),
        ("departement=29&public=proche", f"departement=29&audience={AUDIENCE}|proche&_sort=name"),
        ("commune=Brest&distance=10", "location.near=48.39169|-4.48454|10|km&_sort=near"),
        ("commune=29200&distance=5&tri=nom", "location.near=48.39169|-4.48454|5|km&_sort=name"),
        ("q=hopital", "_filter=" + quote('name co "hopital" or organization.name co "hopital"') + "&_sort=name"),
    ],
    ids=["category", "service", "departement+audience", "near-by-distance", "postcode-by-name", "text"],
)
def test_a_results_page_lists_what_the_anonymous_fhir_search_answers(live_demo: LiveDemo, page_query, fhir_query):
    answer = live_demo.get(f"/?{page_query}")
    assert answer.status == 200
    shown, total = _listed(answer.text())
    bundle = live_demo.fhir(f"/HealthcareService?{fhir_query}&_count=20&_total=accurate{INCLUDES}")
    assert shown == _matches(bundle) and total == bundle["total"]
    assert 0 < len(shown) <= 20


def test_following_next_walks_every_offer_once_and_the_fhir_link_answers_the_same_page(live_demo: LiveDemo):
    url: str | None = "/?departement=35"
    seen: list[str] = []
    while url:
        page = live_demo.get(url).text()
        shown, total = _listed(page)
        link = html.unescape(FHIR_LINK.search(page).group(1))
        assert _matches(live_demo.fhir(link.split("/fhir", 1)[1])) == shown
        seen += shown
        found = re.search(r'<a href="([^"]+)" rel="next">', page)
        url = html.unescape(found.group(1)) if found else None
    every = live_demo.fhir("/HealthcareService?departement=35&_count=1000&_elements=id")
    assert len(seen) == len(set(seen)) == total == every["total"]
    assert set(seen) == set(_matches(every))


def test_a_bad_criterion_is_said_beside_its_field_and_the_others_still_apply(live_demo: LiveDemo):
    answer = live_demo.get("/?categorie=douleur&distance=7&departement=XX")
    page = answer.text()
    assert answer.status == 200
    assert 'id="e-distance"' in page or 'id="e-departement"' in page
    assert 'id="e-departement"' in page and 'aria-invalid="true"' in page
    shown, total = _listed(page)
    alone, alone_total = _listed(live_demo.get("/?categorie=douleur").text())
    assert (shown, total) == (alone, alone_total)


def test_an_unknown_category_is_refused_by_name_not_ignored_silently(live_demo: LiveDemo):
    page = live_demo.get("/?categorie=astrologie").text()
    assert 'id="e-categorie"' in page and "astrologie" in page


def test_a_town_shared_by_two_communes_asks_which_one(live_demo: LiveDemo):
    page = live_demo.get("/?commune=Plouhinec").text()
    choices = re.findall(r"Plouhinec \((\d{5})\)", page)
    assert sorted(set(choices)) == ["29780", "56680"]
    chosen = live_demo.get(f"/?commune={quote('Plouhinec (29780)')}").text()
    assert 'id="e-commune"' not in chosen and "Plouhinec (56680)" not in chosen
    assert 'class="distance"' in chosen and _listed(chosen)[1] > 0


def test_an_unknown_town_is_said_beside_the_town_field(live_demo: LiveDemo):
    page = live_demo.get("/?commune=Atlantide").text()
    assert 'id="e-commune"' in page and "Atlantide" in page


def test_town_suggestions_offer_the_largest_towns_first_by_name_or_postcode(live_demo: LiveDemo):
    by_name = live_demo.get("/communes?q=bre", accept="application/json").json()
    assert by_name[0]["label"] == "Brest (29200)" and by_name[0]["insee"] == "29019"
    assert all(fold(s["label"]).startswith("bre") for s in by_name)
    by_postcode = live_demo.get("/communes?q=2920", accept="application/json").json()
    assert "Brest (29200)" in [s["label"] for s in by_postcode]
    assert live_demo.get("/communes?q=", accept="application/json").json() == []


def test_the_departement_outlines_are_closed_polygons_around_their_towns(live_demo: LiveDemo):
    shapes = live_demo.get("/departements.geojson", accept="application/geo+json").json()
    by_code = {f["properties"]["departement"]: f["geometry"]["coordinates"][0] for f in shapes["features"]}
    for code in ("22", "29", "35", "56"):
        ring = by_code[code]
        assert ring[0] == ring[-1] and len(ring) >= 4
    lons = [p[0] for p in by_code["29"]]
    assert min(lons) < -4.48454 < max(lons)  # Brest lies inside Finistère's outline


def test_english_is_chosen_by_the_link_and_remembered(live_demo: LiveDemo):
    import http.cookiejar
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    english = opener.open(live_demo.url("/?lang=en&categorie=douleur")).read().decode()
    assert '<html lang="en">' in english and "Search for supportive care" in english
    assert "Pain management" in english or "pain" in english.lower()
    later = opener.open(live_demo.url("/structure/org-29-0002")).read().decode()
    assert '<html lang="en">' in later
    french = live_demo.get("/?categorie=douleur").text()
    assert '<html lang="fr">' in french and "Rechercher un soin de support" in french
    assert _listed(english) == _listed(french)


def test_pages_allow_scripts_and_styles_from_the_server_only(live_demo: LiveDemo):
    answer = live_demo.get("/?categorie=douleur")
    policy = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert answer.headers["Content-Type"].startswith("text/html")


ASSET = re.compile(r'(?:href|src)="(/assets/[^"?]+)\?v=([0-9a-f]{16})"')


def test_a_page_links_its_files_by_content_so_a_browser_keeps_them_instead_of_asking_again(live_demo: LiveDemo):
    """Each page view revalidated its style sheets and scripts: about six requests of the
    visitor's anonymous rate limit a page instead of one."""
    linked = ASSET.findall(live_demo.get("/?categorie=douleur").text())
    assert {path.rsplit("/", 1)[1] for path, _ in linked} >= {"site.css", "site.js", "leaflet.js", "leaflet.css"}
    for path, version in linked:
        kept = live_demo.get(f"{path}?v={version}", accept="*/*")
        assert kept.status == 200 and "max-age=31536000" in kept.headers["Cache-Control"], path
        stale = live_demo.get(f"{path}?v=0000000000000000", accept="*/*")
        assert stale.status == 200 and "max-age=31536000" not in stale.headers.get("Cache-Control", ""), path


def test_an_unknown_offer_or_structure_answers_a_page_that_says_so(live_demo: LiveDemo):
    for path in ("/offre/does-not-exist", "/structure/org-22-0018"):  # the second is a draft
        answer = live_demo.get(path)
        assert answer.status == 404 and "introuvable" in answer.text()


def test_a_delisted_structure_keeps_its_page_with_its_last_known_details(live_demo: LiveDemo):
    answer = live_demo.get("/structure/org-22-0042")
    page = answer.text()
    assert answer.status == 200 and "plus référencée" in page
    name = live_demo.fhir("/Organization/org-22-0042")["name"]
    assert html.escape(name) in page or name in page


def test_near_me_searches_around_the_position_rounded_to_about_a_kilometre(live_demo: LiveDemo):
    page = live_demo.get("/?lat=48.39169&lon=-4.48454&distance=10").text()
    shown, total = _listed(page)
    bundle = live_demo.fhir(f"/HealthcareService?location.near=48.39|-4.48|10|km&_sort=near&_count=20&_total=accurate{INCLUDES}")
    assert shown == _matches(bundle) and total == bundle["total"] > 0
    assert 'name="lat" value="48.39"' in page and 'name="lon" value="-4.48"' in page
    assert "location.near=48.39%7C-4.48%7C10%7Ckm" in html.unescape(FHIR_LINK.search(page).group(1))
    # A typed town wins over a position left in the link.
    town = live_demo.get(f"/?lat=43.3&lon=5.4&commune={quote('Brest (29200)')}&distance=10").text()
    assert _listed(town) == _listed(live_demo.get(f"/?commune={quote('Brest (29200)')}&distance=10").text())


def test_an_impossible_position_is_said_at_the_town_field_and_not_searched(live_demo: LiveDemo):
    page = live_demo.get("/?lat=123&lon=-4.4").text()
    assert re.findall(r'href="#f-(\w+)"', page) == ["commune"] and 'id="e-commune"' in page
    assert _listed(page) == _listed(live_demo.get("/").text())
