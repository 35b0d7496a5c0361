"""PATCH with JSON Patch: applied, validated, versioned; bad patches change nothing."""

from __future__ import annotations

from tests.api.helpers import count_rows, org, post

PATCH = "application/json-patch+json"


def _patch(client, path, ops, **headers):  # type: ignore[no-untyped-def]
    return client.patch(path, json=ops, headers={"Content-Type": PATCH, **headers})


def test_json_patch_updates_and_bumps_version(client):
    oid = post(client, org("Avant")).get_json()["id"]
    res = _patch(client, f"/fhir/Organization/{oid}", [{"op": "replace", "path": "/name", "value": "Après"}])
    assert res.status_code == 200
    assert res.get_json()["name"] == "Après" and res.headers["ETag"] == 'W/"2"'
    history = client.get(f"/fhir/Organization/{oid}/_history").get_json()
    assert history["entry"][0]["request"]["method"] == "PATCH"


def test_patch_errors_leave_resource_untouched(client):
    oid = post(client, org("Stable")).get_json()["id"]
    path = f"/fhir/Organization/{oid}"
    failed_test = _patch(client, path, [{"op": "test", "path": "/name", "value": "Autre"}])
    assert failed_test.status_code == 422
    missing_path = _patch(client, path, [{"op": "remove", "path": "/alias"}])
    assert missing_path.status_code == 422
    invalid_doc = _patch(client, path, {"op": "replace"})
    assert invalid_doc.status_code == 400
    makes_invalid = _patch(client, path, [{"op": "add", "path": "/active", "value": "maybe"}])
    assert makes_invalid.status_code == 400
    changes_id = _patch(client, path, [{"op": "replace", "path": "/id", "value": "other"}])
    assert changes_id.status_code == 422
    stale = _patch(client, path, [{"op": "replace", "path": "/name", "value": "x"}], **{"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    wrong_type = client.patch(path, json=[], headers={"Content-Type": "application/fhir+json"})
    assert wrong_type.status_code == 415
    assert client.get(path).get_json()["name"] == "Stable"
    assert count_rows(client) == (1, 1)


def test_patch_unknown_resource_is_404(client):
    assert _patch(client, "/fhir/Organization/none", []).status_code == 404
