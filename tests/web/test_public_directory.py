"""The public directory as a visitor uses it, in a real Chromium against the demo region.

Each test drives the page like a person (choose in a list, type a town, press "Rechercher",
follow a link) and checks what they would notice. Each result list is also held against the
FHIR API's answer to the same anonymous search, written out by hand: the page must show the
offers the API finds, in the same order, with the same total. Accessibility (axe-core: WCAG 2.1
A/AA and best practices) is checked on the pages the flows reach.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.web.browser import LiveDemo, axe_violations, describe_violations, watch
from tests.web.conftest import DESKTOP

COMMUNES_FILE = Path(__file__).resolve().parents[2] / "seed" / "data" / "communes-bretagne.csv"
PAGE_SIZE = 20
DOULEUR = "Prise en charge de la douleur"
# A département's border drawn inside the map's view (Leaflet leaves the shapes out of view
# empty, "M0 0").
OUTLINE_DRAWN = """() => [...document.querySelectorAll("#map .leaflet-overlay-pane svg path")]
    .some(path => path.getAttribute("stroke") !== "none" && path.getBBox().width > 0)"""


# ------------------------------------------------------------------------------ helpers


def shown_offers(page: Any) -> list[dict[str, str]]:
    """The result list as the visitor reads it, in order."""
    return page.locator("li.offer").evaluate_all(
        """items => items.map(li => {
            const text = selector => (li.querySelector(selector) || {}).textContent || "";
            return {
                id: li.dataset.offer,
                number: text(".number").trim(),
                name: text("h3 a").trim(),
                structure: text(".structure a").trim(),
                distance: text(".distance").trim(),
                text: li.innerText,
            };
        })"""
    )


def shown_total(page: Any) -> int:
    return int(page.locator("#result-count").get_attribute("data-total"))


def submit(page: Any, button: str = "Rechercher") -> None:
    with page.expect_navigation():
        page.get_by_role("button", name=button).click()


def type_town(page: Any, typed: str, suggested: str) -> None:
    """Types a town as a visitor does, and waits for the field to suggest `suggested` (so that
    pressing the button next does not cut the suggestions' request short)."""
    with page.expect_response(lambda response: f"/communes?q={typed}" in response.url):
        page.get_by_label("Près d'une commune").press_sequentially(typed)
    page.wait_for_selector(f'#communes option[value="{suggested}"]', state="attached")


def follow(page: Any, link: Any) -> Any:
    """Clicks a link and returns the navigation's response."""
    with page.expect_navigation() as navigation:
        link.click()
    return navigation.value


def fhir_matches(live_demo: LiveDemo, params: list[tuple[str, str]]) -> tuple[list[str], int, dict[str, Any]]:
    """The ids the anonymous FHIR search finds, in order, its total, and the Bundle."""
    bundle = live_demo.fhir("HealthcareService?" + urlencode(params))
    ids = [e["resource"]["id"] for e in bundle.get("entry") or [] if e["search"]["mode"] == "match"]
    return ids, bundle["total"], bundle


def system(live_demo: LiveDemo, name: str) -> str:
    return f"{live_demo.settings.canonical_base.rstrip('/')}/CodeSystem/{name}"


def by_name(*criteria: tuple[str, str]) -> list[tuple[str, str]]:
    """A first page of 20 sorted by name, with the total, as the site asks."""
    return [*criteria, ("_sort", "name"), ("_count", str(PAGE_SIZE)), ("_total", "accurate")]


def folded(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)).casefold()


def town_position(name: str) -> tuple[str, str]:
    """A town's position from the shipped communes file (the town hall), as written there."""
    with COMMUNES_FILE.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["name"] == name:
                return row["lat"], row["lon"]
    raise AssertionError(f"{name} is not in {COMMUNES_FILE}")


def french_km(value: float) -> str:
    return f"{value:.1f}".replace(".", ",")


def assert_accessible(page: Any) -> None:
    violations = axe_violations(page)
    assert violations == [], f"serious or critical accessibility violations on {page.url}:\n" + describe_violations(
        violations
    )


@pytest.fixture
def no_script_page(chromium: Any) -> Iterator[Any]:
    """A desktop page of a browser with JavaScript turned off."""
    context = chromium.new_context(
        locale="fr-FR", timezone_id="Europe/Paris", viewport=DESKTOP, java_script_enabled=False
    )
    try:
        yield context.new_page()
    finally:
        context.close()


# ------------------------------------------------------------------------------ searches


def test_a_visitor_finds_the_pain_care_offers_by_choosing_the_category(page, live_demo):
    problems = watch(page)
    page.goto(live_demo.url("/"))
    page.get_by_label("Catégorie de soin de support").select_option(label=DOULEUR)
    submit(page)

    assert "categorie=douleur" in page.url
    assert page.get_by_label("Catégorie de soin de support").locator("option:checked").inner_text() == DOULEUR
    offers = shown_offers(page)
    ids, total, _ = fhir_matches(
        live_demo, by_name(("sos-category:below", f"{system(live_demo, 'sos-category')}|douleur"))
    )
    assert 0 < len(offers) <= PAGE_SIZE
    assert [o["id"] for o in offers] == ids
    assert shown_total(page) == total
    assert f"{total} offres correspondent" in page.locator("#result-count").inner_text()
    assert [o["number"] for o in offers] == [str(n) for n in range(1, len(offers) + 1)]
    names = [o["name"] for o in offers]
    assert names == sorted(names, key=folded)

    # The link to the same results in FHIR answers the JSON Bundle of these very offers.
    answer = follow(page, page.locator("p.fhir a"))
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/fhir+json")
    bundle = answer.json()
    assert bundle["resourceType"] == "Bundle" and bundle["total"] == total
    assert [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"] == ids
    assert problems == []


def test_a_departement_search_lists_its_offers_and_maps_their_places(page, live_demo):
    problems = watch(page)
    page.goto(live_demo.url("/"))
    page.get_by_label("Département").select_option("29")
    submit(page)

    offers = shown_offers(page)
    ids, total, bundle = fhir_matches(
        live_demo, [*by_name(("departement", "29")), ("_include", "HealthcareService:location")]
    )
    assert [o["id"] for o in offers] == ids
    assert shown_total(page) == total and total > PAGE_SIZE
    for offer in offers:
        assert any(line.startswith("29") for line in offer["text"].splitlines()), offer

    # The map: one marker per position among the places of the page's offers, over the
    # départements' outlines, although no map tiles load.
    page.wait_for_selector('#map[data-ready="1"]')
    locations = {
        e["resource"]["id"]: e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Location"
    }
    positions = {
        (round(loc["position"]["latitude"], 5), round(loc["position"]["longitude"], 5))
        for e in bundle["entry"]
        if e["search"]["mode"] == "match"
        for ref in e["resource"].get("location") or []
        if (loc := locations.get(ref["reference"].removeprefix("Location/"))) and loc.get("position")
    }
    assert len(positions) > 1
    assert page.locator("#map .leaflet-marker-icon").count() == len(positions)
    assert page.locator("#map").get_attribute("data-markers") == str(len(positions))
    page.wait_for_function(OUTLINE_DRAWN)
    assert page.locator("#map .leaflet-tile").count() == 0
    assert problems == []


def test_a_visitor_finds_offers_near_a_town_nearest_first(page, live_demo):
    problems = watch(page)
    page.goto(live_demo.url("/"))
    type_town(page, "Brest", "Brest (29200)")
    page.get_by_label("Distance", exact=True).select_option(label="10 km")
    submit(page)

    assert page.get_by_label("Près d'une commune").input_value() == "Brest"
    assert page.get_by_label("distance", exact=True).is_checked()
    offers = shown_offers(page)
    lat, lon = town_position("Brest")
    ids, total, bundle = fhir_matches(
        live_demo,
        [("location.near", f"{lat}|{lon}|10|km"), ("_sort", "near"), ("_count", "20"), ("_total", "accurate")],
    )
    assert [o["id"] for o in offers] == ids
    assert shown_total(page) == total and total > 0
    # Each result says how far it is, as the API measured it, nearest first and within 10 km.
    measured = {
        e["resource"]["id"]: ext["valueDistance"]["value"]
        for e in bundle["entry"]
        for ext in e["search"].get("extension") or []
        if ext["url"].endswith("location-distance")
    }
    assert [o["distance"] for o in offers] == [f"À {french_km(measured[o['id']])} km" for o in offers]
    distances = [measured[o["id"]] for o in offers]
    assert distances == sorted(distances) and distances[-1] <= 10
    assert problems == []
    assert_accessible(page)

    # The same offers, by name, when the visitor asks for it.
    page.get_by_label("nom", exact=True).check()
    submit(page)
    ids, total, _ = fhir_matches(
        live_demo,
        [("location.near", f"{lat}|{lon}|10|km"), ("_sort", "name"), ("_count", "20"), ("_total", "accurate")],
    )
    by_name_offers = shown_offers(page)
    assert [o["id"] for o in by_name_offers] == ids and shown_total(page) == total
    names = [o["name"] for o in by_name_offers]
    assert names == sorted(names, key=folded)
    assert problems == []


def test_the_filters_combine(page, live_demo):
    problems = watch(page)
    page.goto(live_demo.url("/"))
    page.get_by_label("Catégorie de soin de support").select_option(label=DOULEUR)
    page.get_by_label("Département").select_option("29")
    page.get_by_text("Plus de critères").click()
    page.get_by_label("Pour qui").select_option(label="Patients")
    submit(page)

    offers = shown_offers(page)
    ids, total, _ = fhir_matches(
        live_demo,
        by_name(
            ("sos-category:below", f"{system(live_demo, 'sos-category')}|douleur"),
            ("departement", "29"),
            ("audience", f"{system(live_demo, 'sos-audience')}|patient"),
        ),
    )
    assert [o["id"] for o in offers] == ids
    assert shown_total(page) == total
    # Each criterion narrows the list: fewer offers than in the département alone.
    assert 0 < total < fhir_matches(live_demo, by_name(("departement", "29")))[1]
    for offer in offers:
        assert "Patients" in offer["text"] and any(line.startswith("29") for line in offer["text"].splitlines())
    assert problems == []


def test_the_next_page_continues_the_list(page, live_demo):
    problems = watch(page)
    page.goto(live_demo.url("/"))
    page.get_by_label("Catégorie de soin de support").select_option(label=DOULEUR)
    submit(page)
    first_page = shown_offers(page)
    total = shown_total(page)
    assert len(first_page) == PAGE_SIZE and total > PAGE_SIZE

    follow(page, page.get_by_role("link", name="Page suivante"))

    second_page = shown_offers(page)
    assert shown_total(page) == total
    assert not {o["id"] for o in first_page} & {o["id"] for o in second_page}
    assert [o["number"] for o in second_page] == [str(n) for n in range(21, 21 + len(second_page))]
    assert page.locator("ol.offers").get_attribute("start") == "21"
    assert f"Offres 21 à {20 + len(second_page)}" in page.locator(".range").inner_text()
    # The API's own next page of the same search holds the same offers.
    _, _, bundle = fhir_matches(
        live_demo, by_name(("sos-category:below", f"{system(live_demo, 'sos-category')}|douleur"))
    )
    next_url = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    following = live_demo.fhir(next_url.split("/fhir/", 1)[1])
    assert [o["id"] for o in second_page] == [
        e["resource"]["id"] for e in following["entry"] if e["search"]["mode"] == "match"
    ]
    assert page.get_by_role("link", name="Première page").is_visible()
    assert problems == []


def test_the_name_field_ignores_accents(page, live_demo):
    problems = watch(page)
    page.goto(live_demo.url("/"))
    page.get_by_text("Plus de critères").click()
    page.get_by_label("Nom de la structure ou de l'offre").fill("hopital")
    submit(page)

    offers = shown_offers(page)
    ids, total, _ = fhir_matches(
        live_demo, by_name(("_filter", 'name co "hopital" or organization.name co "hopital"'))
    )
    assert [o["id"] for o in offers] == ids
    assert shown_total(page) == total and total > 0
    for offer in offers:
        assert "hopital" in folded(offer["name"] + " " + offer["structure"]), offer
    # What the visitor typed without its accent finds the names written with it.
    assert any("Hôpital" in o["structure"] or "hôpital" in o["structure"] for o in offers)
    assert problems == []


# ------------------------------------------------------------------- structure and offer


def test_a_result_leads_to_its_structure_and_its_offers(page, live_demo):
    problems = watch(page)
    page.goto(live_demo.url("/?departement=29"))
    first = shown_offers(page)[0]

    follow(page, page.locator("li.offer").first.locator(".structure a"))

    assert page.locator("h1").inner_text() == first["structure"]
    structure_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    listed = shown_offers(page)
    assert first["id"] in [o["id"] for o in listed]
    ids, _, _ = fhir_matches(
        live_demo, [("organization", f"Organization/{structure_id}"), ("_sort", "name"), ("_count", "100")]
    )
    assert [o["id"] for o in listed] == ids
    assert problems == []
    assert_accessible(page)

    answer = follow(page, page.locator("p.fhir a"))
    assert answer.status == 200
    organization = answer.json()
    assert organization["resourceType"] == "Organization" and organization["id"] == structure_id
    assert organization["name"] == first["structure"]

    page.go_back()
    offer = page.locator("li.offer").first
    name = offer.locator("h3 a").inner_text()
    follow(page, offer.locator("h3 a"))
    assert page.locator("h1").inner_text() == name
    assert page.locator(".structure a").inner_text() == first["structure"]
    page.wait_for_selector('#map[data-ready="1"]')
    assert problems == []
    assert_accessible(page)
    offer_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    answer = follow(page, page.locator("p.fhir a"))
    assert answer.status == 200
    assert (answer.json()["resourceType"], answer.json()["id"]) == ("HealthcareService", offer_id)


def test_a_delisted_structure_says_so_and_a_draft_one_is_not_found(page, live_demo):
    response = page.goto(live_demo.url("/structure/org-22-0042"))
    assert response.status == 200
    note = page.get_by_role("note")
    assert "n'est plus référencée" in note.inner_text()
    organization = live_demo.fhir("Organization/org-22-0042")
    assert organization["active"] is False
    assert page.locator("h1").inner_text() == organization["name"]

    response = page.goto(live_demo.url("/structure/org-22-0018"))
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Page introuvable"
    assert live_demo.get("/fhir/Organization/org-22-0018", accept="application/fhir+json").status == 404


# --------------------------------------------------------- no script, phone, language


def test_the_search_works_without_javascript(no_script_page, live_demo):
    page = no_script_page
    page.goto(live_demo.url("/"))
    page.get_by_label("Catégorie de soin de support").select_option(label="Soins palliatifs")
    page.get_by_label("Près d'une commune").fill("Rennes")
    submit(page)

    offers = shown_offers(page)
    lat, lon = town_position("Rennes")
    ids, total, _ = fhir_matches(
        live_demo,
        [
            ("sos-category:below", f"{system(live_demo, 'sos-category')}|soins-palliatifs"),
            ("location.near", f"{lat}|{lon}|20|km"),
            ("_sort", "near"),
            ("_count", "20"),
            ("_total", "accurate"),
        ],
    )
    assert [o["id"] for o in offers] == ids and offers
    assert shown_total(page) == total
    assert all(o["distance"].startswith("À ") for o in offers)
    # No script ran: the list is the server's, and the map was never drawn.
    assert page.locator("#map").get_attribute("data-ready") is None


def test_on_a_phone_the_pages_fit_the_screen(phone_page, live_demo):
    page = phone_page
    problems = watch(page)
    page.goto(live_demo.url("/"))
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    type_town(page, "Brest", "Brest (29200)")
    submit(page)
    page.wait_for_selector('#map[data-ready="1"]')
    assert page.locator("li.offer").count() == PAGE_SIZE
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    first = page.locator("li.offer").first
    box = first.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"]
    assert problems == []
    assert_accessible(page)


def test_english_is_one_click_away_and_remembered(page, live_demo):
    problems = watch(page)
    page.goto(live_demo.url("/?categorie=douleur"))
    french = shown_offers(page)

    follow(page, page.get_by_role("link", name="English"))

    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == "Search for supportive care"
    assert page.get_by_role("button", name="Search").is_visible()
    assert f"{shown_total(page)} offers match these criteria." == page.locator("#result-count").inner_text()
    assert [o["id"] for o in shown_offers(page)] == [o["id"] for o in french]
    assert any(c["name"] == "lang" and c["value"] == "en" for c in page.context.cookies())

    # The next page, reached by a link without `lang`, stays in English.
    follow(page, page.locator("li.offer").first.locator(".structure a"))
    assert "lang=" not in page.url
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("heading", name="Offers of this structure").is_visible()
    assert page.get_by_role("link", name="Français").is_visible()
    assert problems == []


def test_near_me_asks_the_browser_for_its_position_and_lists_what_is_near(chromium, live_demo):
    context = chromium.new_context(
        locale="fr-FR", viewport={"width": 1280, "height": 900}, geolocation={"latitude": 48.1173, "longitude": -1.6778}
    )
    context.grant_permissions(["geolocation"])
    try:
        page = context.new_page()
        problems = watch(page)
        page.goto(live_demo.url("/"))
        page.get_by_label("Distance").select_option("5")
        with page.expect_navigation():
            page.get_by_role("button", name="Autour de moi").click()
        assert "lat=48.12" in page.url and "lon=-1.68" in page.url  # rounded: about 1 km
        ids, total, _ = fhir_matches(
            live_demo,
            [("location.near", "48.12|-1.68|5|km"), ("_sort", "near"), ("_count", str(PAGE_SIZE)), ("_total", "accurate")],
        )
        assert [o["id"] for o in shown_offers(page)] == ids and shown_total(page) == total > 0
        assert "autour de votre position" in page.locator("#near-me-state").inner_text()
        assert problems == []
    finally:
        context.close()
