"""The public pages attacked as an anonymous outsider would: markup in every echoed value and in
the directory's own names, hidden entries looked for through every page and paging link, odd or
oversized requests, the application form posted from elsewhere, twice, or with odd values, and
the headers a browser is given.

The site is a small directory of its own per back-end (the demo's must not be changed): a
published structure, place and offer whose names hold markup, and beside them entries the
public must never see (offers in every unpublished state, the structure's referent).
Authorization is on, as deployed.
"""

from __future__ import annotations

import html
import io
import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from fhirsrv.access.principal import SERVER
from fhirsrv.app import create_app, make_server
from fhirsrv.auth.clients import add_client
from fhirsrv.interactions import writes
from fhirsrv.interactions.load import load_initial_content
from fhirsrv.logformat import JsonFormatter
from fhirsrv.settings import Settings
from tests.conftest import BACKENDS, PG_URL
from tests.live_server import running
from tests.web.test_application_form import VALUES
from tests.worker_processes import postgres_database

CANONICAL = "https://sos.example.org/fhir"
LIFECYCLE = f"{CANONICAL}/StructureDefinition/sos-entry-lifecycle"
CATEGORY = f"{CANONICAL}/CodeSystem/sos-category"
FHIR = "application/fhir+json"
# What a browser sends with a form of the page it shows (the test client's host is "localhost").
SAME_ORIGIN = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}

# Markup a name may hold: each would run, or open an element, if written into a page unescaped.
CLOSE_SCRIPT = "</script><script>alert(1)</script>"
BREAK_ATTRIBUTE = '"><img src=x onerror=alert(2)>'
SINGLE_QUOTE = "'-alert(3)-'"
PAYLOADS = (CLOSE_SCRIPT, BREAK_ATTRIBUTE)
RAW_MARKUP = re.compile(r"<script>alert|<img src=x|<svg|onerror=alert\(\d\)>(?!&)", re.IGNORECASE)

# What the public must never read, in any page.
SECRETS = (
    "Offre brouillon Kermadec",
    "Offre soumise Kermadec",
    "Offre refusée Kermadec",
    "Offre validée territoire Kermadec",
    "Offre proposée puis retirée Kermadec",  # withdrawn before it was ever published
    "Kerhervé",  # the referent's family name
    "Maïwenn",  # and given name
    "maiwenn.kerherve@exemple.bzh",
    "06 98 76 54 32",
)


def lifecycle(status: str, *, published_on: str | None = None) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"url": "status", "valueCode": status}]
    if published_on:  # the region's publication: a listed past
        parts.append({"url": "regionValidatedOn", "valueDateTime": f"{published_on}T09:00:00Z"})
    return [{"url": LIFECYCLE, "extension": parts}]


def directory_entries() -> list[dict[str, Any]]:
    owner = {"reference": "Organization/org-xss"}
    markup = f"{CLOSE_SCRIPT} {BREAK_ATTRIBUTE} {SINGLE_QUOTE}"

    def offer(res_id: str, name: str, status: str, published_on: str | None = None) -> dict[str, Any]:
        return {
            "resourceType": "HealthcareService",
            "id": res_id,
            "extension": lifecycle(status, published_on=published_on),
            "active": True,
            "name": name,
            "providedBy": owner,
            "location": [{"reference": "Location/loc-xss"}],
            "specialty": [{"coding": [{"system": CATEGORY, "code": "douleur"}]}],
        }

    shown = offer("hs-xss", f"Offre {markup}", "published") | {
        "comment": CLOSE_SCRIPT + BREAK_ATTRIBUTE,
        "availabilityExceptions": CLOSE_SCRIPT,
        "telecom": [
            {"system": "phone", "value": f"02 {BREAK_ATTRIBUTE}"},
            {"system": "email", "value": f"accueil{BREAK_ATTRIBUTE}@exemple.bzh"},
        ],
    }
    return [
        {
            "resourceType": "Organization",
            "id": "org-xss",
            "extension": lifecycle("published"),
            "active": True,
            "name": f"Structure {markup}",
            "telecom": [{"system": "email", "value": f"contact{BREAK_ATTRIBUTE}@exemple.bzh"}],
            "address": [{"city": "Brest", "postalCode": "29200"}],
        },
        {
            "resourceType": "Location",
            "id": "loc-xss",
            "name": f"Lieu {CLOSE_SCRIPT}{BREAK_ATTRIBUTE}",
            "managingOrganization": owner,
            "address": {"line": [f"1 rue {CLOSE_SCRIPT}", BREAK_ATTRIBUTE], "postalCode": "29200", "city": "Brest"},
            "position": {"latitude": 48.39, "longitude": -4.49},
        },
        shown,
        offer("hs-draft", SECRETS[0], "draft"),
        offer("hs-submitted", SECRETS[1], "submitted"),
        offer("hs-rejected", SECRETS[2], "rejected"),
        offer("hs-territorial", SECRETS[3], "territorial-validated"),
        # Withdrawn once published: no longer listed, yet read by id as the API reads it (care
        # plans cite it). Withdrawn before publication: never shown, so never read.
        offer("hs-withdrawn", "Offre retirée Kermadec", "withdrawn", published_on="2025-03-01"),
        offer("hs-withdrawn-unpublished", SECRETS[4], "withdrawn"),
        {"resourceType": "Practitioner", "id": "p-referent", "name": [{"family": "Kerhervé", "given": ["Maïwenn"]}]},
        {
            "resourceType": "PractitionerRole",
            "id": "pr-referent",
            "organization": owner,
            "practitioner": {"reference": "Practitioner/p-referent"},
            "telecom": [
                {"system": "email", "value": "maiwenn.kerherve@exemple.bzh"},
                {"system": "phone", "value": "06 98 76 54 32"},
            ],
        },
    ]


@dataclass
class Site:
    app: Flask
    settings: Settings
    web: FlaskClient
    admin: dict[str, str] = field(default_factory=dict)  # the region's administrator's headers
    _other_apps: list[Flask] = field(default_factory=list)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        """An anonymous visitor's first request (no cookie: a language chosen earlier is not kept)."""
        return self.app.test_client().get(path, **kwargs)

    def fhir(self, path: str) -> dict[str, Any]:
        answer = self.web.get(f"/fhir/{path.lstrip('/')}", headers=self.admin)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    def app_with(self, **overrides: Any) -> Flask:
        """Another app on the same database, with some settings changed."""
        app = create_app(self.settings.overridden(**overrides))
        self._other_apps.append(app)
        return app

    def applications(self) -> int:
        """How many structures the directory holds, as its administrator counts them."""
        return self.fhir("Organization?_summary=count")["total"]


@pytest.fixture(scope="module", params=BACKENDS)
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Site]:
    with _database(request.param, tmp_path_factory.mktemp("attacks"), worker_id) as url:
        settings = Settings.from_env(
            database_url=url,
            load_demo=False,
            auth=True,
            rate_limit_anonymous=0,
            rate_limit_client=0,
            enforce_sos_profiles="claimed-only",
            token_lifetime=3600,
            web_tile_url="",
        )
        app = create_app(settings)
        services = app.extensions["fhirsrv"]
        load_initial_content(services, demo=False)  # the SOS CodeSystems the pages name
        with services.engine.begin() as conn:
            for resource in directory_entries():
                writes.create(services, conn, dict(resource), resource["id"], actor=SERVER)
            client, secret = add_client(conn, "attacks dsrc", "system/*.cruds", "regional-admin")
        web = app.test_client()
        token = web.post("/fhir/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret or ""))
        assert token.status_code == 200, token.get_json()
        found = Site(app, settings, web, {"Authorization": f"Bearer {token.get_json()['access_token']}"})
        try:
            yield found
        finally:
            for other in found._other_apps:
                other.extensions["fhirsrv"].engine.dispose()
            services.engine.dispose()


@contextmanager
def _database(backend: str, folder: Path, worker: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'attacks.sqlite3'}"
        return
    import os

    with postgres_database(PG_URL, f"fhirsrv_test_attacks_{worker}_{os.getpid()}") as url:
        yield url


@contextmanager
def served(app: Flask, settings: Settings) -> Iterator[str]:
    """The app behind the waitress server `fhirsrv serve` runs (make_server); yields its root URL."""
    server = make_server(app, settings, "127.0.0.1", 0, threads=4)
    with running(server):
        yield f"http://127.0.0.1:{server.effective_port}"


def text(answer: TestResponse) -> str:
    return answer.get_data(as_text=True)


def assert_no_markup_written(page: str) -> None:
    found = RAW_MARKUP.search(page)
    assert found is None, page[max(0, found.start() - 200) : found.end() + 100]


def map_data(page: str) -> Any:
    found = re.search(r'<script type="application/json" id="map-data">(.*?)</script>', page, re.S)
    assert found, "no map data"
    return json.loads(found.group(1))


def assert_no_secret(page: str) -> None:
    shown = [s for s in SECRETS if s in page or html.escape(s) in page]
    assert not shown, shown


# ------------------------------------------------------------------------------------ XSS

PAGES_WITH_MARKUP = ("/offre/hs-xss", "/structure/org-xss", "/?categorie=douleur", "/?q=Offre", "/?q=Offre&lang=en")


@pytest.mark.parametrize("path", PAGES_WITH_MARKUP)
def test_names_holding_markup_are_shown_as_text(site: Site, path: str) -> None:
    answer = site.get(path)
    page = text(answer)
    assert answer.status_code == 200
    assert_no_markup_written(page)
    assert html.escape(CLOSE_SCRIPT, quote=False) in page  # shown, as text
    # The map's data holds the names as they are, and no "</script" can end its element early.
    data = page.split('id="map-data">', 1)[1].split("</script>", 1)[0]
    assert "</" not in data and "<" not in data
    markers = map_data(page)
    assert any(CLOSE_SCRIPT in line for m in markers for line in m["address"])
    assert any(BREAK_ATTRIBUTE in o["name"] for m in markers for o in m["offers"])


PAYLOAD = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
QUOTED = urllib.parse.quote(PAYLOAD)
ECHOED_PARAMETERS = (
    "q", "commune", "categorie", "service", "departement", "public", "age", "lieu", "phase", "acces",
    "parcours", "lat", "lon", "distance", "tri", "page", "debut", "lang",
)  # fmt: skip


@pytest.mark.parametrize("name", ECHOED_PARAMETERS)
def test_every_query_parameter_echoed_in_the_search_page_is_escaped(site: Site, name: str) -> None:
    for query in (f"{name}={QUOTED}", f"categorie=douleur&{name}={QUOTED}&lang=en", f"{QUOTED}=1&{name}={QUOTED}"):
        answer = site.get(f"/?{query}")
        assert answer.status_code < 500
        page = text(answer)
        assert_no_markup_written(page)
        # The language switch and paging links keep what was asked, percent-encoded.
        for link in re.findall(r'href="(/[^"]*)"', page):
            assert "<" not in html.unescape(link) and '"' not in html.unescape(link), link


@pytest.mark.parametrize("path", ["/offre/", "/structure/", "/candidature?lang=", "/candidature/envoyee?x="])
def test_values_echoed_in_other_pages_are_escaped(site: Site, path: str) -> None:
    answer = site.get(path + QUOTED)
    assert answer.status_code < 500
    assert_no_markup_written(text(answer))


# The application form's typed values (tests/web/test_application_form.py), plain text only.
FORM = VALUES | {"service-category": ["sophrologie"], "service-description": "Séances collectives"}


def post_form(site: Site, values: dict[str, Any], *, headers: dict[str, str] | None = None, address: str = "198.51.100.7",
              app: Flask | None = None, query: str = "") -> TestResponse:  # fmt: skip
    return (app or site.app).test_client().post(
        f"/candidature{query}",
        data=values,
        headers=SAME_ORIGIN if headers is None else headers,
        environ_base={"REMOTE_ADDR": address},
    )


def test_the_application_form_echoes_typed_values_and_the_operation_messages_escaped(site: Site) -> None:
    typed = {name: PAYLOAD for name, value in FORM.items() if isinstance(value, str)}
    answer = post_form(site, typed | {"service-category": [PAYLOAD, "sophrologie"]}, address="198.51.100.8")
    page = text(answer)
    assert answer.status_code == 422
    assert_no_markup_written(page)
    # Every value kept, as text, in its field; the operation's messages beside them.
    for name in ("structure-name", "structure-siret", "referent-email", "service-name"):
        kept = re.search(rf'<input id="f-{name}" name="{name}" type="\w+" value="([^"]*)"', page)
        assert kept and html.unescape(kept.group(1)) == PAYLOAD, name
    assert 'class="error"' in page
    textarea = re.search(r'<textarea id="f-service-description"[^>]*>(.*?)</textarea>', page, re.S)
    assert textarea and html.unescape(textarea.group(1)).strip() == PAYLOAD


# ---------------------------------------------------------------------------- hidden data


@pytest.mark.parametrize(
    "path",
    [
        "/", "/?categorie=douleur", "/?q=Kermadec", "/?q=Offre", "/?commune=Brest&distance=50",
        "/structure/org-xss", "/structure/org-xss?lang=en", "/offre/hs-xss", "/offre/hs-xss?lang=en",
        "/offre/hs-draft", "/offre/hs-submitted?lang=en", "/offre/hs-rejected", "/offre/hs-territorial",
        "/offre/pr-referent", "/structure/p-referent", "/structure/pr-referent",
    ],
)  # fmt: skip
def test_no_page_shows_an_unpublished_offer_or_a_person(site: Site, path: str) -> None:
    answer = site.get(path)
    assert answer.status_code in (200, 404)
    assert_no_secret(text(answer))
    if path.startswith("/offre/hs-") and path.split("?")[0] != "/offre/hs-xss":
        assert answer.status_code == 404


def test_the_structure_page_and_the_searches_list_only_its_published_offers(site: Site) -> None:
    for path in ("/structure/org-xss", "/?categorie=douleur", "/?q=Kermadec", "/?q=Offre"):
        page = text(site.get(path))
        assert re.findall(r'data-offer="([^"]+)"', page) in ([], ["hs-xss"]), path
    assert re.findall(r'data-offer="([^"]+)"', text(site.get("/structure/org-xss"))) == ["hs-xss"]


def test_a_withdrawn_offer_reads_by_id_as_no_longer_listed_and_is_listed_nowhere(site: Site) -> None:
    answer = site.get("/offre/hs-withdrawn")
    assert answer.status_code == 200 and "plus référencée" in text(answer)
    for path in ("/structure/org-xss", "/?categorie=douleur", "/?q=Kermadec"):
        assert "hs-withdrawn" not in text(site.get(path)), path


def test_an_offer_withdrawn_before_it_was_published_is_not_found(site: Site) -> None:
    answer = site.get("/offre/hs-withdrawn-unpublished")
    assert answer.status_code == 404
    assert_no_secret(text(answer))


def test_a_paging_cursor_from_an_administrator_s_search_shows_the_public_view_only(site: Site) -> None:
    """A cursor is a position, not a permission: one an administrator's search issued (where
    the unpublished offers are) pages the public's search, never the administrator's."""
    url: str | None = "HealthcareService?_sort=name&_count=1&_elements=id&_include=HealthcareService:organization"
    cursors = []
    while url:
        bundle = site.fhir(url)
        following = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        url = following.split("/fhir/", 1)[1] if following else None
        if following:
            cursors.append(urllib.parse.parse_qs(urllib.parse.urlsplit(following).query)["_cursor"][0])
    assert len(cursors) >= 5  # the administrator pages through hidden offers too
    for cursor in cursors:
        answer = site.get(f"/?categorie=douleur&page={urllib.parse.quote(cursor)}")
        page = text(answer)
        assert answer.status_code < 500
        assert_no_secret(page)
        assert set(re.findall(r'data-offer="([^"]+)"', page)) <= {"hs-xss"}


@pytest.mark.parametrize("cursor", ["gAAAAABforged", "eyJ2IjpbMSwiYSJdLCJzIjoibmFtZSJ9", "%00", "x" * 1900])
def test_a_forged_cursor_answers_a_page_not_an_error_of_the_server(site: Site, cursor: str) -> None:
    answer = site.get(f"/?page={cursor}")
    assert answer.status_code < 500 and answer.mimetype == "text/html"
    assert_no_secret(text(answer))


@pytest.mark.parametrize("cursor", ["gAAAAABforged", "eyJ2IjpbMSwiYSJdLCJzIjoibmFtZSJ9", "x" * 1900, "near"])
def test_a_paging_link_the_server_cannot_read_shows_the_first_page_and_says_so(site: Site, cursor: str) -> None:
    """A link to a later page that is not, or no longer, this server's (copied wrong, or issued
    for another sort) brings the first page of the same search, not a dead end."""
    if cursor == "near":  # a real cursor of a search by name, in a search by distance
        links = site.fhir("HealthcareService?_sort=name&_count=1")["link"]
        following = next(link for link in links if link["relation"] == "next")
        cursor = urllib.parse.parse_qs(urllib.parse.urlsplit(following["url"]).query)["_cursor"][0]
        query = f"commune=Brest&distance=50&page={urllib.parse.quote(cursor)}&debut=20"
    else:
        query = f"categorie=douleur&page={urllib.parse.quote(cursor)}&debut=20"
    answer = site.get(f"/?{query}")
    page = text(answer)
    assert answer.status_code == 200
    assert re.findall(r'data-offer="([^"]+)"', page) == ["hs-xss"]
    assert '<ol class="offers" start="1">' in page  # numbered from the first again
    assert 'id="e-page"' not in page and "plus valable" in page


@pytest.mark.parametrize(
    "path", ["/offre/" + "a" * 65, "/offre/%3Cscript%3E", "/structure/a%20b", "/structure/%C3%A9", "/offre/a_b"]
)
def test_an_address_no_entry_can_have_answers_the_not_found_page(site: Site, path: str) -> None:
    answer = site.get(path)
    assert answer.status_code == 404 and "introuvable" in text(answer)


# ---------------------------------------------------------------------------------- abuse

LONG = "a" * 10_000
ODD_REQUESTS = [
    "/?q=" + LONG[:3000], "/?commune=" + LONG[:3000], "/?page=" + LONG[:3000], "/?lang=" + LONG[:3000],
    "/?q=%00", "/?commune=a%00b", "/?q=%C3%28", "/?commune=%ED%A0%80", "/?q=%F4%90%80%80", "/?q=%C0%AF",
    "/?q=%E2%80%AE%0A%0D%1B", "/?q=a&q=b&q=c", "/?categorie=douleur&categorie=x&service=y&service=z",
    "/?debut=-1", "/?debut=99999999999999999999999", "/?debut=1_000", "/?debut=%2B1", "/?distance=1e309",
    "/?distance=-5&commune=Brest", "/?lat=nan&lon=nan", "/?lat=inf&lon=-inf", "/?lat=1e309&lon=0",
    "/?lat=48&lon=", "/?lat=-90&lon=-180&distance=50", "/?tri=distance", "/?commune=(", "/?commune=()",
    "/?commune=" + "(" * 80, "/?q=%25%5F%2A", "/?q=a%22%20or%20name%20co%20%22", "/?departement=2A",
    "/?" + "&".join(f"p{i}=1" for i in range(900)),
    "/offre/" + "a" * 64, "/offre/" + "a" * 65, "/offre/a%2Fb", "/offre/.", "/offre/..", "/offre/%C3%28",
    "/offre/%00", "/structure/%ED%A0%80", "/structure/", "/offre/", "/offre/hs-xss/", "/offre/hs-xss/_history",
    "/assets/", "/assets/nothing.js", "/assets/../views.py", "/assets/%2e%2e/views.py", "/nothing-here",
    "/%C3%28", "/%00", "/candidature?lang=%00", "/candidature/envoyee?lang=de",
]  # fmt: skip


@pytest.mark.parametrize("path", ODD_REQUESTS)
def test_an_odd_request_answers_a_page_never_an_error_of_the_server(site: Site, path: str) -> None:
    answer = site.get(path)
    page = text(answer)
    assert answer.status_code < 500, page[:500]
    assert answer.mimetype == "text/html", (answer.status_code, page[:300])
    assert "Traceback" not in page and "OperationOutcome" not in page
    assert_no_markup_written(page)


def test_a_query_longer_than_the_limit_answers_a_page_that_says_so(site: Site) -> None:
    answer = site.get("/?q=" + LONG)
    assert answer.status_code == 414 and answer.mimetype == "text/html"
    assert "Content-Security-Policy" in answer.headers


@pytest.mark.parametrize("path", ["/", "/offre/hs-xss", "/structure/org-xss", "/candidature/envoyee"])
@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "POST", "PROPFIND"])
def test_a_method_a_page_does_not_take_answers_405_as_a_page_with_allow(site: Site, path: str, method: str) -> None:
    answer = site.app.test_client().open(path, method=method, data="x=1")
    assert answer.status_code == 405 and answer.mimetype == "text/html"
    assert set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/", "/offre/hs-xss", "/structure/org-xss", "/candidature", "/nothing-here", "/offre/x"])
def test_head_answers_the_status_and_type_of_get_without_a_body(site: Site, path: str) -> None:
    head, get = site.app.test_client().head(path), site.get(path)
    assert (head.status_code, head.mimetype) == (get.status_code, get.mimetype)
    assert head.get_data() == b""


@pytest.mark.parametrize("accept", [FHIR, "application/json", "text/plain", "*/*;q=0", "x" * 4000, ""])
def test_the_accept_header_never_turns_a_page_into_something_else(site: Site, accept: str) -> None:
    for path in ("/", "/offre/hs-xss", "/nothing-here"):
        answer = site.get(path, headers={"Accept": accept})
        assert answer.mimetype == "text/html" and answer.status_code in (200, 404), (path, answer.status_code)


@pytest.mark.parametrize("typed", ["%00", "%C3%28", LONG[:3000], "%20", "-", "%CC%81", "1" * 80, "(", "%E2%80%AE"])
def test_the_town_suggestions_take_any_text(site: Site, typed: str) -> None:
    answer = site.get(f"/communes?q={typed}")
    assert answer.status_code in (200, 400)
    if answer.status_code == 200:
        assert isinstance(answer.get_json(), list)


def test_the_anonymous_rate_limit_applies_to_pages_with_a_429_page_and_retry_after(site: Site) -> None:
    limited = site.app_with(rate_limit_anonymous=3).test_client()
    paths = ["/", "/offre/hs-xss", "/structure/org-xss", "/candidature", "/nothing-here", "/offre/hs-xss?lang=en"]
    answers = [limited.get(p, environ_base={"REMOTE_ADDR": "203.0.113.9"}) for p in paths]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    for answer in answers[3:]:
        assert answer.status_code == 429 and answer.mimetype == "text/html", answer.get_data(as_text=True)[:200]
        assert int(answer.headers["Retry-After"]) > 0
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert "Too many" in text(answers[-1]) or "Trop de" in text(answers[-1])  # said, in the page's language


# ---------------------------------------------------------------------------- the form


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
        {"Origin": "null"},
        {"Origin": "http://evil.example"},
        {"Origin": "http://localhost.evil.example"},
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "bogus"},
    ],
)
def test_a_cross_site_post_of_the_form_is_refused_and_nothing_is_stored(site: Site, headers: dict[str, str]) -> None:
    before = site.applications()
    answer = post_form(site, FORM, headers=headers, address="198.51.100.9")
    assert answer.status_code == 403 and answer.mimetype == "text/html"
    assert site.applications() == before


def test_a_body_larger_than_the_limit_answers_a_page_and_stores_nothing(site: Site) -> None:
    small = site.app_with(max_body_bytes=64 * 1024)
    before = site.applications()
    answer = post_form(site, FORM | {"service-description": "x" * 100_000}, app=small, address="198.51.100.10")
    assert answer.status_code == 413 and answer.mimetype == "text/html"
    assert site.applications() == before


def test_the_form_takes_a_long_description_but_not_megabytes(site: Site) -> None:
    """The form is a few kilobytes; the API's body limit (10 MiB) let one anonymous POST store a
    structure name of a megabyte, and parse a body of millions of fields for seconds."""
    before = site.applications()
    long_text = "Séances collectives, ateliers et entretiens individuels. " * 700  # 40,000 characters
    accepted = post_form(site, FORM | {"service-description": long_text}, address="198.51.100.15")
    assert accepted.status_code == 303 and site.applications() == before + 1
    for values in (FORM | {"structure-name": "N" * 1_000_000}, {"a": ["1"] * 200_000}):
        refused = post_form(site, values, address="198.51.100.16")
        assert refused.status_code == 413 and refused.mimetype == "text/html"
    assert site.applications() == before + 1


def test_categories_the_directory_does_not_have_are_each_answered_beside_the_field(site: Site) -> None:
    ticked = [f"categorie-{i}" for i in range(50)]
    answer = post_form(site, FORM | {"service-category": ticked}, address="198.51.100.11")
    page = text(answer)
    assert answer.status_code == 422 and answer.mimetype == "text/html"
    errors = re.search(r'<span class="error" id="e-service-category">(.*?)</span>', page, re.S)
    assert errors and all(f"« {code} »" in html.unescape(errors.group(1)) for code in ticked)
    assert 'name="service-category" value="categorie-' not in page  # unknown codes are not offered back


def offered_categories(site: Site) -> list[str]:
    return re.findall(r'name="service-category" value="([^"]+)"', text(site.get("/candidature")))


def test_every_box_of_the_form_ticked_is_an_application(site: Site) -> None:
    every = offered_categories(site)
    assert len(every) > 50
    before = site.applications()
    answer = post_form(site, FORM | {"service-category": every}, address="198.51.100.13")
    assert answer.status_code == 303 and site.applications() == before + 1


@pytest.mark.parametrize("count", [100, 5_000])
def test_more_categories_than_the_form_has_boxes_are_refused_before_the_operation(site: Site, count: int) -> None:
    """A browser sends at most the boxes the page has. Twenty thousand forged categories were
    each answered by the operation, then matched to the field one by one against all the others
    (minutes of one thread for one anonymous request, and a page of megabytes); within the
    form's body limit, five thousand still fit."""
    assert count > len(offered_categories(site))
    before = site.applications()
    answer = post_form(site, FORM | {"service-category": [f"c{i}" for i in range(count)]}, address="198.51.100.14")
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    assert len(answer.get_data()) < 50_000 and "catégories" in text(answer)
    assert site.applications() == before


def test_the_log_of_form_submissions_holds_nothing_of_the_person(site: Site) -> None:
    person = {
        "referent-given": "Gwenaëlle",
        "referent-family": "Quéméner",
        "referent-email": "gwen.quemener@zebulon.bzh",
        "referent-phone": "06 12 34 56 78",
        "structure-email": "contact@zebulon.bzh",
        "structure-siret": "",
        "structure-finess": "290000017",
    }
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root, ours = logging.getLogger(), logging.getLogger("fhirsrv")
    levels = (root.level, ours.level)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    ours.setLevel(logging.DEBUG)
    try:
        sent = post_form(site, FORM | person, address="198.51.100.12")
        refused = post_form(site, FORM | person | {"referent-email": "gwen.quemener@"}, address="198.51.100.12")
        nul = post_form(site, FORM | person | {"referent-family": "Qué\x00méner"}, address="198.51.100.12")
        foreign = post_form(
            site, FORM | person, headers={"Sec-Fetch-Site": "cross-site"}, query="?x=gwen.quemener@zebulon.bzh"
        )
        searched = site.get("/?q=Qu%C3%A9m%C3%A9ner&commune=gwen.quemener%40zebulon.bzh")
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
    assert [a.status_code for a in (sent, refused, nul, foreign, searched)] == [303, 422, 400, 403, 200]
    log = buffer.getvalue()
    lines = [json.loads(line) for line in log.splitlines()]
    assert sum(line.get("logger") == "fhirsrv.request" for line in lines) >= 5  # the log is there
    for said in ("Gwenaëlle", "Quéméner", "Qu\\u00e9m\\u00e9ner", "gwen.quemener", "zebulon", "06 12 34 56 78", "@"):
        assert said not in log, said


# -------------------------------------------------------------------------------- headers

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


@pytest.mark.parametrize(
    "path", ["/", "/?q=Offre", "/offre/hs-xss", "/structure/org-xss", "/candidature", "/candidature/envoyee",
             "/offre/nothing", "/nothing-here", "/?page=forged"],
)  # fmt: skip
def test_every_page_carries_the_security_headers(site: Site, path: str) -> None:
    answer = site.get(path)
    assert answer.mimetype == "text/html"
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers.get(name) == value, name


def test_a_page_names_the_server_as_the_api_does_and_no_version(site: Site) -> None:
    with served(site.app, site.settings) as root:
        import urllib.request

        names = set()
        for path in ("/", "/offre/hs-xss", "/fhir/metadata"):
            with urllib.request.urlopen(root + path, timeout=60) as response:
                names.add(response.headers.get("Server"))
    assert names == {"fhirsrv"}


def test_the_language_cookie_is_same_site_and_out_of_scripts_reach(site: Site) -> None:
    cookie = site.get("/?lang=en").headers["Set-Cookie"]
    assert cookie.startswith("lang=en;") and "SameSite=Lax" in cookie and "HttpOnly" in cookie
    assert "Secure" not in cookie  # a site on plain http (a test, a local demo) would lose it
    over_https = site.get("/?lang=en", base_url="https://annuaire.example.org").headers["Set-Cookie"]
    assert "Secure" in over_https and "HttpOnly" in over_https
    public_https = site.app_with(base_url="https://annuaire.example.org/fhir").test_client().get("/?lang=fr")
    assert "Secure" in public_https.headers["Set-Cookie"]  # behind a proxy that ends TLS
    assert "Set-Cookie" not in site.get("/?lang=xx").headers  # only a language the site has is kept


def form_key(site: Site) -> str:
    """The one-time key of the application form as a visitor's page carries it."""
    found = re.search(r'<input type="hidden" name="envoi" value="([^"]+)">', text(site.get("/candidature")))
    assert found, "no key in the form"
    return found.group(1)


def test_each_load_of_the_form_carries_its_own_key(site: Site) -> None:
    assert form_key(site) != form_key(site)


def test_the_same_form_sent_twice_records_one_application(site: Site) -> None:
    """A double click, or the form sent again from the browser's history: the second sending
    answers as the first did (the page that says what happens next) and records nothing more."""
    key = form_key(site)
    before = site.applications()
    first = post_form(site, FORM | {"envoi": key}, address="198.51.100.30")
    again = post_form(site, FORM | {"envoi": key}, address="198.51.100.30")
    assert first.status_code == again.status_code == 303
    assert first.headers["Location"] == again.headers["Location"]
    assert site.applications() == before + 1
    # The same form, changed, is another application: it is sent.
    other = FORM | {"envoi": key, "structure-name": "Association Vivre Ensemble"}
    changed = post_form(site, other, address="198.51.100.30")
    assert changed.status_code == 303 and site.applications() == before + 2


def test_a_form_sent_twice_at_once_records_one_application(site: Site) -> None:
    key = form_key(site)
    before = site.applications()
    answers: list[TestResponse] = []
    start = threading.Barrier(2)

    def send() -> None:
        start.wait()
        values = FORM | {"envoi": key, "structure-name": "Association Double"}
        answers.append(post_form(site, values, address="198.51.100.31"))

    clicks = [threading.Thread(target=send) for _ in range(2)]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join(timeout=120)
    assert [a.status_code for a in answers] == [303, 303]
    assert site.applications() == before + 1


def test_a_refused_form_sent_again_corrected_is_sent(site: Site) -> None:
    key = form_key(site)
    before = site.applications()
    refused = post_form(site, FORM | {"envoi": key, "referent-email": "anne@"}, address="198.51.100.32")
    assert refused.status_code == 422 and f'name="envoi" value="{key}"' in text(refused)  # kept for the retry
    assert post_form(site, FORM | {"envoi": key}, address="198.51.100.32").status_code == 303
    assert site.applications() == before + 1


# ------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def live(site: Site) -> Iterator[str]:
    with served(site.app, site.settings) as root:
        yield root


@pytest.mark.parametrize("path", PAGES_WITH_MARKUP)
def test_in_a_browser_no_markup_of_a_name_runs_and_inline_scripts_are_refused(live: str, page: Any, path: str) -> None:
    """Chromium shows the names as text, in the page and in the map's popup (site.js builds its
    HTML), and the Content-Security-Policy would stop an inline script that got in anyway."""
    dialogs: list[str] = []
    refused: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(live + path)
    page.wait_for_selector('#map[data-ready="1"]')
    page.locator("#map .leaflet-marker-icon").first.click()
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for()
    assert CLOSE_SCRIPT in popup.inner_text() and BREAK_ATTRIBUTE in popup.inner_text()
    assert CLOSE_SCRIPT in page.locator("main").inner_text()
    assert page.locator("img[src='x'], main script:not(#map-data), #map script").count() == 0
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1'; document.body.append(s); }"
    )
    assert page.evaluate("() => window.ran") is None
    assert dialogs == [] and refused, refused


def raw_get(root: str, target: str) -> tuple[int, str]:
    """A GET with the request target exactly as given (no client normalises it first)."""
    import http.client

    connection = http.client.HTTPConnection(urllib.parse.urlsplit(root).netloc, timeout=60)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", errors="replace")
    finally:
        connection.close()


def off_site_links(page: str) -> list[str]:
    """Links of the page a browser would follow to another host: `//host`, and `/\\host`, which
    browsers read as `//host`."""
    links = [html.unescape(link) for link in re.findall(r'href="([^"]*)"', page)]
    return [link for link in links if re.match(r"\s*[/\\]{2}", link)]


@pytest.mark.parametrize(
    "target", ["//evil.example/", "//evil.example/x?a=1", "/\\evil.example/x", "/%5Cevil.example", "///evil.example"]
)
def test_no_link_of_a_page_leads_to_the_host_an_address_names(site: Site, live: str, target: str) -> None:
    """The language switch repeats the address asked for: an address starting `//evil.example`
    or `/\\evil.example` must not become a link to that host, whether the server in front
    collapses the slashes (waitress) or not (the test client, as other WSGI servers)."""
    status, page = raw_get(live, target)
    assert status in (200, 404)
    assert off_site_links(page) == []
    path = urllib.parse.unquote(target.split("?")[0])
    direct = site.app.test_client().get("/", environ_overrides={"PATH_INFO": path})
    assert direct.status_code in (200, 404) and off_site_links(text(direct)) == []


def test_links_that_repeat_the_address_keep_the_mount_point(site: Site) -> None:
    page = text(site.app.test_client().get("/offre/hs-xss", base_url="http://localhost/annuaire"))
    switch = re.search(r'<a href="([^"]*)" lang="en"', page)
    assert switch and html.unescape(switch.group(1)) == "/annuaire/offre/hs-xss?lang=en"


def test_a_fault_of_the_server_on_a_page_is_a_page_that_keeps_its_details_to_the_log(site: Site) -> None:
    app = site.app_with()

    def broken() -> str:
        raise ValueError("cannot show Maïwenn Kerhervé <maiwenn.kerherve@exemple.bzh>")

    app.add_url_rule("/page-broken-for-the-test", "broken_page", broken)
    answer = app.test_client().get("/page-broken-for-the-test")
    page = text(answer)
    assert answer.status_code == 500 and answer.mimetype == "text/html"
    assert "Traceback" not in page and "ValueError" not in page and "Kerhervé" not in page and "@" not in page
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/", "/offre/hs-xss", "/candidature", "/nothing-here"])
def test_a_page_tells_caches_its_language_follows_the_cookie(site: Site, path: str) -> None:
    """The language of a page without `lang` is the visitor's cookie's: a shared cache must not
    give one visitor's English page to the next one."""
    client = site.app.test_client()
    client.get("/?lang=en")
    answer = client.get(path)
    assert answer.headers["Content-Language"] == "en"
    assert "cookie" in answer.headers.get("Vary", "").lower()
