"""ConceptMap/$closure keeps state per OAuth client: with authorization on, a caller without a
token gets 401 and no table; each client gets its own table under the same name."""

from __future__ import annotations

from sqlalchemy import func, select

from fhirsrv.interactions.load import load_paths
from fhirsrv.storage.schema import metadata
from tests.auth.conftest import FHIR, canonical


def _closure(web, headers, *codes: str):  # type: ignore[no-untyped-def]
    params = [{"name": "name", "valueString": "dcc"}]
    system = canonical("CodeSystem/sos-category")
    params += [{"name": "concept", "valueCoding": {"system": system, "code": c}} for c in codes]
    return web.post(
        "/fhir/$closure", json={"resourceType": "Parameters", "parameter": params}, headers=headers
    )


def test_closure_needs_a_client_and_keeps_one_table_per_client(auth_app, web, clients):
    services = auth_app.extensions["fhirsrv"]
    load_paths(services, [services.settings.terminology_dir])
    anonymous = _closure(web, {"Content-Type": FHIR})
    assert anonymous.status_code == 401
    assert anonymous.get_json()["resourceType"] == "OperationOutcome"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    # Credentials come first: an anonymous caller learns nothing from its input being judged.
    malformed = web.post(
        "/fhir/$closure",
        json={"resourceType": "Parameters", "parameter": [{"name": "concept", "valueString": "x"}]},
        headers={"Content-Type": FHIR},
    )
    assert malformed.status_code == 401
    tables = metadata.tables["closure_table"]
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tables)).scalar_one() == 0

    first = clients.headers("regional-admin", scopes="system/*.rs")
    second = clients.headers("regional-admin", scopes="system/*.rs")
    assert _closure(web, first).status_code == 200
    assert _closure(web, second).status_code == 200
    found = _closure(web, first, "douleur", "douleur-consultation-douleur-chronique").get_json()
    assert found["group"][0]["element"][0]["code"] == "douleur-consultation-douleur-chronique"
    again = _closure(web, second, "douleur").get_json()  # the second client's table is its own
    assert again["resourceType"] == "ConceptMap"
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tables)).scalar_one() == 2
