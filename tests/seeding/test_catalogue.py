"""The seed's SOS codes are exactly those the terminology CodeSystems publish."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhirsrv.seeding import catalogue

TERMINOLOGY = Path(__file__).resolve().parents[2] / "terminology"
SEED_CODES = {
    "sos-category": {code: display for code, (display, _) in catalogue.CATEGORIES.items()}
    | {code: display for _, children in catalogue.CATEGORIES.values() for code, display in children},
    "sos-audience": catalogue.AUDIENCE,
    "sos-age-group": catalogue.AGE_GROUP,
    "sos-care-place": catalogue.CARE_PLACE,
    "sos-care-phase": catalogue.CARE_PHASE,
    "sos-access-mode": catalogue.ACCESS_MODE,
    "sos-pathway": catalogue.PATHWAY,
    "sos-structure-type": catalogue.STRUCTURE_TYPE,
}


def _concepts(concepts: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for concept in concepts:
        out[concept["code"]] = concept.get("display", "")
        out |= _concepts(concept.get("concept", []))
    return out


@pytest.mark.parametrize("cs_id", sorted(SEED_CODES))
def test_codes_and_displays_match_the_codesystem(cs_id: str):
    path = TERMINOLOGY / f"CodeSystem-{cs_id}.json"
    if not path.exists():
        pytest.skip(f"terminology/{path.name} is not built yet")
    published = _concepts(json.loads(path.read_text(encoding="utf-8")).get("concept", []))
    assert published == SEED_CODES[cs_id]
