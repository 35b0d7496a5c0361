"""The application form at /candidature, through Flask's test client as a browser without
JavaScript would use it: the form, its sending through `Organization/$apply` (the stored
application and the confirmation e-mail are those the API gives for the same values), the
operation's refusals beside each field with nothing typed lost, and cross-site posts refused.

The expected messages are not written here: each is asked of the FHIR API for the same values,
so the test holds whatever the operation says. The server runs with authorization on, as
deployed; the stored entries are read back through the API as the region's administrator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from fhirsrv.app import create_app
from fhirsrv.auth.clients import add_client
from fhirsrv.interactions.load import load_initial_content
from fhirsrv.settings import Settings
from fhirsrv.web.i18n import catalogue
from fhirsrv.workflow import outbox
from fhirsrv.workflow.forms import DEFAULT_CATEGORY_PATH, DEFAULT_STRUCTURE_TYPE_PATH, load_codes
from fhirsrv.workflow.mail import Mailer
from tests.workflow import conftest as workflow_fixtures
from tests.workflow.conftest import SmtpRecorder

FHIR = "application/fhir+json"
BASE = "http://fhir.test/fhir"
# What a browser sends with a form of the page it shows (the test client's host is "localhost").
SAME_ORIGIN = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
APPLICANT = "198.51.100.20"
API_CLIENT = "198.51.100.99"

smtp_server = workflow_fixtures.smtp_server  # the real SMTP server on loopback of tests/workflow


# ------------------------------------------------------------------------------ the server


@dataclass
class Site:
    app: Flask
    web: FlaskClient
    smtp: SmtpRecorder
    admin: dict[str, str] = field(default_factory=dict)  # the region's administrator's headers

    def post_form(self, values: dict[str, Any], *, query: str = "", headers: dict[str, str] | None = None) -> TestResponse:
        return self.web.post(
            f"/candidature{query}",
            data=values,
            headers=SAME_ORIGIN if headers is None else headers,
            environ_base={"REMOTE_ADDR": APPLICANT},
        )

    def post_api(self, body: dict[str, Any], address: str = API_CLIENT) -> TestResponse:
        return self.web.post(
            "/fhir/Organization/$apply", json=body, headers={"Content-Type": FHIR}, environ_base={"REMOTE_ADDR": address}
        )

    def fhir(self, path: str) -> dict[str, Any]:
        answer = self.web.get(f"/fhir/{path}", headers=self.admin)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    def organizations(self) -> list[dict[str, Any]]:
        return [e["resource"] for e in self.fhir("Organization?_count=50").get("entry", [])]

    def application(self, org_id: str) -> dict[str, list[dict[str, Any]]]:
        """The stored entries of one application, by type, as the administrator reads them."""
        found: dict[str, list[dict[str, Any]]] = {"Organization": [self.fhir(f"Organization/{org_id}")]}
        for res_type, include in (
            ("Location", ""),
            ("HealthcareService", ""),
            ("PractitionerRole", "&_include=PractitionerRole:practitioner"),
        ):
            bundle = self.fhir(f"{res_type}?organization=Organization/{org_id}{include}")
            for entry in bundle.get("entry", []):
                resource = entry["resource"]
                found.setdefault(resource["resourceType"], []).append(resource)
        return found

    def deliver(self) -> dict[str, Any]:
        settings = self.app.extensions["fhirsrv"].settings
        return outbox.deliver_due(self.app.extensions["fhirsrv"].engine, Mailer.from_settings(settings), settings)


@pytest.fixture
def site(db_url: str, smtp_server: SmtpRecorder) -> Iterator[Site]:
    settings = Settings.from_env(
        database_url=db_url,
        load_demo=False,
        base_url=BASE,
        auth=True,
        rate_limit_anonymous=0,
        rate_limit_client=0,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_timeout=5,
        mail_sender="annuaire-sos@sos.example.org",
    )
    app = create_app(settings)
    services = app.extensions["fhirsrv"]
    load_initial_content(services, demo=False)  # the SOS CodeSystems the form offers
    web = app.test_client()
    with services.engine.begin() as conn:
        client, secret = add_client(conn, "test dsrc", "system/*.cruds", "regional-admin")
    token = web.post("/fhir/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret or ""))
    assert token.status_code == 200, token.get_json()
    yield Site(app, web, smtp_server, {"Authorization": f"Bearer {token.get_json()['access_token']}"})
    services.engine.dispose()


# ------------------------------------------------------------------------- what is typed

# A structure of Brest, as a person types it (spaces in the SIRET, CRLF from the text area).
VALUES: dict[str, Any] = {
    "structure-name": "Association Vivre Après",
    "structure-siret": "732 829 320 00074",
    "structure-finess": "",
    "structure-structureType": "association",
    "structure-addressLine": "12 rue de Siam",
    "structure-postalCode": "29200",
    "structure-city": "Brest",
    "structure-phone": "02 98 00 00 00",
    "structure-email": "contact@vivre-apres.fr",
    "referent-given": "Anne",
    "referent-family": "Le Goff",
    "referent-email": "anne.legoff@vivre-apres.fr",
    "referent-phone": "",
    "service-name": "Sophrologie",
    "service-category": ["bien-etre-image-de-soi", "sophrologie"],
    "service-description": "Séances collectives\r\nle mardi",
}


def api_body(values: dict[str, Any], commune: str | None = "29019") -> dict[str, Any]:
    """The Parameters an API client would send for these values (forms.py's format), written
    out by hand: the oracle the form's own body is compared with."""

    def parts(prefix: str, names: dict[str, str]) -> list[dict[str, Any]]:
        found = []
        for part, kind in names.items():
            typed = values.get(f"{prefix}-{part}", "")
            for text in typed if isinstance(typed, list) else [typed]:
                if text.strip():
                    found.append({"name": part, kind: text.strip().replace("\r\n", "\n")})
        return found

    text, code = "valueString", "valueCode"
    structure = parts(
        "structure",
        {"name": text, "siret": text, "finess": text, "structureType": code, "addressLine": text,
         "postalCode": text, "city": text, "phone": text, "email": text},
    )  # fmt: skip
    if commune:
        structure.append({"name": "commune", "valueString": commune})
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "structure", "part": structure},
            {"name": "referent", "part": parts("referent", {"given": text, "family": text, "email": text, "phone": text})},
            {"name": "service", "part": parts("service", {"name": text, "category": code, "description": text})},
        ],
    }


def api_message(site: Site, values: dict[str, Any], expression: str) -> str:
    """What the FHIR API says about the part at `expression` for these values."""
    answer = site.post_api(api_body(values))
    assert answer.status_code == 422, answer.get_json()
    said = [i["diagnostics"] for i in answer.get_json()["issue"] if expression in i.get("expression", [])]
    assert len(said) == 1, answer.get_json()
    return said[0]


def part_at(parameter: str, part: str) -> str:
    return f"Parameters.parameter.where(name='{parameter}').part.where(name='{part}')"


# ------------------------------------------------------------------------ reading the page

VOID = {"input", "br", "meta", "link", "img", "hr", "source", "area", "base", "col", "embed", "track", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)
    parent: Element | None = None

    def text(self) -> str:
        return " ".join(
            "".join(c if isinstance(c, str) else f" {c.text()} " for c in self.children).split()
        )

    def walk(self) -> Iterator[Element]:
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.walk()

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        return [e for e in self.walk() if e.tag == tag and all(e.attrs.get(k) == v for k, v in attrs.items())]

    def by_id(self, element_id: str) -> Element:
        found = [e for e in self.walk() if e.attrs.get("id") == element_id]
        assert len(found) == 1, f"{len(found)} elements with id {element_id}"
        return found[0]

    def ancestors(self) -> Iterator[Element]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.open = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v if v is not None else "" for k, v in attrs}, parent=self.open)
        self.open.children.append(element)
        if tag not in VOID:
            self.open = element

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.open
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.open = node.parent

    def handle_data(self, data: str) -> None:
        self.open.children.append(data)


def page(answer: TestResponse) -> Element:
    builder = _Builder()
    builder.feed(answer.get_data(as_text=True))
    return builder.root


def controls(doc: Element) -> list[Element]:
    """The form's inputs a person fills in (not its button)."""
    form = doc.find_all("form", method="post")[0]
    return [
        e for e in form.walk()
        if e.tag in ("select", "textarea") or (e.tag == "input" and e.attrs.get("type") not in ("hidden", "submit"))
    ]  # fmt: skip


def label_of(doc: Element, control: Element) -> str:
    labels = doc.find_all("label", **{"for": control.attrs["id"]})
    assert len(labels) == 1, f"{control.attrs.get('name')}: {len(labels)} labels"
    return labels[0].text()


def typed_value(doc: Element, name: str) -> Any:
    """What the page shows in the field `name`: its text, its chosen option, its ticked boxes."""
    found = [e for e in controls(doc) if e.attrs.get("name") == name]
    assert found, name
    first = found[0]
    if first.tag == "textarea":
        return "".join(c for c in first.children if isinstance(c, str)).lstrip("\n")
    if first.tag == "select":
        chosen = [o.attrs["value"] for o in first.find_all("option") if "selected" in o.attrs]
        return chosen[0] if chosen else ""
    if first.attrs.get("type") == "checkbox":
        return [e.attrs["value"] for e in found if "checked" in e.attrs]
    return first.attrs.get("value", "")


def error_beside(doc: Element, name: str) -> str:
    """The error said beside field `name`, checked to be tied to it (aria-invalid, aria-describedby)."""
    control = doc.by_id(f"f-{name}")
    assert control.attrs.get("aria-invalid") == "true", name
    error_id = f"e-{name}"
    assert error_id in control.attrs.get("aria-describedby", "").split(), name
    return doc.by_id(error_id).text()


def alert_links(doc: Element) -> dict[str, str]:
    """The box at the top: each link's target and text."""
    alerts = [e for e in doc.walk() if e.attrs.get("role") == "alert"]
    assert len(alerts) == 1
    return {a.attrs["href"]: a.text() for a in alerts[0].find_all("a")}


def active_codes(path: Any) -> set[str]:
    return set(load_codes(path))


# ------------------------------------------------------------------------------------ tests


def test_the_form_has_a_label_for_every_input(site: Site) -> None:
    answer = site.web.get("/candidature")
    assert answer.status_code == 200
    assert answer.headers["Content-Language"] == "fr"
    assert "form-action 'self'" in answer.headers["Content-Security-Policy"]
    doc = page(answer)
    assert not [e for e in doc.walk() if e.attrs.get("role") == "alert"]  # no error on an empty form
    form = doc.find_all("form", method="post")[0]
    assert form.attrs["action"] == "/candidature"
    fields = controls(doc)
    labels = {e.attrs["name"] + ("" if e.attrs.get("type") != "checkbox" else "=" + e.attrs["value"]): label_of(doc, e) for e in fields}
    # Every field of the operation's form is there, each with its label (checkboxes: one per code).
    named = {e.attrs["name"] for e in fields}
    assert named == {k for k in VALUES}
    # Required fields: marked for the browser and said in words in their label.
    required = {e.attrs["name"] for e in fields if "required" in e.attrs}
    assert required == {
        "structure-name", "structure-structureType", "structure-postalCode", "structure-city",
        "referent-given", "referent-family", "referent-email", "service-name",
    }  # fmt: skip
    for name in required:
        assert labels[name].endswith("(obligatoire)"), labels[name]
    assert not any(labels[n].endswith("(obligatoire)") for n in named - required - {"service-category"})
    # At least one of a pair, and at least one category: said in the legend of their group.
    legends = [e.text() for e in form.find_all("legend")]
    assert any("au moins l'un des deux" in legend and "Identifiant" in legend for legend in legends)
    assert any("au moins l'un des deux" in legend and "Contact" in legend for legend in legends)
    assert "Soins proposés (obligatoire, au moins un)" in legends
    autocomplete = {e.attrs["name"]: e.attrs.get("autocomplete") for e in fields if e.attrs.get("type") != "checkbox"}
    assert autocomplete["structure-email"] == autocomplete["referent-email"] == "email"
    assert autocomplete["structure-phone"] == autocomplete["referent-phone"] == "tel"
    assert autocomplete["referent-given"] == "given-name" and autocomplete["referent-family"] == "family-name"
    assert autocomplete["structure-postalCode"] == "postal-code"
    types = {e.attrs["name"]: e.attrs.get("type") for e in fields if e.tag == "input"}
    assert types["structure-email"] == types["referent-email"] == "email"
    assert types["structure-phone"] == types["referent-phone"] == "tel"
    # The lists are the CodeSystems' active codes: individual practitioners are not offered.
    select = doc.by_id("f-structure-structureType")
    offered = {o.attrs["value"] for o in select.find_all("option")} - {""}
    assert offered == active_codes(DEFAULT_STRUCTURE_TYPE_PATH) and "professionnel-liberal" not in offered
    boxes = [e for e in fields if e.attrs.get("type") == "checkbox"]
    assert {b.attrs["value"] for b in boxes} == active_codes(DEFAULT_CATEGORY_PATH)
    # Each top-level category is a group of its own, named in its legend, holding its services.
    pain = doc.by_id("f-service-category-douleur")
    group = next(a for a in pain.ancestors() if a.tag == "fieldset")
    assert group.find_all("legend")[0].text() == "Prise en charge de la douleur"
    assert "douleur-equipe-mobile" in {i.attrs["value"] for i in group.find_all("input")}
    assert labels["service-category=douleur-equipe-mobile"] == "Équipe mobile douleur"


def test_the_form_in_english(site: Site) -> None:
    answer = site.web.get("/candidature?lang=en")
    assert answer.status_code == 200 and answer.headers["Content-Language"] == "en"
    doc = page(answer)
    assert doc.find_all("html")[0].attrs["lang"] == "en"
    assert doc.find_all("h1")[0].text() == "Apply to list a structure"
    assert doc.find_all("form", method="post")[0].attrs["action"] == "/candidature?lang=en"  # the answer stays English
    fields = {e.attrs["id"]: label_of(doc, e) for e in controls(doc)}
    assert fields["f-structure-postalCode"] == "Postcode (required)"
    assert fields["f-referent-email"] == "E-mail address of the contact person (required)"
    assert fields["f-service-category-douleur-equipe-mobile"] == "Pain mobile team"
    structure_types = {o.text() for o in doc.by_id("f-structure-structureType").find_all("option")}
    assert "Association" in structure_types


def test_both_catalogues_hold_the_same_texts() -> None:
    assert set(catalogue("fr")) == set(catalogue("en"))


def test_a_valid_application_is_the_one_the_api_makes(site: Site) -> None:
    sent = site.post_form(VALUES)
    assert sent.status_code == 303, sent.get_data(as_text=True)
    assert sent.headers["Location"] == "/candidature/envoyee"
    thanks = site.web.get(sent.headers["Location"])
    assert thanks.status_code == 200
    assert "dans les 7 jours pour confirmer la demande" in page(thanks).text()
    stored = site.organizations()
    assert len(stored) == 1
    from_form = site.application(stored[0]["id"])
    # The confirmation e-mail to the referent, with the operation's own link: it confirms.
    assert site.deliver()["sent"] == 1
    mail = site.smtp.received[-1]
    assert mail.envelope_to == ["anne.legoff@vivre-apres.fr"]
    assert "Association Vivre Après" in mail.subject
    link = re.search(r"http://fhir\.test/fhir/Organization/([\w-]+)/\$confirm\?token=[\w-]+", mail.body)
    assert link is not None and link.group(1) == stored[0]["id"], mail.body
    assert site.web.get(link.group(0).replace("http://fhir.test", "")).status_code == 200
    # The same values sent to the FHIR API make the same entries, to the last element.
    answer = site.post_api(api_body(VALUES))
    assert answer.status_code == 201, answer.get_json()
    from_api = site.application(answer.get_json()["id"])
    assert same_application(from_form, from_api)
    assert from_form["Location"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "29019"  # Brest
    assert from_form["HealthcareService"][0]["comment"] == "Séances collectives\nle mardi"


def same_application(a: dict[str, list[dict[str, Any]]], b: dict[str, list[dict[str, Any]]]) -> bool:
    """Equal but for ids, versions, times and the confirmation the first one had."""

    def shape(found: dict[str, list[dict[str, Any]]]) -> str:
        text = json.dumps(found, sort_keys=True, ensure_ascii=False)
        for resources in found.values():
            for resource in resources:
                text = text.replace(resource["id"], resource["resourceType"])
        text = re.sub(r'"(lastUpdated|valueDateTime)": "[^"]*"', r'"\1": "…"', text)
        text = re.sub(r'"versionId": "\d+"', '"versionId": "…"', text)
        return re.sub(r', \{"url": "applicationConfirmed"[^}]*\}', "", text)

    assert shape(a) == shape(b)
    return True


def test_an_invalid_siret_is_shown_beside_its_field(site: Site) -> None:
    values = {**VALUES, "structure-siret": "732 829 320 00075"}  # the last digit mistyped
    said = api_message(site, values, part_at("structure", "siret"))
    answer = site.post_form(values)
    assert answer.status_code == 422
    doc = page(answer)
    assert doc.find_all("title")[0].text().startswith("Erreur : ")
    assert error_beside(doc, "structure-siret") == said
    assert alert_links(doc) == {"#f-structure-siret": f"Numéro SIRET : {said}"}
    # Only that field is marked; nothing typed is lost, to the ticked boxes and the line breaks.
    assert [e.attrs["name"] for e in controls(doc) if e.attrs.get("aria-invalid")] == ["structure-siret"]
    for name in VALUES:
        assert typed_value(doc, name) == values[name], name
    assert answer.headers["Cache-Control"] == "no-store"
    assert site.organizations() == [] and site.deliver()["sent"] == 0  # nothing stored, no e-mail


def test_a_missing_referent_email_is_shown_beside_its_field_in_english(site: Site) -> None:
    values = {**VALUES, "referent-email": "   "}
    said = api_message(site, values, part_at("referent", "email"))
    answer = site.post_form(values, query="?lang=en")
    assert answer.status_code == 422
    doc = page(answer)
    assert doc.find_all("title")[0].text().startswith("Error: ")
    assert error_beside(doc, "referent-email") == said
    assert doc.by_id("e-referent-email").find_all("span", lang="fr")  # the operation's words are French
    assert alert_links(doc) == {"#f-referent-email": f"E-mail address of the contact person: {said}"}
    assert doc.find_all("form", method="post")[0].attrs["action"] == "/candidature?lang=en"
    for name in VALUES:
        assert typed_value(doc, name) == values[name], name
    assert site.organizations() == []


def test_an_identifier_and_a_contact_are_asked_of_their_pair_of_fields(site: Site) -> None:
    """The operation's "at least one of" rules point at the whole structure: the form shows
    each on its pair of fields, both marked."""
    values = {**VALUES, "structure-siret": "", "structure-phone": "", "structure-email": ""}
    answer = site.post_form(values)
    assert answer.status_code == 422
    doc = page(answer)
    issues = site.post_api(api_body(values)).get_json()["issue"]
    rules = [i["diagnostics"] for i in issues if i["expression"] == ["Parameters.parameter.where(name='structure')"]]
    assert len(rules) == 2
    assert doc.by_id("e-structure-identifiers").text() == rules[0]
    assert doc.by_id("e-structure-contact").text() == rules[1]
    for name, group in (("structure-siret", "identifiers"), ("structure-finess", "identifiers"),
                        ("structure-phone", "contact"), ("structure-email", "contact")):  # fmt: skip
        control = doc.by_id(f"f-{name}")
        assert control.attrs.get("aria-invalid") == "true"
        assert f"e-structure-{group}" in control.attrs["aria-describedby"].split()
    assert set(alert_links(doc)) == {"#f-structure-siret", "#f-structure-phone"}


def test_what_the_api_refuses_before_the_operation_is_shown_beside_its_field(site: Site) -> None:
    """The API's own JSON checks run first (a NUL character is refused on every back-end), and
    name the element by position: the form still places the message beside its field."""
    values = {**VALUES, "referent-given": "An\x00ne"}
    api = site.post_api(api_body(values))
    assert api.status_code == 400
    said = api.get_json()["issue"][0]["diagnostics"]
    answer = site.post_form(values)
    assert answer.status_code == 400
    doc = page(answer)
    assert error_beside(doc, "referent-given") == said
    assert set(alert_links(doc)) == {"#f-referent-given"}
    assert site.organizations() == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "https://elsewhere.example", "Sec-Fetch-Site": "cross-site"}, id="cross-site"),
        pytest.param({"Origin": "http://sub.localhost", "Sec-Fetch-Site": "same-site"}, id="same-site"),
        pytest.param({"Origin": "https://elsewhere.example"}, id="foreign origin, older browser"),
        pytest.param({"Origin": "null"}, id="opaque origin"),
    ],
)
def test_a_post_from_another_site_is_refused(site: Site, headers: dict[str, str]) -> None:
    answer = site.post_form(VALUES, headers=headers)
    assert answer.status_code == 403
    assert "ne peut être envoyé que depuis le site de l'annuaire" in page(answer).text()
    assert "Association Vivre Après" not in answer.get_data(as_text=True)
    assert site.organizations() == [] and site.deliver()["sent"] == 0


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "http://fhir.test"}, id="the public base's host, older browser"),
        pytest.param({}, id="not a browser"),
    ],
)
def test_a_post_from_the_site_itself_is_accepted(site: Site, headers: dict[str, str]) -> None:
    assert site.post_form(VALUES, headers=headers).status_code == 303
    assert len(site.organizations()) == 1


def test_too_many_applications_keep_what_was_typed(site: Site) -> None:
    """The operation's hourly limit per address: a 429 with its Retry-After, the form kept."""
    for _ in range(5):
        assert site.post_form(VALUES).status_code == 303
    answer = site.post_form(VALUES)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "3600"
    doc = page(answer)
    alert = next(e for e in doc.walk() if e.attrs.get("role") == "alert")
    assert "Trop de demandes" in alert.text()
    for name in VALUES:
        assert typed_value(doc, name) == VALUES[name], name
    assert len(site.organizations()) == 5
