"""Every write leaves an AuditEvent (who, what, action, when, outcome); a refused one none."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.auth.conftest import FHIR, Clients, service


def _events(web: FlaskClient, headers: dict[str, str], entity: str) -> list[dict]:
    bundle = web.get("/fhir/AuditEvent?_count=200", headers=headers).get_json()
    found = [e["resource"] for e in bundle.get("entry", [])]
    return [e for e in found if e["entity"][0]["what"]["reference"].startswith(entity + "/")]


def test_create_update_delete_are_audited_with_the_client(web: FlaskClient, clients: Clients) -> None:
    client_id, secret = clients.register("territorial-admin", departements=["35"])
    token = web.post("/fhir/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    headers = {"Authorization": f"Bearer {token.get_json()['access_token']}", "Content-Type": FHIR}
    created = web.post("/fhir/HealthcareService", json=service("new", "org-35", "loc-35"), headers=headers)
    assert created.status_code == 201
    new_id = created.get_json()["id"]
    body = created.get_json() | {"name": "Renommée"}
    assert web.put(f"/fhir/HealthcareService/{new_id}", json=body, headers=headers).status_code == 200
    assert web.delete(f"/fhir/HealthcareService/{new_id}", headers=headers).status_code in (200, 204)

    admin = clients.headers("regional-admin", scopes="system/*.rs")
    events = _events(web, admin, f"HealthcareService/{new_id}")
    by_action = {e["action"]: e for e in events}
    assert set(by_action) == {"C", "U", "D"}
    assert by_action["U"]["entity"][0]["what"]["reference"] == f"HealthcareService/{new_id}/_history/2"
    who = by_action["C"]["agent"][0]["who"]
    assert who["identifier"]["value"] == client_id
    assert "territorial-admin" in who["display"]
    assert all(e["outcome"] == "0" and e["recorded"] for e in events)


def test_a_refused_write_leaves_no_audit_event(web: FlaskClient, clients: Clients) -> None:
    admin = clients.headers("regional-admin", scopes="system/*.rs")
    before = len(_events(web, admin, "HealthcareService/hs-29"))
    headers = clients.headers("territorial-admin", departements=["35"])
    refused = web.put(
        "/fhir/HealthcareService/hs-29",
        json=service("hs-29", "org-29", "loc-29") | {"name": "x"},
        headers=headers,
    )
    assert refused.status_code == 403
    assert len(_events(web, admin, "HealthcareService/hs-29")) == before


def test_clients_cannot_write_audit_events(web: FlaskClient, clients: Clients) -> None:
    headers = clients.headers("regional-admin")
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
