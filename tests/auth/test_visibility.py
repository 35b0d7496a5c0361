"""Anonymous callers see published entries and conformance content, nothing else."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.auth.conftest import Clients


def _ids(bundle: dict) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def test_anonymous_reads_published_and_pending_entries_only(web: FlaskClient) -> None:
    assert web.get("/fhir/HealthcareService/hs-29").status_code == 200
    assert web.get("/fhir/HealthcareService/hs-29-pending").status_code == 200
    # Delisted: readable by id (care plans cite it), never found by a search.
    assert web.get("/fhir/HealthcareService/hs-29-delisted").status_code == 200
    for hidden in ("hs-29-draft",):
        response = web.get(f"/fhir/HealthcareService/{hidden}")
        assert response.status_code == 404
        assert f"Offre {hidden}" not in response.get_data(as_text=True)
        assert web.get(f"/fhir/HealthcareService/{hidden}/_history/1").status_code == 404
    # A person is shown through a public role only: pr-1 has none.
    assert web.get("/fhir/Practitioner/pr-1").status_code == 404


def test_anonymous_search_hides_drafts_and_counts_right(web: FlaskClient) -> None:
    bundle = web.get("/fhir/HealthcareService?_total=accurate").get_json()
    assert _ids(bundle) == {"hs-29", "hs-35", "hs-29-pending"}
    assert bundle.get("total", 3) == 3
    history = web.get("/fhir/HealthcareService/_history").get_json()
    assert "hs-29-draft" not in {e["resource"]["id"] for e in history.get("entry", []) if "resource" in e}


def test_anonymous_includes_do_not_leak_drafts(web: FlaskClient) -> None:
    bundle = web.get("/fhir/Organization?_id=org-29&_revinclude=HealthcareService:organization").get_json()
    shown = {e["resource"]["id"] for e in bundle.get("entry", [])}
    assert "hs-29" in shown or bundle.get("entry")  # the search itself worked
    assert "hs-29-draft" not in shown


def test_authenticated_readers_see_drafts(web: FlaskClient, clients: Clients) -> None:
    headers = clients.headers("structure-referent", scopes="system/*.rs", organization="Organization/org-29")
    assert web.get("/fhir/HealthcareService/hs-29-draft", headers=headers).status_code == 200
    bundle = web.get("/fhir/HealthcareService", headers=headers).get_json()
    assert "hs-29-draft" in _ids(bundle)


def test_audit_events_are_for_regional_admins_only(web: FlaskClient, clients: Clients) -> None:
    regional = clients.headers("regional-admin", scopes="system/*.rs")
    writer = clients.headers("regional-admin")
    renamed = {"resourceType": "Practitioner", "id": "pr-1", "name": [{"family": "Martin-Dupont"}]}
    assert web.put("/fhir/Practitioner/pr-1", json=renamed, headers=writer).status_code == 200
    events = web.get("/fhir/AuditEvent", headers=regional).get_json()
    assert events["entry"], "the fixture's writes left audit events"
    some_id = events["entry"][0]["resource"]["id"]
    assert web.get(f"/fhir/AuditEvent/{some_id}", headers=regional).status_code == 200
    assert web.get(f"/fhir/AuditEvent/{some_id}").status_code == 401
    assert web.get("/fhir/AuditEvent").status_code == 401
    territorial = clients.headers("territorial-admin", scopes="system/*.rs", departements=["29"])
    assert web.get("/fhir/AuditEvent", headers=territorial).status_code == 403
    assert web.get(f"/fhir/AuditEvent/{some_id}", headers=territorial).status_code == 403


def test_anonymous_search_across_types_hides_drafts_of_every_type(web: FlaskClient, clients: Clients) -> None:
    public = web.get("/fhir?_type=HealthcareService,Organization&_count=100").get_json()
    assert {"hs-29", "hs-35", "hs-29-pending"} <= _ids(public)
    assert not {i for i in _ids(public) if i.endswith(("-draft", "-delisted"))}
    # Every type carries its own visibility rule, so any mix of types can be searched.
    mixed = web.get("/fhir?_type=HealthcareService,Practitioner&_count=100").get_json()
    assert "pr-1" not in _ids(mixed) and "hs-29" in _ids(mixed)
    everything = web.get("/fhir?_count=500").get_json()
    assert "hs-29-draft" not in _ids(everything)
    assert not [e for e in everything.get("entry", []) if e["resource"]["resourceType"] == "AuditEvent"]
    assert web.get("/fhir?_type=AuditEvent").status_code == 401
    headers = clients.headers("regional-admin", scopes="system/*.rs")
    everything = web.get("/fhir?_type=HealthcareService,Practitioner&_count=100", headers=headers)
    assert "hs-29-draft" in _ids(everything.get_json())
