"""Towns for "near a town" and the départements' outlines, from the shipped communes."""

from __future__ import annotations

from pathlib import Path

from fhirsrv.web.places import Communes, convex_hull

DATA = Path(__file__).resolve().parents[2] / "seed" / "data"


def test_a_town_resolves_by_label_name_postcode_or_insee_code_and_homonyms_are_all_offered():
    communes = Communes(DATA)
    assert [c.insee for c in communes.resolve("Brest (29200)")] == ["29019"]
    assert [c.insee for c in communes.resolve("brest")] == ["29019"]
    assert [c.insee for c in communes.resolve("29019")] == ["29019"]
    assert "29019" in [c.insee for c in communes.resolve("29200")]
    assert sorted(c.departement for c in communes.resolve("Plouhinec")) == ["29", "56"]
    assert communes.resolve("Quimperlé") == communes.resolve("QUIMPERLE")
    assert communes.resolve("Atlantide") == []


def test_the_covered_departements_are_the_regions_shipped_whole():
    assert Communes(DATA).regional_departements == ["22", "29", "35", "56", "94"]


def test_the_hull_holds_every_point_and_drops_the_inner_ones():
    square = [(0.0, 0.0), (2.0, 0.0), (2.0, 2.0), (0.0, 2.0), (1.0, 1.0), (1.0, 0.0)]
    assert sorted(convex_hull(square)) == [(0.0, 0.0), (0.0, 2.0), (2.0, 0.0), (2.0, 2.0)]
