"""A small ROR-shaped directory for search tests: two structures, their sites and offers."""

from __future__ import annotations

from typing import Any

from fhirsrv.access.principal import SERVER
from fhirsrv.interactions import writes
from fhirsrv.interactions.context import Services
from fhirsrv.storage.engine import write_transaction

R211 = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"
R244 = "https://mos.esante.gouv.fr/NOS/TRE_R244-CategorieOrganisation/FHIR/TRE-R244-CategorieOrganisation"
R338 = "https://mos.esante.gouv.fr/NOS/TRE_R338-ModaliteAccueil/FHIR/TRE-R338-ModaliteAccueil"
R30 = "https://mos.esante.gouv.fr/NOS/TRE_R30-RegionOM/FHIR/TRE-R30-RegionOM"
OFFER = "https://sos.example.org/fhir/sid/offre"
FINESS = "http://finess.sante.gouv.fr"


def org(oid: str, name: str, finess: str, postal: str, type_code: str = "355") -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": oid,
        "name": name,
        "identifier": [{"system": FINESS, "value": finess}],
        "type": [{"coding": [{"system": R244, "code": type_code}]}],
        "address": [{"city": "X", "postalCode": postal}],
    }


def loc(lid: str, name: str, org_id: str, lat: float, lon: float, postal: str) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": lid,
        "name": name,
        "status": "active",
        "identifier": [{"system": OFFER, "value": lid.upper()}],
        "managingOrganization": {"reference": f"Organization/{org_id}"},
        "address": {"postalCode": postal},
        "position": {"latitude": lat, "longitude": lon},
    }


def hs(
    sid: str, name: str, org_id: str, loc_id: str, r211: str, r244: str, r338: str, region: str, **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "HealthcareService",
        "id": sid,
        "name": name,
        "meta": {"tag": [{"system": R30, "code": region}]},
        "identifier": [{"system": OFFER, "value": sid.upper()}],
        "providedBy": {"reference": f"Organization/{org_id}"},
        "location": [{"reference": f"Location/{loc_id}"}],
        "category": [{"coding": [{"system": R244, "code": r244}]}],
        "specialty": [{"coding": [{"system": R211, "code": r211}]}],
        "characteristic": [{"coding": [{"system": R338, "code": r338}]}],
        **extra,
    }


def resources() -> list[dict[str, Any]]:
    return [
        org("cem", "Centre Eugène Marquis", "350002812", "35042", "101"),
        org("ligue29", "Ligue contre le cancer — Comité du Finistère", "290000017", "29000", "355"),
        loc("loc-rennes", "Site de Rennes", "cem", 48.1173, -1.6778, "35042"),
        loc("loc-brest", "Antenne de Brest", "ligue29", 48.3904, -4.4861, "29200"),
        loc("loc-quimper", "Maison de la Ligue, Quimper", "ligue29", 47.9960, -4.1020, "29000"),
        hs(
            "hs-douleur",
            "Consultation douleur chronique",
            "cem",
            "loc-rennes",
            "004",
            "317",
            "01",
            "53",
            comment="Hypnoanalgésie possible",
        ),
        hs("hs-dietetique", "Diététique et nutrition", "cem", "loc-rennes", "040", "317", "02", "53"),
        hs("hs-apa", "Activité physique adaptée", "ligue29", "loc-brest", "330", "355", "01", "53"),
        hs(
            "hs-psy",
            "Soutien psychologique des proches",
            "ligue29",
            "loc-quimper",
            "289",
            "355",
            "03",
            "53",
            active=False,
        ),
        hs(
            "hs-palliatif", "Équipe mobile de soins palliatifs", "cem", "loc-rennes", "170", "317", "02", "52"
        ),
        {"resourceType": "Practitioner", "id": "pr-1", "name": [{"family": "Le Goff", "given": ["Anne"]}]},
        {
            "resourceType": "PractitionerRole",
            "id": "role-1",
            "organization": {"reference": "Organization/cem"},
            "practitioner": {"reference": "Practitioner/pr-1"},
            "healthcareService": [{"reference": "HealthcareService/hs-douleur"}],
        },
    ]


def load(services: Services, items: list[dict[str, Any]] | None = None) -> None:
    with write_transaction(services.engine) as conn:
        for res in items or resources():
            writes.create(services, conn, res, res["id"], actor=SERVER)


def match_ids(client: Any, query: str) -> list[str]:
    """The ids of a search's matches, in the server's order (includes and outcomes left out)."""
    res = client.get(query)
    assert res.status_code == 200, res.get_json()
    return [e["resource"]["id"] for e in res.get_json().get("entry", []) if e["search"]["mode"] == "match"]
