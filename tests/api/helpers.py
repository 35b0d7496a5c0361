"""Small builders for test resources and requests."""

from __future__ import annotations

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
