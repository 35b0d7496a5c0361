"""Small builders for test resources and requests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

FHIR = "application/fhir+json"
IDENT_SYSTEM = "https://sos.example.org/fhir/sid/offre"
# A published structure: anonymous callers may read it.
PUBLISHED_ORGANIZATION: dict[str, Any] = {
    "resourceType": "Organization",
    "id": "o1",
    "name": "Ligue contre le cancer",
    "extension": [
        {
            "url": "https://sos.example.org/fhir/StructureDefinition/sos-entry-lifecycle",
            "extension": [{"url": "status", "valueCode": "published"}],
        }
    ],
}

# A SearchParameter a test adds at run time: the other names of a structure.
ALIAS_SEARCH_PARAMETER: dict[str, Any] = {
    "resourceType": "SearchParameter",
    "id": "test-organization-alias",
    "url": "https://sos.example.org/fhir/SearchParameter/test-organization-alias",
    "name": "alias",
    "status": "active",
    "description": "Search on the other names of a structure",
    "code": "alias",
    "base": ["Organization"],
    "type": "string",
    "expression": "Organization.alias",
}


def org(name: str = "Ligue contre le cancer 29", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Organization", "name": name, **extra}


def service(ident: str, name: str = "Consultation douleur", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "HealthcareService",
        "identifier": [{"system": IDENT_SYSTEM, "value": ident}],
        "name": name,
        **extra,
    }


def post(client, res: dict[str, Any], **headers: str):  # type: ignore[no-untyped-def]
    return client.post(f"/fhir/{res['resourceType']}", json=res, headers={"Content-Type": FHIR, **headers})


def put(client, res: dict[str, Any], **headers: str):  # type: ignore[no-untyped-def]
    return client.put(
        f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers={"Content-Type": FHIR, **headers}
    )


def count_rows(client) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(current resources, versions) in the database behind the client's app."""
    from sqlalchemy import func, select

    from fhirsrv.storage.schema import resource, resource_version

    engine = client.application.extensions["fhirsrv"].engine
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(resource)).scalar_one(),
            conn.execute(select(func.count()).select_from(resource_version)).scalar_one(),
        )


@contextmanager
def unlimited_app_with_admin_token(db_url: str, populate: Callable[[Any], None]) -> Iterator[tuple[Any, str]]:
    """An app with authorization on and no rate limit (a fuzz sends thousands of requests), its
    content written by `populate(services)`, and a regional administrator's bearer token."""
    from fhirsrv.app import create_app
    from fhirsrv.auth.clients import add_client
    from fhirsrv.settings import Settings

    settings = Settings.from_env(
        database_url=db_url,
        load_demo=False,
        base_url="http://fhir.test/fhir",
        auth=True,
        rate_limit_anonymous=0,
        rate_limit_client=0,
    )
    app = create_app(settings)
    services = app.extensions["fhirsrv"]
    populate(services)
    with services.engine.begin() as conn:
        client, secret = add_client(conn, "fuzz", "system/*.cruds", "regional-admin")
    token = app.test_client().post(
        "/fhir/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret)
    )
    try:
        yield app, token.get_json()["access_token"]
    finally:
        services.engine.dispose()


def auth_app(db_url: str, base_url: str | None = "http://fhir.test/fhir") -> Any:
    """An app with authorization on, no rate limit, only claimed profiles enforced, and tokens
    that outlive a slow run; `base_url` None: links and tokens name the base a request reached
    (a live server's)."""
    from fhirsrv.app import create_app
    from fhirsrv.settings import Settings

    settings = Settings.from_env(
        database_url=db_url,
        load_demo=False,
        base_url=base_url,
        auth=True,
        rate_limit_anonymous=0,
        rate_limit_client=0,
        enforce_sos_profiles="claimed-only",
        token_lifetime=3600,
    )
    return create_app(settings)


def token_headers(
    app: Any, role: str, scopes: str = "system/*.cruds", base: str | None = None, **client: Any
) -> dict[str, str]:
    """A bearer token of a new client of this role (`client`: add_client's departements,
    organization…), from the token endpoint of `base` (a live server: a token is valid at the
    base that issued it), else through the test client."""
    import base64
    import json
    import urllib.request

    from fhirsrv.auth.clients import add_client

    services = app.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        registered, secret = add_client(conn, f"test {role}", scopes, role, **client)
    if base is None:
        answer = app.test_client().post(
            "/fhir/token", data={"grant_type": "client_credentials"}, auth=(registered.client_id, secret)
        )
        assert answer.status_code == 200, answer.get_json()
        token = answer.get_json()["access_token"]
    else:
        credentials = base64.b64encode(f"{registered.client_id}:{secret}".encode()).decode()
        request = urllib.request.Request(
            f"{base}/token",
            data=b"grant_type=client_credentials",
            headers={"Authorization": f"Basic {credentials}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            token = json.loads(response.read())["access_token"]
    return {"Authorization": f"Bearer {token}"}
