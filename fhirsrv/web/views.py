"""The public directory's pages: search, offer, structure, the application form of a structure,
and the small JSON the map and the town field use.

Each page reads the directory through `PublicReader` (reading.py), the anonymous FHIR
interactions, and nothing else; the application form sends through it too (`Organization/$apply`).
Pages are rendered on the server and work without JavaScript; the script only adds the map and
the town suggestions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import orjson
from flask import (
    Response,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from fhirsrv.api import caller
from fhirsrv.api.routes import base_url
from fhirsrv.errors import BadRequest, FhirError
from fhirsrv.interactions.context import UNMETERED, Services
from fhirsrv.web.application import SECTIONS, ApplicationForm, first_field, label_of
from fhirsrv.web.assets import SiteBlueprint, asset_url
from fhirsrv.web.filters import DISTANCES_KM, PAGE_SIZE, SearchForm, fhir_search, read_form
from fhirsrv.web.i18n import LANGUAGES, Texts, choose_language
from fhirsrv.web.labels import AXES, CATEGORY, NAMES, STRUCTURE_TYPE, Vocabulary, VocabularyCache, system_url
from fhirsrv.web.places import DEPARTEMENT_NAMES, Commune, Communes
from fhirsrv.web.reading import PublicReader
from fhirsrv.web.results import Offer, Shaper
from fhirsrv.web.sending import SentForms, new_key
from fhirsrv.web.versions import ParsedVersions
from fhirsrv.workflow.operations import CONFIRMATION_DAYS

web = SiteBlueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/assets")
web.add_app_template_global(asset_url)

# The application form's largest body: its sixteen fields, every category ticked and a long
# description, percent-encoded, fit many times over (the API's own limit is FHIRSRV_MAX_BODY_BYTES).
FORM_MAX_BYTES = 256 * 1024
LANG_COOKIE = "lang"
LANG_COOKIE_SECONDS = 365 * 24 * 3600


@dataclass
class Site:
    """What the pages share for the life of the app."""

    services: Services
    communes: Communes
    vocabulary: VocabularyCache
    versions: ParsedVersions
    sent: SentForms


def install(app: Any, services: Services) -> None:
    settings = services.settings
    communes = Communes(settings.seed_dir / "data")

    def fetch_codesystems() -> list[dict[str, Any]]:
        reader = _reader(services, caller_meter=False)
        urls = ",".join(system_url(settings.canonical_base, name) for name in NAMES)
        bundle = reader.search("CodeSystem", [("url", urls), ("_count", str(len(NAMES) * 2))])
        return [e["resource"] for e in bundle.get("entry") or [] if e.get("search", {}).get("mode") == "match"]

    app.extensions["fhirsrv.web"] = Site(
        services, communes, VocabularyCache(fetch_codesystems), ParsedVersions(), SentForms()
    )
    app.register_blueprint(web)
    app.after_request(_refusal_as_page)


def _site() -> Site:
    return current_app.extensions["fhirsrv.web"]


def _reader(services: Services, caller_meter: bool = True) -> PublicReader:
    # The filter lists are the server's own housekeeping, not the visitor's: not charged to them.
    meter = caller.meter() if caller_meter else UNMETERED
    return PublicReader(services, base_url(), request.remote_addr, meter, _site().versions)


def _texts() -> Texts:
    return Texts(choose_language(request.args.get("lang"), request.cookies.get(LANG_COOKIE)))


def _page(template: str, status: int = 200, **context: Any) -> Response:
    texts = context.get("t") or _texts()
    settings = _site().services.settings
    body = render_template(
        template,
        t=texts,
        lang=texts.language,
        switch_url=_with_args(lang=texts("site.switch_lang")),
        fhir_base=base_url(),
        root=request.script_root,
        tile_url=settings.web_tile_url,
        tile_attribution=settings.web_tile_attribution,
        **{k: v for k, v in context.items() if k != "t"},
    )
    response = make_response(body, status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    response.headers["Content-Language"] = texts.language
    response.vary.add("Cookie")  # the language, when the address does not say it
    response.headers["Content-Security-Policy"] = _policy(settings.web_tile_url)
    if request.args.get("lang") == texts.language:
        # Read by the server only (no script needs it), sent over https only when the site is.
        response.set_cookie(
            LANG_COOKIE, texts.language, max_age=LANG_COOKIE_SECONDS, samesite="Lax", httponly=True,
            secure=request.is_secure or settings.base_url.lower().startswith("https://"),
        )  # fmt: skip
    return response


def _policy(tile_url: str) -> str:
    """Scripts, styles and data from this server only; images from it and the tile server."""
    tiles = ""
    if tile_url.startswith(("https://", "http://")):
        scheme, _, rest = tile_url.partition("://")
        host = rest.split("/", 1)[0].replace("{s}", "*")
        tiles = f" {scheme}://{host}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data:{tiles}; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def _with_args(**changes: str) -> str:
    """The address asked for, with some arguments changed: a link of this site whatever the
    address holds. Its backslashes are encoded and its leading slashes collapsed (Werkzeug
    collapses them too), so that an address asked as `/\\evil.example` (which browsers read as
    `//evil.example`) or `//evil.example` never becomes a link to that host."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k not in changes]
    args += [(k, v) for k, v in changes.items() if v]
    path = request.script_root + "/" + quote(request.path, safe="/").lstrip("/")
    return f"{path}?{urlencode(args)}" if args else path


# ------------------------------------------------------------------------------- refusals

# The paths that are not the site's: the FHIR API (its token endpoint and SMART files included),
# the token endpoint's alias, the probes and the metrics. Every other path is the site's.
NOT_THE_SITE = ("/fhir", "/oauth", "/metrics", "/healthz", "/readyz")
# What a page sets itself; every other header of the refusal it replaces is kept (Allow,
# Retry-After, and the security headers added on the way out).
_PAGE_HEADERS = frozenset({"content-type", "content-length", "content-language", "content-security-policy"})
# The statuses whose API message tells the visitor what to correct in the address.
_DETAILED = frozenset({400, 422})


def on_the_site(path: str) -> bool:
    return not any(path == prefix or path.startswith(prefix + "/") for prefix in NOT_THE_SITE)


def _refusal_as_page(response: Response) -> Response:
    """Any refusal on the site's paths as a page, in the visitor's language, with its status
    and its Allow or Retry-After: whatever refused the request (the URL guards of app.py, the
    router's 404 and 405, the body limit's 413, the rate limit's 429, a FhirError of the
    interactions, a database fault's 503, a bug's 500), it was written as the API's
    OperationOutcome, which a visitor's browser would show as raw JSON."""
    if response.status_code < 400 or response.mimetype != "application/fhir+json":
        return response
    if not on_the_site(request.path):
        return response
    texts = _texts()
    status = response.status_code
    if status == 404:
        page = _page("not_found.html", status=404, t=texts)
    else:
        message, detail = _refusal_text(texts, response), _detail(response)
        page = _page("error.html", status=status, t=texts, message=message, detail=detail)
    for name, value in response.headers.items():
        if name.lower() not in _PAGE_HEADERS:
            page.headers.add(name, value)
    return page


def _refusal_text(texts: Texts, response: Response) -> str:
    status = response.status_code
    if status == 429:
        return texts("error.429", seconds=response.headers.get("Retry-After", "60"))
    try:
        return texts(f"error.{status}")
    except KeyError:
        return texts("error.other")


def _detail(response: Response) -> str | None:
    if response.status_code not in _DETAILED:
        return None
    try:
        issues = orjson.loads(response.get_data()).get("issue") or []
    except (orjson.JSONDecodeError, AttributeError):
        return None
    said = [i["diagnostics"] for i in issues if isinstance(i, dict) and isinstance(i.get("diagnostics"), str)]
    return " ".join(said) or None


# ------------------------------------------------------------------------------- search


@web.get("/")
def search_page() -> Response:
    site = _site()
    texts = _texts()
    vocabulary = site.vocabulary.get()
    form = read_form(request.args.to_dict(flat=True), vocabulary)
    commune, choices = _commune_of(form, site.communes, texts)
    point = (commune.lat, commune.lon) if commune else None if form.text("commune") else form.position
    params = fhir_search(form, point, site.services.settings.canonical_base)
    reader = _reader(site.services)
    try:
        bundle = reader.search("HealthcareService", params)
    except BadRequest:
        if not form.text("page"):
            raise
        # A paging link this server cannot read (copied wrong, or issued for another search):
        # the first page of the same search, said so, rather than a dead end.
        form.values.update(page="", debut=0)
        form.errors["page"] = texts("search.bad_page")
        params = fhir_search(form, point, site.services.settings.canonical_base)
        bundle = reader.search("HealthcareService", params)
    offers = Shaper(vocabulary, texts).search_results(bundle)
    total = bundle.get("total", len(offers))
    return _page(
        "search.html",
        t=texts,
        form=form,
        options=_options(vocabulary, form, site.communes, texts.language),
        axis_labels=[(name, texts(key)) for name, key in AXIS_LABELS.items()],
        with_field=WITH_FIELD,
        distances=DISTANCES_KM,
        commune=commune,
        near_me=point is not None and commune is None,
        commune_choices=[(c.label, _with_args(commune=c.label, page="", debut="")) for c in choices],
        offers=offers,
        total=total,
        first=form.start + 1 if offers else 0,
        last=form.start + len(offers),
        next_url=_next_url(bundle, form),
        first_url=_with_args(page="", debut="") if form.text("page") else None,
        fhir_url=_fhir_url("HealthcareService", params),
        markers=_markers(offers, texts),
    )


def _commune_of(form: SearchForm, communes: Communes, texts: Texts) -> tuple[Commune | None, list[Commune]]:
    typed = form.text("commune")
    for name in ("lat", "lon"):  # the position has no field of its own: said at the town's
        if form.errors.pop(name, None):
            form.errors["commune"] = texts("search.bad_position")
    if not typed:
        if form.text("tri") == "distance" and form.position is None:
            form.errors["commune"] = texts("search.distance_needs_commune")
        return None, []
    found = communes.resolve(typed)
    if len(found) == 1:
        return found[0], []
    if not found:
        form.errors["commune"] = texts("search.unknown_commune", name=typed)
    return None, found


def _options(vocabulary: Vocabulary, form: SearchForm, communes: Communes, language: str) -> dict[str, list[tuple[str, str]]]:
    """The choices of each list: the CodeSystems' concepts in the page's language; the services
    of the chosen category only, once one is chosen."""
    categories = vocabulary.concepts(CATEGORY)
    chosen = next((c for c in categories if c.code == form.text("categorie")), None)
    services = chosen.children if chosen else tuple(s for c in categories for s in c.children)
    options = {
        "categorie": [(c.code, c.label(language)) for c in categories],
        "service": [(s.code, s.label(language)) for s in services],
        "departement": [
            (code, f"{code} — {DEPARTEMENT_NAMES[code]}" if code in DEPARTEMENT_NAMES else code)
            for code in communes.regional_departements
        ],
    }
    for name, (_, system) in AXES.items():
        options[name] = [(c.code, c.label(language)) for c in vocabulary.concepts(system)]
    return options


# The criteria the form has a field for (`f-{name}`), which an error links to; the others (the
# sort, the paging link) are said without a link.
WITH_FIELD = frozenset({"categorie", "service", "departement", "commune", "distance", "q", *AXES})
AXIS_LABELS = {
    "public": "search.audience",
    "age": "search.age",
    "lieu": "search.place",
    "phase": "search.phase",
    "acces": "search.access",
    "parcours": "search.pathway",
}


def _next_url(bundle: dict[str, Any], form: SearchForm) -> str | None:
    for link in bundle.get("link") or []:
        if link.get("relation") == "next":
            cursor = parse_qs(urlsplit(link["url"]).query).get("_cursor", [""])[0]
            return _with_args(page=cursor, debut=str(form.start + PAGE_SIZE))
    return None


def _fhir_url(res_type: str, params: list[tuple[str, str]]) -> str:
    return f"{base_url()}/{res_type}?{urlencode(params)}"


def _markers(offers: list[Offer], texts: Texts) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for number, offer in enumerate(offers, start=1):
        for place in offer.places:
            if place.lat is None or place.lon is None:
                continue
            marker = seen.setdefault(
                place.id,
                {"lat": place.lat, "lon": place.lon, "title": place.name, "address": place.lines, "offers": []},
            )
            marker["offers"].append(
                {"n": number, "name": offer.name, "url": f"{request.script_root}/offre/{offer.id}"}
            )
    return list(seen.values())


# ------------------------------------------------------------------------ offer, structure


def _not_found(texts: Texts) -> Response:
    """An id the public never could read (a draft, a rejected application, a typo): 404. A
    delisted or deleted entry is not one of them: it keeps its page (LastKnown)."""
    return _page("not_found.html", status=404, t=texts)


@web.get("/offre/<offer_id>")
def offer_page(offer_id: str) -> Response:
    site, texts, reader = _site(), _texts(), _reader(_site().services)
    known = reader.last_known("HealthcareService", offer_id)
    if known is None:
        return _not_found(texts)
    hs = known.resource
    included: dict[str, dict[str, Any]] = {}
    for ref in [hs.get("providedBy") or {}, *(hs.get("location") or []), *(hs.get("endpoint") or [])]:
        target = ref.get("reference", "")
        res_type, _, res_id = target.partition("/")
        if res_id and target not in included:
            found = reader.last_known(res_type, res_id, ask_listed=False)
            if found is not None:
                included[target] = found.resource
    offer = Shaper(site.vocabulary.get(), texts).offer(hs, included, listed=known.listed)
    return _page(
        "offer.html",
        t=texts,
        offer=offer,
        fhir_url=f"{base_url()}/HealthcareService/{offer_id}",
        markers=_markers([offer], texts),
    )


@web.get("/structure/<structure_id>")
def structure_page(structure_id: str) -> Response:
    site, texts, reader = _site(), _texts(), _reader(_site().services)
    known = reader.last_known("Organization", structure_id)
    if known is None:
        return _not_found(texts)
    shaper = Shaper(site.vocabulary.get(), texts)
    structure = shaper.structure(known.resource, listed=known.listed)
    bundle = reader.search(
        "HealthcareService",
        [
            ("organization", f"Organization/{structure_id}"),
            ("_sort", "name"),
            ("_count", "100"),
            ("_include", "HealthcareService:organization"),
            ("_include", "HealthcareService:location"),
            ("_include", "HealthcareService:endpoint"),
        ],
    )
    offers = shaper.search_results(bundle)
    places = reader.search("Location", [("organization", f"Organization/{structure_id}"), ("_count", "100")])
    shown_places = [
        shaper.place(e["resource"]) for e in places.get("entry") or [] if e.get("search", {}).get("mode") == "match"
    ]
    return _page(
        "structure.html",
        t=texts,
        structure=structure,
        offers=offers,
        places=shown_places,
        fhir_url=f"{base_url()}/Organization/{structure_id}",
        markers=_markers(offers, texts),
    )


# --------------------------------------------------------------------------- small JSON


@web.get("/communes")
def commune_suggestions() -> Response:
    """The town field's suggestions: shipped reference data, no directory content."""
    typed = request.args.get("q", "")[:80]
    found = _site().communes.suggest(typed)
    response = jsonify([{"label": c.label, "insee": c.insee, "departement": c.departement} for c in found])
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@web.get("/departements.geojson")
def departement_outlines() -> Response:
    response = jsonify(_site().communes.outlines())
    response.headers["Content-Type"] = "application/geo+json"
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


# ------------------------------------------------------------------------ application form


@web.route("/candidature", methods=["GET", "POST"])
def apply_page() -> Response:
    """The application form of a structure (GET), and its sending (POST).

    The POST runs `Organization/$apply`, the very operation of the FHIR API, as the anonymous
    caller it is (reading.py), with the visitor's address and rate-limit meter: the same checks,
    the same per-address limit, the same confirmation e-mail. What the operation refuses comes
    back beside each field (application.py), with every value typed kept in the form, and the
    operation's status (422; a 429 stays a 429 with its Retry-After). A success redirects (303)
    to `apply_sent`, so that reloading the page never sends the application twice; the same form
    sent twice (a double click, the browser's history) is recorded once (sending.py).

    Cross-site posting: the form is anonymous and creates nothing a visitor could not create
    with the public API, yet another site must not be able to send it in a visitor's name (from
    the visitor's address, spending its hourly allowance). A browser says where a POST comes
    from: `Sec-Fetch-Site` (anything but `same-origin`, or `none` for what the visitor did
    themselves, is refused) or, in a browser too old to send that, `Origin` (refused unless its
    host is this request's host or that of FHIRSRV_BASE_URL). A request with neither is not a
    browser's cross-site form, which always carries one of them, and is let through. The
    refusal is a 403 page and the operation is never run. No session and no token are needed.
    """
    site = _site()
    texts = _texts()
    if request.method != "POST":
        return _apply_form(texts, ApplicationForm(key=new_key()))
    if _cross_site():
        return _page("error.html", status=403, t=texts, message=texts("apply.cross_site"))
    # The form is a few kilobytes: a larger body is refused (413) before it is parsed.
    request.max_content_length = min(FORM_MAX_BYTES, site.services.settings.max_body_bytes)
    form = ApplicationForm.read(request.form)
    offered = sum(1 + len(c.children) for c in site.vocabulary.get().concepts(CATEGORY))
    if len(form.categories) > offered:
        # More than the page's boxes: not a form a browser filled. Each would come back as an
        # issue of the operation, to be placed and shown: refused before it runs.
        return _page("error.html", status=400, t=texts, message=texts("apply.too_many_categories", n=offered))
    body = form.body(commune=_commune_code(form, site.communes))
    try:
        # The same form sent twice (a double click) records one application (sending.py).
        reader = _reader(site.services)
        site.sent.send_once(form.key, body, lambda: reader.operation("apply", "Organization", body))
    except FhirError as refusal:
        if refusal.status == 429:
            form.general.append(texts("apply.too_many"))
        else:
            form.refused(refusal.issues)
        response = _apply_form(texts, form, status=refusal.status)
        for name, value in (refusal.headers or {}).items():
            if name.lower() == "retry-after":
                response.headers[name] = value
        return response
    asked = request.args.get("lang")
    return redirect(url_for("web.apply_sent", **({"lang": asked} if asked in LANGUAGES else {})), code=303)


@web.get("/candidature/envoyee")
def apply_sent() -> Response:
    """What happens next, once the application is recorded (no data of the application: the
    page is the same for everyone)."""
    return _page("apply_sent.html", t=_texts(), days=CONFIRMATION_DAYS)


def _apply_form(texts: Texts, form: ApplicationForm, status: int = 200) -> Response:
    vocabulary = _site().vocabulary.get()
    categories = vocabulary.concepts(CATEGORY)
    response = _page(
        "apply.html",
        status,
        t=texts,
        form=form,
        sections=SECTIONS,
        label_of=label_of,
        problems=form.problems(),
        first_category=categories[0].code if categories else None,
        first_field=first_field,
        structure_types=[(c.code, c.label(texts.language)) for c in vocabulary.concepts(STRUCTURE_TYPE)],
        categories=categories,
        action=_with_args(),
    )
    if request.method == "POST":
        response.headers["Cache-Control"] = "no-store"  # the page holds what the visitor typed
    return response


def _commune_code(form: ApplicationForm, communes: Communes) -> str | None:
    """The INSEE code of the town typed with its postcode, when the shipped communes know exactly
    one: a DAC's territory may be made of communes, and the operation places the structure by it."""
    postal_code = form.value("structure-postalCode").strip()
    city = form.value("structure-city").strip()
    if not (postal_code and city):
        return None
    found = [c for c in communes.resolve(f"{city} ({postal_code})") if c.postal_code == postal_code]
    return found[0].insee if len(found) == 1 else None


def _cross_site() -> bool:
    """Whether the browser says this POST comes from another site (see `apply_page`)."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    own = {request.host.lower()}
    configured = _site().services.settings.base_url
    if configured:
        own.add(urlsplit(configured).netloc.lower())
    return urlsplit(origin).netloc.lower() not in own  # "null" (a sandboxed page) has no host
