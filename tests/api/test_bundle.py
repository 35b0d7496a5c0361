"""batch and transaction Bundles: atomicity, urn:uuid references, conditional entries."""

from __future__ import annotations

import base64
import json

import pytest

from tests.api.helpers import FHIR, IDENT_SYSTEM, count_rows, org, post, service


def _bundle(kind: str, *entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _entry(
    method: str, url: str, resource: dict | None = None, full_url: str | None = None, **request
) -> dict:
    entry: dict = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        entry["resource"] = resource
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def _send(client, bundle):  # type: ignore[no-untyped-def]
    return client.post("/fhir", json=bundle, headers={"Content-Type": FHIR})


def test_transaction_rewrites_urn_uuid_references(client):
    org_urn = "urn:uuid:9a7e0c3c-1111-4d1c-9e2a-000000000001"
    loc_urn = "urn:uuid:9a7e0c3c-1111-4d1c-9e2a-000000000002"
    bundle = _bundle(
        "transaction",
        _entry(
            "POST",
            "HealthcareService",
            service("T1", providedBy={"reference": org_urn}, location=[{"reference": loc_urn}]),
        ),
        _entry("POST", "Organization", org("Ligue 35"), org_urn),
        _entry("POST", "Location", {"resourceType": "Location", "name": "Rennes"}, loc_urn),
    )
    res = _send(client, bundle)
    assert res.status_code == 200
    body = res.get_json()
    assert body["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created"] * 3
    locations = [e["response"]["location"] for e in body["entry"]]
    assert locations[1].startswith("Organization/") and locations[1].endswith("/_history/1")
    service_id = locations[0].split("/")[1]
    stored = client.get(f"/fhir/HealthcareService/{service_id}").get_json()
    org_id = locations[1].split("/")[1]
    assert stored["providedBy"]["reference"] == f"Organization/{org_id}"
    assert stored["location"][0]["reference"] == f"Location/{locations[2].split('/')[1]}"


def test_transaction_is_atomic_and_names_the_failing_entry(client):
    existing = post(client, org("Reste")).get_json()
    bundle = _bundle(
        "transaction",
        _entry("POST", "Organization", org("Jamais écrite")),
        _entry("PUT", f"Organization/{existing['id']}", {**existing, "name": "Jamais modifiée"}),
        _entry("POST", "Location", {"resourceType": "Location", "status": 12}),
    )
    res = _send(client, bundle)
    assert res.status_code == 400
    issue = res.get_json()["issue"][0]
    assert "Bundle.entry[2]" in issue["diagnostics"]
    assert issue["expression"][0] == "Bundle.entry[2]"
    assert count_rows(client) == (1, 1)
    assert client.get(f"/fhir/Organization/{existing['id']}").get_json()["name"] == "Reste"


def test_transaction_conditional_entries_and_references(client):
    known = post(client, service("C1")).get_json()
    bundle = _bundle(
        "transaction",
        _entry("POST", "HealthcareService", service("C1"), ifNoneExist=f"identifier={IDENT_SYSTEM}|C1"),
        _entry("PUT", f"HealthcareService?identifier={IDENT_SYSTEM}|C2", service("C2")),
        _entry(
            "POST",
            "PractitionerRole",
            {
                "resourceType": "PractitionerRole",
                "healthcareService": [{"reference": f"HealthcareService?identifier={IDENT_SYSTEM}|C1"}],
            },
        ),
    )
    res = _send(client, bundle)
    assert res.status_code == 200, res.get_json()
    entries = res.get_json()["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[0]["response"]["location"].split("/")[1] == known["id"]
    assert entries[1]["response"]["status"] == "201 Created"
    role_id = entries[2]["response"]["location"].split("/")[1]
    role = client.get(f"/fhir/PractitionerRole/{role_id}").get_json()
    assert role["healthcareService"][0]["reference"] == f"HealthcareService/{known['id']}"


def test_transaction_order_delete_then_create_and_patch_as_binary(client):
    doomed = post(client, org("À supprimer")).get_json()
    kept = post(client, org("À patcher")).get_json()
    patch = base64.b64encode(
        json.dumps([{"op": "replace", "path": "/name", "value": "Patchée"}]).encode()
    ).decode()
    bundle = _bundle(
        "transaction",
        _entry("POST", "Organization", org("Nouvelle")),
        _entry("DELETE", f"Organization/{doomed['id']}"),
        _entry(
            "PATCH",
            f"Organization/{kept['id']}",
            {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
        ),
        _entry("GET", f"Organization/{kept['id']}"),
    )
    res = _send(client, bundle)
    assert res.status_code == 200
    entries = res.get_json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["201 Created", "204 No Content", "200 OK", "200 OK"]
    assert entries[3]["resource"]["name"] == "Patchée"
    assert client.get(f"/fhir/Organization/{doomed['id']}").status_code == 410


def test_batch_entries_succeed_or_fail_on_their_own(client):
    bundle = _bundle(
        "batch",
        _entry("POST", "Organization", org("Bonne")),
        _entry("POST", "Organization", {"resourceType": "Organization", "active": "maybe"}),
        _entry("GET", "Organization/absent"),
    )
    res = _send(client, bundle)
    assert res.status_code == 200
    entries = res.get_json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"].startswith("400")
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["response"]["status"].startswith("404")
    assert count_rows(client) == (1, 1)


def test_an_entry_naming_another_server_is_refused_not_run_here(client):
    """An entry's url is relative to this server's base (R4): one naming a host was run here
    as if it named this server, whatever server the client meant."""
    created = _send(client, _bundle("batch", _entry("POST", "Organization", org("Ici"))))
    org_id = created.get_json()["entry"][0]["response"]["location"].split("/")[1]
    bundle = _bundle(
        "batch",
        _entry("GET", f"http://ailleurs.example/fhir/Organization/{org_id}"),
        _entry("DELETE", f"https://ailleurs.example/Organization/{org_id}"),
        _entry("GET", f"Organization/{org_id}"),
    )
    entries = _send(client, bundle).get_json()["entry"]
    for refused in entries[:2]:
        assert refused["response"]["status"].startswith("400")
        assert "relative to this server's base" in refused["response"]["outcome"]["issue"][0]["diagnostics"]
    assert entries[2]["response"]["status"].startswith("200")  # the DELETE did not run


def test_bad_bundles_are_400(client):
    assert _send(client, {"resourceType": "Bundle", "type": "collection"}).status_code == 400
    assert _send(client, _bundle("transaction", {"resource": org()})).status_code == 400
    assert _send(client, org()).status_code == 400


def test_bundle_entry_limit_is_413(app, client):
    limit = app.extensions["fhirsrv"].settings.max_bundle_entries
    many = _bundle("batch", *[_entry("GET", "Organization/x")] * (limit + 1))
    assert _send(client, many).status_code == 413


def _twice(existing: dict) -> dict[str, list[dict]]:
    """Transactions whose entries of steps 1-3 (DELETE, POST, PUT/PATCH) meet on `existing`."""
    url = f"Organization/{existing['id']}"
    ident = existing["identifier"][0]
    criteria = f"identifier={ident['system']}|{ident['value']}"
    patch = base64.b64encode(json.dumps([{"op": "replace", "path": "/name", "value": "P"}]).encode()).decode()
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch}
    return {
        "put and delete": [_entry("PUT", url, {**existing, "name": "A"}), _entry("DELETE", url)],
        "two puts": [
            _entry("PUT", url, {**existing, "name": "A"}),
            _entry("PUT", url, {**existing, "name": "B"}),
        ],
        "conditional create and put": [
            _entry("POST", "Organization", org("C", identifier=[ident]), ifNoneExist=criteria),
            _entry("PUT", url, {**existing, "name": "A"}),
        ],
        "conditional update and patch": [
            _entry("PUT", f"Organization?{criteria}", org("D", identifier=[ident])),
            _entry("PATCH", url, binary),
        ],
        "conditional delete and put": [
            _entry("DELETE", f"Organization?{criteria}"),
            _entry("PUT", url, {**existing, "name": "A"}),
        ],
    }


@pytest.mark.parametrize(
    "case",
    ["put and delete", "two puts", "conditional create and put", "conditional update and patch",
     "conditional delete and put"],
)  # fmt: skip
def test_a_transaction_naming_a_resource_twice_fails_and_writes_nothing(client, case):
    """R4 http.html#trules: identities that overlap in steps 1-3 SHALL fail the transaction."""
    existing = post(client, org("Intacte", identifier=[{"system": IDENT_SYSTEM, "value": "O1"}])).get_json()
    before = count_rows(client)
    location = _entry("POST", "Location", {"resourceType": "Location"})
    res = _send(client, _bundle("transaction", location, *_twice(existing)[case]))
    assert res.status_code == 400, res.get_json()
    issue = res.get_json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1]", "Bundle.entry[2]"]
    assert "Bundle.entry[1]" in issue["diagnostics"] and "Bundle.entry[2]" in issue["diagnostics"]
    assert f"Organization/{existing['id']}" in issue["diagnostics"]
    assert count_rows(client) == before
    assert client.get(f"/fhir/Organization/{existing['id']}").get_json()["name"] == "Intacte"


def test_a_bundle_entry_writing_a_read_only_type_is_method_not_allowed(client):
    audit = {"resourceType": "AuditEvent", "type": {"code": "rest"}}
    batch = _send(client, _bundle("batch", _entry("POST", "AuditEvent", audit))).get_json()
    assert batch["entry"][0]["response"]["status"] == "405 Method Not Allowed"
    # The transaction's own POST is allowed: what fails is its entry, and the whole is a bad request.
    tx = _send(
        client,
        _bundle("transaction", _entry("POST", "Organization", org()), _entry("DELETE", "AuditEvent/a1")),
    )
    assert tx.status_code == 400 and "Allow" not in tx.headers
    assert tx.get_json()["issue"][0]["expression"][0] == "Bundle.entry[1]"
    assert count_rows(client) == (0, 0)
