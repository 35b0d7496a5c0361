"""Every write leaves an AuditEvent (who, what, action, when, outcome); a refused one none."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.auth.conftest import FHIR, Clients, service


def _events(web: FlaskClient, headers: dict[str, str], entity: str, outcome: str = "0") -> list[dict]:
    """Audit events of writes (outcome 0) or refusals (outcome 4) naming `entity`."""
    bundle = web.get("/fhir/AuditEvent?_count=200", headers=headers).get_json()
    found = [e["resource"] for e in bundle.get("entry", []) if e["resource"]["outcome"] == outcome]
    what = [(e, e["entity"][0]["what"]) for e in found]
    return [e for e, w in what if (w.get("reference") or w.get("display", "")).startswith(entity)]


def test_create_update_delete_are_audited_with_the_client(web: FlaskClient, clients: Clients) -> None:
    client_id, secret = clients.register("territorial-admin", departements=["35"])
    token = web.post("/fhir/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    headers = {"Authorization": f"Bearer {token.get_json()['access_token']}", "Content-Type": FHIR}
    draft = service("new", "org-35", "loc-35", status="draft")  # a new entry starts as a draft
    created = web.post("/fhir/HealthcareService", json=draft, headers=headers)
    assert created.status_code == 201
    new_id = created.get_json()["id"]
    body = created.get_json() | {"name": "Renommée"}
    assert web.put(f"/fhir/HealthcareService/{new_id}", json=body, headers=headers).status_code == 200
    regional = clients.headers("regional-admin")
    assert web.delete(f"/fhir/HealthcareService/{new_id}", headers=regional).status_code in (200, 204)

    admin = clients.headers("regional-admin", scopes="system/*.rs")
    events = _events(web, admin, f"HealthcareService/{new_id}")
    by_action = {e["action"]: e for e in events}
    assert set(by_action) == {"C", "U", "D"}
    assert "regional-admin" in by_action["D"]["agent"][0]["who"]["display"]
    assert by_action["U"]["entity"][0]["what"]["reference"] == f"HealthcareService/{new_id}/_history/2"
    who = by_action["C"]["agent"][0]["who"]
    assert who["identifier"]["value"] == client_id
    assert "territorial-admin" in who["display"]
    assert all(e["outcome"] == "0" and e["recorded"] for e in events)


def test_a_refused_write_leaves_a_failure_event_and_no_success(web: FlaskClient, clients: Clients) -> None:
    admin = clients.headers("regional-admin", scopes="system/*.rs")
    before = len(_events(web, admin, "HealthcareService/hs-29"))
    client_id, secret = clients.register("territorial-admin", departements=["35"])
    token = web.post("/fhir/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    headers = {"Authorization": f"Bearer {token.get_json()['access_token']}", "Content-Type": FHIR}
    refused = web.put(
        "/fhir/HealthcareService/hs-29",
        json=service("hs-29", "org-29", "loc-29") | {"name": "x"},
        headers=headers,
    )
    assert refused.status_code == 403
    assert len(_events(web, admin, "HealthcareService/hs-29")) == before
    failures = _events(web, admin, "HealthcareService/hs-29", outcome="4")
    assert len(failures) == 1
    assert failures[0]["agent"][0]["who"]["identifier"]["value"] == client_id
    assert "outside" in failures[0]["outcomeDesc"]
    # An anonymous attempt is traced too, without any stored content in the trail.
    assert web.delete("/fhir/HealthcareService/hs-29-draft").status_code == 401
    anonymous = _events(web, admin, "HealthcareService/hs-29-draft", outcome="4")
    assert [e["agent"][0]["who"]["display"] for e in anonymous] == ["anonymous caller"]
    assert "Offre" not in str(anonymous)


def test_clients_cannot_write_audit_events(web: FlaskClient, clients: Clients) -> None:
    headers = clients.headers("regional-admin")
    renamed = service("hs-35", "org-35", "loc-35") | {"name": "Renamed"}
    assert web.put("/fhir/HealthcareService/hs-35", json=renamed, headers=headers).status_code == 200
    existing = web.get("/fhir/AuditEvent?_count=1", headers=headers).get_json()["entry"][0]["resource"]
    total = len(web.get("/fhir/AuditEvent?_count=500", headers=headers).get_json()["entry"])
    forged = {k: v for k, v in existing.items() if k not in ("id", "meta")}
    refused = (400, 403, 405)  # the interactions refuse server-written types before the guard does
    url = f"/fhir/AuditEvent/{existing['id']}"
    assert web.post("/fhir/AuditEvent", json=forged, headers=headers).status_code in refused
    existing["action"] = "R"
    assert web.put(url, json=existing, headers=headers).status_code in refused
    assert web.delete(url, headers=headers).status_code in refused
    after = web.get("/fhir/AuditEvent?_count=500", headers=headers).get_json()["entry"]
    assert len(after) == total
    assert web.get(url, headers=headers).get_json()["action"] != "R"
