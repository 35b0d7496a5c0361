"""read, vread, create, update, delete over HTTP, with the headers the spec requires."""

from __future__ import annotations

from tests.api.helpers import FHIR, count_rows, org, post, put


def test_create_assigns_id_and_answers_201_with_location_and_etag(client):
    res = post(client, org(id="client-chosen"))
    assert res.status_code == 201
    body = res.get_json()
    assert body["id"] != "client-chosen"  # R4: the server ignores a client id on create
    assert body["meta"]["versionId"] == "1"
    assert res.headers["ETag"] == 'W/"1"'
    assert res.headers["Location"] == f"http://fhir.test/fhir/Organization/{body['id']}/_history/1"
    assert res.headers["Last-Modified"].endswith("GMT")
    assert res.headers["Content-Type"].startswith(FHIR)


def test_read_returns_stored_resource_and_vread_each_version(client):
    created = post(client, org("Hôpital A")).get_json()
    oid = created["id"]
    updated = put(client, {**created, "name": "Hôpital B"})
    assert updated.status_code == 200 and updated.get_json()["meta"]["versionId"] == "2"
    read = client.get(f"/fhir/Organization/{oid}")
    assert read.status_code == 200
    assert read.get_json()["name"] == "Hôpital B"
    assert read.headers["ETag"] == 'W/"2"'
    assert client.get(f"/fhir/Organization/{oid}/_history/1").get_json()["name"] == "Hôpital A"
    assert client.get(f"/fhir/Organization/{oid}/_history/2").get_json()["name"] == "Hôpital B"
    assert client.get(f"/fhir/Organization/{oid}/_history/3").status_code == 404
    assert client.get(f"/fhir/Organization/{oid}/_history/x").status_code == 400


def test_update_with_client_id_creates_then_updates(client):
    res = put(client, org(id="org-29-0001"))
    assert res.status_code == 201
    assert res.headers["Location"].endswith("/Organization/org-29-0001/_history/1")
    again = put(client, org("Autre nom", id="org-29-0001"))
    assert again.status_code == 200 and again.headers["ETag"] == 'W/"2"'


def test_identical_update_creates_no_new_version(client):
    created = post(client, org()).get_json()
    res = put(client, created)
    assert res.status_code == 200 and res.headers["ETag"] == 'W/"1"'
    assert count_rows(client) == (1, 1)


def test_update_id_mismatch_or_missing_is_400_and_writes_nothing(client):
    put(client, org(id="a1"))
    mismatch = client.put("/fhir/Organization/a1", json=org(id="b2"), headers={"Content-Type": FHIR})
    assert mismatch.status_code == 400
    assert mismatch.get_json()["resourceType"] == "OperationOutcome"
    missing = client.put("/fhir/Organization/a1", json=org(), headers={"Content-Type": FHIR})
    assert missing.status_code == 400
    assert count_rows(client) == (1, 1)


def test_delete_then_read_is_gone_and_history_keeps_versions(client):
    created = post(client, org()).get_json()
    oid = created["id"]
    assert client.delete(f"/fhir/Organization/{oid}").status_code == 204
    gone = client.get(f"/fhir/Organization/{oid}")
    assert gone.status_code == 410
    assert gone.get_json()["issue"][0]["code"] == "deleted"
    assert client.get(f"/fhir/Organization/{oid}/_history/1").status_code == 200
    assert client.get(f"/fhir/Organization/{oid}/_history/2").status_code == 410
    history = client.get(f"/fhir/Organization/{oid}/_history").get_json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    # Deleting again is idempotent and writes no further version.
    assert client.delete(f"/fhir/Organization/{oid}").status_code == 204
    assert count_rows(client) == (1, 2)


def test_update_after_delete_revives_with_next_version(client):
    put(client, org(id="x1"))
    client.delete("/fhir/Organization/x1")
    res = put(client, org("Revenue", id="x1"))
    assert res.status_code == 201 and res.headers["ETag"] == 'W/"3"'
    assert client.get("/fhir/Organization/x1").get_json()["name"] == "Revenue"


def test_unknown_type_and_unknown_id_are_404(client):
    assert client.get("/fhir/Patient/1").status_code == 404
    missing = client.get("/fhir/Organization/nope")
    assert missing.status_code == 404
    assert missing.get_json()["issue"][0]["code"] == "not-found"
    assert client.delete("/fhir/Organization/bad id!").status_code == 400


def test_server_written_types_are_read_only(client):
    res = post(client, {"resourceType": "AuditEvent", "type": {"code": "rest"}})
    assert res.status_code == 405 and res.headers["Allow"] == "GET, HEAD"
    assert res.get_json()["issue"][0]["code"] == "not-supported"
    assert client.delete("/fhir/AuditEvent/a1").status_code == 405
    assert (
        client.post("/fhir/AuditEvent/a1", data="not json", headers={"Content-Type": FHIR}).headers["Allow"]
        == "GET, HEAD"
    )
    assert count_rows(client) == (0, 0)


def test_prefer_return_minimal_and_operation_outcome(client):
    minimal = post(client, org(), Prefer="return=minimal")
    assert minimal.status_code == 201 and minimal.data == b"" and "Location" in minimal.headers
    outcome = post(client, org(), Prefer="return=OperationOutcome")
    assert outcome.get_json()["resourceType"] == "OperationOutcome"
    full = post(client, org(), Prefer="return=representation")
    assert full.get_json()["resourceType"] == "Organization"


def test_if_match_stale_version_is_412_and_changes_nothing(client):
    created = post(client, org("Avant")).get_json()
    put(client, {**created, "name": "Après"})
    stale = put(client, {**created, "name": "Perdu"}, **{"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    fresh = put(client, {**created, "name": "Bon"}, **{"If-Match": 'W/"2"'})
    assert fresh.status_code == 200
    assert client.get(f"/fhir/Organization/{created['id']}").get_json()["name"] == "Bon"
    stale_delete = client.delete(f"/fhir/Organization/{created['id']}", headers={"If-Match": 'W/"1"'})
    assert stale_delete.status_code == 412


def test_conditional_read_not_modified(client):
    created = post(client, org())
    oid = created.get_json()["id"]
    etag = created.headers["ETag"]
    assert client.get(f"/fhir/Organization/{oid}", headers={"If-None-Match": etag}).status_code == 304
    assert client.get(f"/fhir/Organization/{oid}", headers={"If-None-Match": 'W/"9"'}).status_code == 200
    last_modified = created.headers["Last-Modified"]
    assert (
        client.get(f"/fhir/Organization/{oid}", headers={"If-Modified-Since": last_modified}).status_code
        == 304
    )
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get(f"/fhir/Organization/{oid}", headers={"If-Modified-Since": old}).status_code == 200


def test_structurally_invalid_resource_is_400_with_path(client):
    bad = org(telecom=[{"system": "phone", "value": "01 99 00 12 34", "rank": "first"}])
    res = post(client, bad)
    assert res.status_code == 400
    issue = res.get_json()["issue"][0]
    assert issue["expression"][0].startswith("Organization.telecom[0].rank")
    unknown = post(client, org(nonsense=True))
    assert unknown.status_code == 400
    assert "Organization.nonsense" in unknown.get_json()["issue"][0]["expression"]
    assert count_rows(client) == (0, 0)


def test_wrong_resource_type_in_body_is_400(client):
    res = client.post("/fhir/Organization", json={"resourceType": "Location"}, headers={"Content-Type": FHIR})
    assert res.status_code == 400
    assert count_rows(client) == (0, 0)
