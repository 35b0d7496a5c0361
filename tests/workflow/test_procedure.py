"""The whole inclusion procedure through the HTTP API, with real OAuth tokens for each role
and a real SMTP server on loopback: apply → confirm link → submit (incomplete, then complete)
→ territorial validation (wrong département, wrong kind, right one) → publish → yearly sweep
with a frozen clock (reminder at 12 months, second at 13, delisting at 14; attest resets) →
a delisted entry still readable by id, gone from search. Each refusal changes nothing."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhirsrv.app import create_app
from fhirsrv.auth.clients import add_client
from fhirsrv.settings import Settings
from fhirsrv.storage.jsonfmt import utcnow
from fhirsrv.workflow import outbox, runner
from fhirsrv.workflow.mail import Mailer
from fhirsrv.workflow.sweep import sweep
from tests.workflow.conftest import SmtpRecorder
from tests.workflow.test_forms import CRITERION_ANSWERS, complete_body

FHIR = "application/fhir+json"
BASE = "http://fhir.test/fhir"


@pytest.fixture
def procedure_app(db_url: str, smtp_server: SmtpRecorder) -> Iterator[Flask]:
    settings = Settings.from_env(
        database_url=db_url,
        load_demo=False,
        base_url=BASE,
        auth=True,
        rate_limit_anonymous=0,
        rate_limit_client=0,
        enforce_sos_profiles="claimed-only",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_timeout=5,
        mail_sender="annuaire-sos@sos.example.org",
    )
    app = create_app(settings)
    yield app
    app.extensions["fhirsrv"].engine.dispose()


class Actors:
    """Clients of each role, with their tokens, registered in the app's database."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.web: FlaskClient = app.test_client()
        self.services = app.extensions["fhirsrv"]

    def token_headers(self, client_id: str, secret: str) -> dict[str, str]:
        answer = self.web.post("/fhir/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
        assert answer.status_code == 200, answer.get_json()
        return {"Authorization": f"Bearer {answer.get_json()['access_token']}", "Content-Type": FHIR}

    def register(self, role: str, scopes: str = "system/*.cruds", **kw: Any) -> dict[str, str]:
        with self.services.engine.begin() as conn:
            client, secret = add_client(conn, f"test {role}", scopes, role, **kw)
        return self.token_headers(client.client_id, secret or "")

    def deliver(self, now: datetime | None = None) -> dict[str, Any]:
        settings = self.services.settings
        return outbox.deliver_due(self.services.engine, Mailer.from_settings(settings), settings, now=now)


@pytest.fixture
def actors(procedure_app: Flask) -> Actors:
    return Actors(procedure_app)


def _application(postal_code: str = "29200", commune: str = "29019") -> dict[str, Any]:
    """A complete application; by default a structure of Brest (Finistère)."""
    body = complete_body()
    body["parameter"] = [p for p in body["parameter"] if p["name"] != "criterion"]
    for p in body["parameter"]:
        if p["name"] == "structure":
            for part in p["part"]:
                if part["name"] == "postalCode":
                    part["valueString"] = postal_code
                if part["name"] == "commune":
                    part["valueString"] = commune
    return body


def _grid(*, without: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    answers = copy.deepcopy(CRITERION_ANSWERS)
    for answer in answers:
        for part in answer["part"]:
            if part["name"] == "date":  # statutes dated ten days ago: under three months
                part["valueDate"] = (date.today() - timedelta(days=10)).isoformat()
    return [a for a in answers if a["part"][0]["valueCode"] not in without]


def _params(*parameters: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parameters)}


def _status(org: dict[str, Any]) -> str:
    for ext in org.get("extension", []):
        if ext["url"].endswith("sos-entry-lifecycle"):
            return next(s["valueCode"] for s in ext["extension"] if s["url"] == "status")
    raise AssertionError("no lifecycle")


def _life(org: dict[str, Any], part: str) -> Any:
    ext = next(e for e in org["extension"] if e["url"].endswith("sos-entry-lifecycle"))
    for sub in ext["extension"]:
        if sub["url"] == part:
            return next(v for k, v in sub.items() if k.startswith("value"))
    return None


def _apply_and_confirm(
    actors: Actors, smtp: SmtpRecorder, application: dict[str, Any] | None = None
) -> tuple[str, dict[str, str]]:
    web = actors.web
    body = application or _application()
    applied = web.post("/fhir/Organization/$apply", json=body, headers={"Content-Type": FHIR})
    assert applied.status_code == 201, applied.get_json()
    org_id = applied.get_json()["id"]
    assert _status(applied.get_json()) == "draft"
    assert web.get(f"/fhir/Organization/{org_id}").status_code == 404  # a draft: hidden
    assert actors.deliver()["sent"] == 1
    confirm_mail = smtp.received[-1]
    assert confirm_mail.envelope_to == ["anne.legoff@vivre-apres.fr"]
    assert "Association Vivre Après" in confirm_mail.subject or "Association Vivre Après" in confirm_mail.body
    link = re.search(r"http://fhir\.test/fhir/Organization/[^\s]+\$confirm\?token=[\w-]+", confirm_mail.body)
    assert link is not None, confirm_mail.body
    url = link.group(0).replace("http://fhir.test", "")
    confirmed = web.get(url)
    assert confirmed.status_code == 200, confirmed.get_json()
    assert _status(confirmed.get_json()) == "draft" and _life(confirmed.get_json(), "applicationConfirmed")
    assert web.get(url).status_code == 404  # single use
    assert actors.deliver()["sent"] == 1
    credentials = smtp.received[-1].body
    client_id = re.search(r"\b([0-9a-f-]{36})\b", credentials).group(1)  # type: ignore[union-attr]
    secret = re.search(r"secret[^:]*:\s*(\S+)", credentials, re.IGNORECASE).group(1)  # type: ignore[union-attr]
    return org_id, actors.token_headers(client_id, secret)


def _published(actors: Actors, smtp: SmtpRecorder) -> tuple[str, dict[str, str]]:
    """A structure applied for, submitted, validated by its DAC and published: (id, referent)."""
    dac = actors.register("territorial-admin", departements=["29"], kind="dac")
    dsrc = actors.register("regional-admin")
    org_id, referent = _apply_and_confirm(actors, smtp)
    org_url = f"/fhir/Organization/{org_id}"
    for step, who, body in (("$submit", referent, _params(*_grid())), ("$validate-territory", dac, _params()), ("$publish", dsrc, _params())):
        assert actors.web.post(f"{org_url}/{step}", json=body, headers=who).status_code == 200, step
    return org_id, referent


def test_the_whole_procedure(actors: Actors, smtp_server: SmtpRecorder) -> None:
    web = actors.web
    dac_29 = actors.register("territorial-admin", departements=["29"], kind="dac", email="dac29@example.org")
    c3_29 = actors.register("territorial-admin", departements=["29"], kind="3c", email="3c29@example.org")
    dac_35 = actors.register("territorial-admin", departements=["35"], kind="dac", email="dac35@example.org")
    dsrc = actors.register("regional-admin", email="dsrc@example.org")
    org_id, referent = _apply_and_confirm(actors, smtp_server)
    org_url = f"/fhir/Organization/{org_id}"
    assert web.get(org_url, headers=dac_29).status_code == 200  # its territory's administrators see it
    assert web.get(org_url, headers=dac_35).status_code == 404

    # $submit with an incomplete grid: 422, every missing criterion named; nothing changes.
    missing = ("charter", "statutes", "recruitment")
    incomplete = web.post(f"{org_url}/$submit", json=_params(*_grid(without=missing)), headers=referent)
    assert incomplete.status_code == 422
    named = " ".join(i["diagnostics"] for i in incomplete.get_json()["issue"])
    assert len(incomplete.get_json()["issue"]) == 3
    for label in ("charte", "statuts", "recrutement"):
        assert label in named.lower(), named
    assert _status(web.get(org_url, headers=referent).get_json()) == "draft"
    # The referent may not validate its own entry, nor change its status by hand.
    assert web.post(f"{org_url}/$validate-territory", json=_params(), headers=referent).status_code == 403
    by_hand = web.get(org_url, headers=referent).get_json()
    by_hand["extension"][0]["extension"][0]["valueCode"] = "published"
    refused = web.put(org_url, json=by_hand, headers=referent)
    assert refused.status_code == 403 and "$publish" in refused.get_data(as_text=True)

    submitted = web.post(f"{org_url}/$submit", json=_params(*_grid()), headers=referent)
    assert submitted.status_code == 200, submitted.get_json()
    assert _status(submitted.get_json()) == "submitted"
    assert actors.deliver()["sent"] == 1
    assert smtp_server.received[-1].envelope_to == ["dac29@example.org"]  # the DAC of 29, not the 3C

    # Territorial validation: not by another département's admin, nor by the wrong kind.
    assert web.post(f"{org_url}/$validate-territory", json=_params(), headers=dac_35).status_code in (403, 404)
    wrong_kind = web.post(f"{org_url}/$validate-territory", json=_params(), headers=c3_29)
    assert wrong_kind.status_code == 403 and "DAC" in wrong_kind.get_data(as_text=True)
    assert web.post(f"{org_url}/$publish", json=_params(), headers=dsrc).status_code == 409  # not yet validated
    validated = web.post(f"{org_url}/$validate-territory", json=_params(), headers=dac_29)
    assert validated.status_code == 200 and _status(validated.get_json()) == "territorial-validated"
    assert _life(validated.get_json(), "territoryValidatedBy")

    # Nobody sees the offers yet; publishing shows the structure and all its entries at once.
    offers = f"/fhir/HealthcareService?organization={org_id}&_total=accurate"
    assert web.get(offers).get_json()["total"] == 0
    published = web.post(f"{org_url}/$publish", json=_params(), headers=dsrc)
    assert published.status_code == 200 and _status(published.get_json()) == "published"
    assert published.get_json()["active"] is True
    listed = web.get(offers).get_json()
    assert listed["total"] == 2
    assert all(_status(e["resource"]) == "published" and e["resource"]["active"] for e in listed["entry"])
    assert web.get(org_url).status_code == 200
    history = web.get(f"{org_url}/_history", headers=dsrc).get_json()
    assert [_status(e["resource"]) for e in history["entry"]] == [
        "published", "territorial-validated", "submitted", "draft", "draft",
    ]  # fmt: skip
    assert web.post(f"{org_url}/$publish", json=_params(), headers=dsrc).status_code == 409  # once is enough

    # The yearly sweep, with a frozen clock.
    services = actors.services
    procedure = runner.procedure(services)
    start = datetime.combine(date.fromisoformat(_life(published.get_json(), "lastVerified")), datetime.min.time())
    assert actors.deliver()["sent"] == 2  # the region told of the validation, the referent of the publication
    assert {a for m in smtp_server.received[-2:] for a in m.envelope_to} == {"dsrc@example.org", "anne.legoff@vivre-apres.fr"}
    sent_before = len(smtp_server.received)
    early = sweep(services, procedure, start + timedelta(days=300))
    assert early.requested == 0
    due = sweep(services, procedure, start + timedelta(days=366))  # twelve months
    assert due.requested == 1 and _status(web.get(org_url).get_json()) == "verification-pending"
    again = sweep(services, procedure, start + timedelta(days=366, hours=1))
    assert again.requested == 0 and again.second_reminders == 0  # nothing twice
    actors.deliver(now=start + timedelta(days=366, hours=2))
    assert len(smtp_server.received) == sent_before + 1
    assert smtp_server.received[-1].envelope_to == ["anne.legoff@vivre-apres.fr"]
    second = sweep(services, procedure, start + timedelta(days=397))  # thirteen months
    assert second.second_reminders == 1 and second.delisted == 0
    assert sweep(services, procedure, start + timedelta(days=398)).second_reminders == 0
    delisted = sweep(services, procedure, start + timedelta(days=428))  # fourteen months
    assert delisted.delisted == 1
    actors.deliver(now=start + timedelta(days=429))
    assert {"dac29@example.org", "anne.legoff@vivre-apres.fr"} <= {
        a for m in smtp_server.received[-2:] for a in m.envelope_to
    }
    # Delisted: readable by id (active=false, with its history), gone from anonymous search.
    gone = web.get(org_url)
    assert gone.status_code == 200 and gone.get_json()["active"] is False
    assert _status(gone.get_json()) == "delisted"
    assert web.get(offers).get_json()["total"] == 0
    assert web.get(f"/fhir/Organization?_id={org_id}").get_json().get("entry") is None
    # Every transition left an AuditEvent naming its operation.
    events = web.get("/fhir/AuditEvent?_count=500", headers=dsrc).get_json()["entry"]
    described = {e["resource"].get("outcomeDesc", "") for e in events}
    for step in ("$submit", "$validate-territory", "$publish", "$request-verification", "$delist"):
        assert any(d.startswith(step) for d in described), step


def test_attesting_resets_the_yearly_clock(actors: Actors, smtp_server: SmtpRecorder) -> None:
    web = actors.web
    dac = actors.register("territorial-admin", departements=["29"], kind="dac")
    dsrc = actors.register("regional-admin")
    org_id, referent = _apply_and_confirm(actors, smtp_server)
    org_url = f"/fhir/Organization/{org_id}"
    for step, who, body in (("$submit", referent, _params(*_grid())), ("$validate-territory", dac, _params()), ("$publish", dsrc, _params())):
        assert web.post(f"{org_url}/{step}", json=body, headers=who).status_code == 200, step
    services = actors.services
    procedure = runner.procedure(services)
    now = utcnow()
    assert sweep(services, procedure, now + timedelta(days=366)).requested == 1
    assert web.post(f"{org_url}/$attest", json=_params(), headers=dac).status_code == 403  # the referent's word
    attested = web.post(f"{org_url}/$attest", json=_params(), headers=referent)
    assert attested.status_code == 200 and _status(attested.get_json()) == "published"
    assert _life(attested.get_json(), "verificationRequested") is None
    # The clock starts again from the attestation: no delisting two months after the request.
    assert sweep(services, procedure, now + timedelta(days=430)).delisted == 0


def test_refusals_change_nothing_and_are_audited(actors: Actors, smtp_server: SmtpRecorder) -> None:
    web = actors.web
    dsrc = actors.register("regional-admin")
    org_id, referent = _apply_and_confirm(actors, smtp_server)
    org_url = f"/fhir/Organization/{org_id}"
    before = web.get(org_url, headers=dsrc).get_json()["meta"]["versionId"]
    anonymous = {"Content-Type": FHIR}
    assert web.post(f"{org_url}/$submit", json=_params(*_grid()), headers=anonymous).status_code == 401
    assert web.post("/fhir/Organization/unknown/$submit", json=_params(), headers=anonymous).status_code == 401
    assert web.post(f"{org_url}/$reject", json=_params(), headers=dsrc).status_code == 400  # no reason
    assert web.post(f"{org_url}/$reject", json=_params({"name": "reason", "valueString": "x"}), headers=dsrc).status_code == 409
    assert web.post(f"{org_url}/$publish", json=_params(), headers=referent).status_code == 403
    assert web.get(org_url, headers=dsrc).get_json()["meta"]["versionId"] == before
    events = web.get("/fhir/AuditEvent?_count=500", headers=dsrc).get_json()["entry"]
    refusals = [e["resource"] for e in events if e["resource"]["outcome"] == "4"]
    assert any(r["outcomeDesc"].startswith("$publish") for r in refusals)
    assert any(r["outcomeDesc"].startswith("$reject") for r in refusals)
    # The two anonymous attempts, refused before anything is read, as an anonymous DELETE is.
    assert sum(r["outcomeDesc"].startswith("$submit") for r in refusals) == 2
    # A rejection goes back to the structure, which amends and submits again.
    assert web.post(f"{org_url}/$submit", json=_params(*_grid()), headers=referent).status_code == 200
    reason = _params({"name": "reason", "valueString": "Projet de santé sans mention du médecin traitant"})
    rejected = web.post(f"{org_url}/$reject", json=reason, headers=dsrc)
    assert rejected.status_code == 200 and _status(rejected.get_json()) == "rejected"
    assert _life(rejected.get_json(), "statusReason").startswith("Projet de santé")
    actors.deliver()
    assert "médecin traitant" in smtp_server.received[-1].body
    assert web.post(f"{org_url}/$submit", json=_params(*_grid()), headers=referent).status_code == 200


def test_an_incomplete_application_names_every_problem(actors: Actors) -> None:
    body = _application()
    body["parameter"] = [p for p in body["parameter"] if p["name"] != "referent"]
    answer = actors.web.post("/fhir/Organization/$apply", json=body, headers={"Content-Type": FHIR})
    assert answer.status_code == 422
    assert any("referent" in i["expression"][0] for i in answer.get_json()["issue"])


def test_applications_are_limited_per_address(actors: Actors) -> None:
    web = actors.web
    statuses = [
        web.post("/fhir/Organization/$apply", json=_application(), headers={"Content-Type": FHIR}).status_code
        for _ in range(6)
    ]
    assert statuses == [201] * 5 + [429]
    other = web.post(
        "/fhir/Organization/$apply",
        json=_application(),
        headers={"Content-Type": FHIR},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert other.status_code == 201


def test_a_dac_of_communes_validates_the_structures_placed_there(actors: Actors, smtp_server: SmtpRecorder) -> None:
    """A DAC area may be smaller than a département (DAC 94 Ouest): its territory is communes,
    and it validates (and sees) the structures with a place in them, not the rest of 94."""
    web = actors.web
    ouest = actors.register("territorial-admin", communes=["94028", "94041"], kind="dac", email="dac94o@example.org")
    est = actors.register("territorial-admin", communes=["94068"], kind="dac", email="dac94e@example.org")
    org_id, referent = _apply_and_confirm(actors, smtp_server, _application("94000", "94028"))  # Créteil
    org_url = f"/fhir/Organization/{org_id}"
    assert web.get(org_url, headers=ouest).status_code == 200
    assert web.get(org_url, headers=est).status_code == 404
    assert web.post(f"{org_url}/$submit", json=_params(*_grid()), headers=referent).status_code == 200
    actors.deliver()
    assert smtp_server.received[-1].envelope_to == ["dac94o@example.org"]
    assert web.post(f"{org_url}/$validate-territory", json=_params(), headers=est).status_code in (403, 404)
    validated = web.post(f"{org_url}/$validate-territory", json=_params(), headers=ouest)
    assert validated.status_code == 200 and _status(validated.get_json()) == "territorial-validated"


def test_an_offer_is_withdrawn_on_its_own(actors: Actors, smtp_server: SmtpRecorder) -> None:
    web = actors.web
    org_id, referent = _published(actors, smtp_server)
    org_url = f"/fhir/Organization/{org_id}"
    offers = web.get(f"/fhir/HealthcareService?organization={org_id}").get_json()["entry"]
    offer_id = offers[0]["resource"]["id"]
    assert web.post(f"/fhir/HealthcareService/{offer_id}/$withdraw", json=_params(), headers={"Content-Type": FHIR}).status_code == 401
    withdrawn = web.post(f"/fhir/HealthcareService/{offer_id}/$withdraw", json=_params(), headers=referent)
    assert withdrawn.status_code == 200 and _status(withdrawn.get_json()) == "withdrawn"
    assert withdrawn.get_json()["active"] is False
    listed = web.get(f"/fhir/HealthcareService?organization={org_id}&_total=accurate").get_json()
    assert listed["total"] == 1 and listed["entry"][0]["resource"]["id"] != offer_id
    assert web.get(org_url).status_code == 200  # the structure stays listed
    assert web.get(f"/fhir/HealthcareService/{offer_id}").status_code == 200  # citeable by id
    assert web.post(f"/fhir/HealthcareService/{offer_id}/$withdraw", json=_params(), headers=referent).status_code == 409


def test_an_application_withdrawn_before_publication_is_never_shown(actors: Actors, smtp_server: SmtpRecorder) -> None:
    """Only an entry listed once is cited, so only such an entry is read by id once it has left:
    a structure that withdraws its application stays out of sight, its offers with it."""
    web = actors.web
    dac = actors.register("territorial-admin", departements=["29"], kind="dac")
    partner = actors.register("partner-reader", scopes="system/*.rs")
    org_id, referent = _apply_and_confirm(actors, smtp_server)
    org_url = f"/fhir/Organization/{org_id}"
    assert web.post(f"{org_url}/$submit", json=_params(*_grid()), headers=referent).status_code == 200
    offer_ids = [e["resource"]["id"] for e in web.get(f"/fhir/HealthcareService?organization={org_id}", headers=referent).get_json()["entry"]]
    withdrawn = web.post(f"{org_url}/$withdraw", json=_params(), headers=referent)
    assert withdrawn.status_code == 200 and _status(withdrawn.get_json()) == "withdrawn"
    for url in (org_url, *(f"/fhir/HealthcareService/{i}" for i in offer_ids)):
        assert web.get(url).status_code == 404, url  # anonymous
        assert web.get(url, headers=partner).status_code == 404, url
        assert web.get(url, headers=referent).status_code == 200, url  # its own people still do
        assert web.get(url, headers=dac).status_code == 200, url
    synced = web.get(f"/fhir/HealthcareService?organization={org_id}&_total=accurate", headers=partner).get_json()
    assert synced["total"] == 0


def test_a_structure_withdrawn_after_publication_stays_citeable_with_its_offers(
    actors: Actors, smtp_server: SmtpRecorder
) -> None:
    web = actors.web
    org_id, referent = _published(actors, smtp_server)
    org_url = f"/fhir/Organization/{org_id}"
    offers = web.get(f"/fhir/HealthcareService?organization={org_id}").get_json()["entry"]
    # The publication is in each offer's own record: it travels with an export.
    assert all(_life(e["resource"], "regionValidatedOn") for e in offers)
    assert web.post(f"{org_url}/$withdraw", json=_params(), headers=referent).status_code == 200
    assert web.get(org_url).status_code == 200
    for entry in offers:
        answer = web.get(f"/fhir/HealthcareService/{entry['resource']['id']}")
        assert answer.status_code == 200 and _status(answer.get_json()) == "withdrawn"
    assert web.get(f"/fhir/HealthcareService?organization={org_id}&_total=accurate").get_json()["total"] == 0


def test_a_structure_that_left_the_directory_no_longer_shows_its_contact_person_to_the_public(
    actors: Actors, smtp_server: SmtpRecorder
) -> None:
    """A structure that left stays readable by id, for the care plans that cite it; the person
    it names as its contact (a name, an e-mail) does not, to the public: not in a read, nor in
    its history, nor in the versions from when it was listed. Its own people, partners and
    administrators still see it."""
    web = actors.web
    partner = actors.register("partner-reader", scopes="system/*.rs")
    dsrc = actors.register("regional-admin")
    org_id, referent = _published(actors, smtp_server)
    org_url = f"/fhir/Organization/{org_id}"
    current = web.get(org_url, headers=referent).get_json()
    person = {"name": {"text": "Dr Maëlys Guivarc'h"}, "telecom": [{"system": "email", "value": "m.guivarch@example.org"}]}
    assert web.put(org_url, json={**current, "contact": [person]}, headers=referent).status_code == 200
    assert "m.guivarch" in web.get(org_url).get_data(as_text=True)  # listed: its contact is public
    assert web.post(f"{org_url}/$withdraw", json=_params(), headers=referent).status_code == 200
    left = web.get(org_url)
    assert left.status_code == 200 and _status(left.get_json()) == "withdrawn"
    assert "contact" not in left.get_json() and left.get_json()["name"] == current["name"]
    history = web.get(f"{org_url}/_history")
    versions = [e["resource"] for e in history.get_json()["entry"] if "resource" in e]
    assert history.status_code == 200 and len(versions) >= 2
    for version in versions:
        assert "contact" not in version
        vread = web.get(f"{org_url}/_history/{version['meta']['versionId']}")
        assert vread.status_code == 200 and "m.guivarch" not in vread.get_data(as_text=True)
    assert "m.guivarch" not in web.get("/fhir/Organization/_history?_count=1000").get_data(as_text=True)
    other = actors.register("structure-referent", organization="Organization/another-structure")
    assert "contact" not in web.get(org_url, headers=other).get_json()  # another structure's referent
    for who in (referent, partner, dsrc):
        assert web.get(org_url, headers=who).get_json()["contact"] == [person]


def test_an_offer_drafted_after_publication_is_not_shown_by_the_yearly_verification(
    actors: Actors, smtp_server: SmtpRecorder
) -> None:
    """Attesting, asking for verification and delisting concern what was listed with the
    structure: an offer its referent drafted since then stays a draft, neither shown by an
    attestation without validation nor made citeable by a delisting."""
    web = actors.web
    org_id, referent = _published(actors, smtp_server)
    org_url = f"/fhir/Organization/{org_id}"
    listed = web.get(f"/fhir/HealthcareService?organization={org_id}").get_json()["entry"][0]["resource"]
    record = next(e for e in listed["extension"] if e["url"].endswith("sos-entry-lifecycle"))
    draft = {
        "resourceType": "HealthcareService",
        "name": "Atelier ajouté après la publication",
        "providedBy": {"reference": f"Organization/{org_id}"},
        "extension": [{"url": record["url"], "extension": [{"url": "status", "valueCode": "draft"}]}],
    }
    created = web.post("/fhir/HealthcareService", json=draft, headers=referent)
    assert created.status_code == 201, created.get_json()
    offer_url = f"/fhir/HealthcareService/{created.get_json()['id']}"
    services = actors.services
    procedure = runner.procedure(services)
    start = datetime.combine(date.fromisoformat(_life(web.get(org_url).get_json(), "lastVerified")), datetime.min.time())
    assert sweep(services, procedure, start + timedelta(days=366)).requested == 1
    assert web.post(f"{org_url}/$attest", json=_params(), headers=referent).status_code == 200
    assert _status(web.get(org_url).get_json()) == "published"
    assert _status(web.get(offer_url, headers=referent).get_json()) == "draft"
    assert web.get(offer_url).status_code == 404  # anonymous: never validated, never shown
    assert sweep(services, procedure, start + timedelta(days=2 * 366)).requested == 1
    assert sweep(services, procedure, start + timedelta(days=2 * 366 + 62)).delisted == 1
    assert web.get(org_url).status_code == 200  # delisted: still cited by id
    assert _status(web.get(offer_url, headers=referent).get_json()) == "draft"
    assert web.get(offer_url).status_code == 404


def test_an_offer_sent_without_a_status_starts_as_a_draft_not_listed(
    actors: Actors, smtp_server: SmtpRecorder
) -> None:
    """Without a status of its own an offer takes its structure's: a referent who left the
    lifecycle out would list an offer at once, past $submit, $validate-territory and $publish.
    It starts as a draft instead, by POST as by a conditional update that creates."""
    web = actors.web
    org_id, referent = _published(actors, smtp_server)
    bare = {
        "resourceType": "HealthcareService",
        "name": "Atelier sans statut",
        "providedBy": {"reference": f"Organization/{org_id}"},
    }
    created = web.post("/fhir/HealthcareService", json=bare, headers=referent)
    assert created.status_code == 201, created.get_json()
    conditional = web.put(
        "/fhir/HealthcareService?name=Atelier%20sans%20statut%20bis",
        json={**bare, "name": "Atelier sans statut bis"},
        headers=referent,
    )
    assert conditional.status_code == 201, conditional.get_json()
    for answer in (created, conditional):
        url = f"/fhir/HealthcareService/{answer.get_json()['id']}"
        assert _status(answer.get_json()) == "draft"
        assert web.get(url).status_code == 404  # anonymous: not listed
        assert _status(web.get(url, headers=referent).get_json()) == "draft"
    found = web.get("/fhir/HealthcareService?name=sans%20statut&_total=accurate").get_json()
    assert found["total"] == 0
    submitted = web.post(f"/fhir/HealthcareService/{created.get_json()['id']}/$submit", json=_params(), headers=referent)
    assert submitted.status_code == 200 and _status(submitted.get_json()) == "submitted"


def _offer_added(actors: Actors, org_id: str, referent: dict[str, str], name: str = "Atelier ajouté") -> str:
    """An offer the referent drafts for its structure, listed already: its URL."""
    listed = actors.web.get(f"/fhir/HealthcareService?organization={org_id}").get_json()["entry"][0]["resource"]
    record = next(e for e in listed["extension"] if e["url"].endswith("sos-entry-lifecycle"))
    draft = {
        "resourceType": "HealthcareService",
        "name": name,
        "providedBy": {"reference": f"Organization/{org_id}"},
        "extension": [{"url": record["url"], "extension": [{"url": "status", "valueCode": "draft"}]}],
    }
    created = actors.web.post("/fhir/HealthcareService", json=draft, headers=referent)
    assert created.status_code == 201, created.get_json()
    return f"/fhir/HealthcareService/{created.get_json()['id']}"


def test_an_offer_added_to_a_listed_structure_is_shown_once_validated_on_its_own(
    actors: Actors, smtp_server: SmtpRecorder
) -> None:
    """The referent submits the new offer, the structure's DAC validates it, the region publishes
    it: each told by e-mail as for an application, the offer hidden until the last step."""
    web = actors.web
    org_id, referent = _published(actors, smtp_server)
    dac = actors.register("territorial-admin", departements=["29"], kind="dac", email="dac29@example.org")
    dsrc = actors.register("regional-admin", email="dsrc@example.org")
    actors.deliver()
    offer_url = _offer_added(actors, org_id, referent, "Atelier sophrologie du jeudi")
    offer_id = offer_url.rsplit("/", 1)[1]
    search = f"/fhir/HealthcareService?organization={org_id}&_id={offer_id}&_total=accurate"

    for step, who, status in (("$submit", referent, "submitted"), ("$validate-territory", dac, "territorial-validated")):
        answer = web.post(f"{offer_url}/{step}", json=_params(), headers=who)
        assert answer.status_code == 200 and _status(answer.get_json()) == status, answer.get_json()
        assert web.get(offer_url).status_code == 404  # not shown before the region's validation
        assert web.get(search).get_json()["total"] == 0
    sent = len(smtp_server.received)
    published = web.post(f"{offer_url}/$publish", json=_params(), headers=dsrc)
    assert published.status_code == 200 and _status(published.get_json()) == "published"
    assert _life(published.get_json(), "regionValidatedOn")  # its own record says it was listed
    assert published.get_json()["active"] is True
    assert web.get(offer_url).status_code == 200
    assert web.get(search).get_json()["total"] == 1

    assert actors.deliver()["sent"] >= 1
    told = {m.envelope_to[0]: m for m in smtp_server.received[sent - 2 :]}
    assert "Atelier sophrologie du jeudi" in told["dac29@example.org"].body  # asked to validate it
    assert "validation régionale" in told["dsrc@example.org"].subject
    assert "Atelier sophrologie du jeudi" in told["anne.legoff@vivre-apres.fr"].subject  # published
    assert offer_url in told["anne.legoff@vivre-apres.fr"].body


def test_an_offer_added_to_a_listed_structure_is_refused_without_its_steps(
    actors: Actors, smtp_server: SmtpRecorder
) -> None:
    web = actors.web
    org_id, referent = _published(actors, smtp_server)
    dac_35 = actors.register("territorial-admin", departements=["35"], kind="dac")
    c3_29 = actors.register("territorial-admin", departements=["29"], kind="3c")
    dac = actors.register("territorial-admin", departements=["29"], kind="dac")
    dsrc = actors.register("regional-admin")
    offer_url = _offer_added(actors, org_id, referent)

    def post(step: str, who: dict[str, str], body: dict[str, Any] | None = None) -> Any:
        return web.post(f"{offer_url}/{step}", json=body or _params(), headers=who)

    assert post("$publish", dsrc).status_code == 409  # a draft: not validated by its territory
    assert post("$validate-territory", dac).status_code == 409  # not submitted
    assert post("$submit", dac_35).status_code in (403, 404)  # another territory's administrator
    assert post("$submit", referent).status_code == 200
    assert post("$validate-territory", dac_35).status_code in (403, 404)
    assert post("$validate-territory", c3_29).status_code == 403  # the DAC validates this structure
    assert post("$validate-territory", referent).status_code == 403
    assert post("$reject", dac).status_code == 400  # a reason is needed
    rejected = post("$reject", dac, _params({"name": "reason", "valueString": "Horaires manquants"}))
    assert rejected.status_code == 200 and _status(rejected.get_json()) == "rejected"
    assert web.get(offer_url).status_code == 404
    assert post("$submit", referent).status_code == 200  # corrected and submitted again
    assert _status(web.get(offer_url, headers=referent).get_json()) == "submitted"
    # Another structure's referent may not submit it.
    actors.deliver()
    _, other = _apply_and_confirm(actors, smtp_server, _application(postal_code="29000", commune="29232"))
    assert post("$submit", other).status_code in (403, 404)


def test_an_offer_of_a_structure_not_listed_moves_with_its_application(
    actors: Actors, smtp_server: SmtpRecorder
) -> None:
    """Before the structure is published, its offers follow its own application: an offer's
    own step is refused (409, naming the structure's), and a listed offer has no step of its own."""
    web = actors.web
    org_id, referent = _apply_and_confirm(actors, smtp_server)
    offer = web.get(f"/fhir/HealthcareService?organization={org_id}", headers=referent).get_json()["entry"][0]
    answer = web.post(f"/fhir/HealthcareService/{offer['resource']['id']}/$submit", json=_params(), headers=referent)
    assert answer.status_code == 409
    assert f"Organization/{org_id}/$submit" in answer.get_json()["issue"][0]["diagnostics"]
    org_id, referent = _published(actors, smtp_server)
    listed = web.get(f"/fhir/HealthcareService?organization={org_id}").get_json()["entry"][0]["resource"]
    again = web.post(f"/fhir/HealthcareService/{listed['id']}/$submit", json=_params(), headers=referent)
    assert again.status_code == 409  # published with its structure already
