"""The ROR guide's own example instances load through the write path and are searchable."""

from __future__ import annotations

from pathlib import Path

from fhirsrv.interactions.load import load_paths

EXAMPLES = Path(__file__).resolve().parents[1] / "validation" / "fixtures" / "ror-examples"
R211 = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"


def test_ror_examples_load_and_are_found(app, client):
    report = load_paths(app.extensions["fhirsrv"], [EXAMPLES])
    assert sum(report.counts.values()) == 4
    found = client.get(
        f"/fhir/HealthcareService?specialty={R211}|183&_include=HealthcareService:organization"
    )
    bundle = found.get_json()
    assert [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"] == [
        "ror-healthcareservice-exemple"
    ]
    assert client.get("/fhir/Organization?name=quietude").get_json()["total"] == 1
    for res_type, res_id in (
        ("Location", "ror-location-exemple"),
        ("PractitionerRole", "ror-practitionerrole-exemple"),
    ):
        assert client.get(f"/fhir/{res_type}/{res_id}").status_code == 200
