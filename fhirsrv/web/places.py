"""Towns and départements for "near me / near a town": the communes shipped with the server.

The same files the search engine uses for `near-insee-code` (seed/data/communes-*.csv: every
commune of the region, the larger ones of France, with their town hall's position), so a town
the page offers is a town the API can measure from. Nothing here reads the directory's data.

The map's département outlines are drawn from them too: the convex hull of each département's
communes. That is a coarse shape (a coast's bays are filled in), but it needs no boundary file
and no network, and it is enough to tell where the markers are when no map tiles load.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

from fhirsrv.text import fold

MAX_SUGGESTIONS = 10
NATIONAL_FILE = "communes-france.csv"  # the larger communes of all France; the others are whole regions
DEPARTEMENT_NAMES: dict[str, str] = orjson.loads((Path(__file__).resolve().parent / "departements.json").read_bytes())[
    "names"
]


@dataclass(frozen=True)
class Commune:
    insee: str
    name: str
    departement: str
    postal_code: str
    lat: float
    lon: float
    population: int

    @property
    def label(self) -> str:
        """What the town field shows and reads back: unambiguous, since two communes can share a
        name but not a name and a postcode."""
        return f"{self.name} ({self.postal_code})"


class Communes:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    @cached_property
    def _all(self) -> dict[str, Commune]:
        found: dict[str, Commune] = {}
        for path in sorted(self.data_dir.glob("communes-*.csv")):
            with path.open(encoding="utf-8", newline="") as fh:
                for row in csv.DictReader(fh):
                    found[row["insee"]] = Commune(
                        row["insee"], row["name"], row["departement"], row["postal_code"],
                        float(row["lat"]), float(row["lon"]), int(row["population"] or 0),
                    )
        return found

    @cached_property
    def _by_folded_name(self) -> list[tuple[str, Commune]]:
        # Largest first: "Saint-…" typed in full should offer the towns people mean first.
        ranked = sorted(self._all.values(), key=lambda c: (-c.population, c.name))
        return [(fold(c.name).replace("-", " "), c) for c in ranked]

    def by_insee(self, insee: str) -> Commune | None:
        return self._all.get(insee)

    def departements(self) -> list[str]:
        return sorted({c.departement for c in self._all.values()})

    @cached_property
    def regional_departements(self) -> list[str]:
        """The départements the directory covers: those whose every commune is shipped (the
        regions' own files), else all of them."""
        found: set[str] = set()
        for path in sorted(self.data_dir.glob("communes-*.csv")):
            if path.name == NATIONAL_FILE:
                continue
            with path.open(encoding="utf-8", newline="") as fh:
                found.update(row["departement"] for row in csv.DictReader(fh))
        return sorted(found) or self.departements()

    def suggest(self, typed: str, limit: int = MAX_SUGGESTIONS) -> list[Commune]:
        """Communes whose name starts with what was typed (accents, case and hyphens ignored),
        or whose postcode does; the largest first."""
        key = fold(typed).replace("-", " ").strip()
        if not key:
            return []
        if key.isdigit():
            return [c for _, c in self._by_folded_name if c.postal_code.startswith(key)][:limit]
        return [c for name, c in self._by_folded_name if name.startswith(key)][:limit]

    def resolve(self, typed: str) -> list[Commune]:
        """The communes a typed town means: one when it is clear, several to choose from, none
        when unknown. Takes a suggestion's label ("Brest (29200)"), a name, a postcode or an
        INSEE code."""
        text = typed.strip()
        if not text:
            return []
        if text.endswith(")") and "(" in text:
            name, _, code = text[:-1].rpartition("(")
            key, code = fold(name).replace("-", " ").strip(), code.strip()
            exact = [c for n, c in self._by_folded_name if n == key and c.postal_code == code]
            if exact:
                return exact
            text = name
        if text.isdigit() and len(text) == 5:
            if text in self._all:
                return [self._all[text]]
            return [c for _, c in self._by_folded_name if c.postal_code == text]
        key = fold(text).replace("-", " ").strip()
        same = [c for name, c in self._by_folded_name if name == key]
        return same

    def outlines(self) -> dict[str, Any]:
        """A GeoJSON FeatureCollection: per département, the hull of its communes."""
        return self._outlines

    @cached_property
    def _outlines(self) -> dict[str, Any]:
        points: dict[str, list[tuple[float, float]]] = {}
        for c in self._all.values():
            points.setdefault(c.departement, []).append((c.lon, c.lat))
        features = []
        for dep, pts in sorted(points.items()):
            hull = convex_hull(pts)
            if len(hull) < 3:
                continue
            ring = [[round(x, 4), round(y, 4)] for x, y in hull + hull[:1]]
            features.append(
                {
                    "type": "Feature",
                    "properties": {"departement": dep},
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                }
            )
        return {"type": "FeatureCollection", "features": features}


def convex_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Andrew's monotone chain, counter-clockwise (GeoJSON's exterior ring order)."""
    pts = sorted(set(points))
    if len(pts) < 3:
        return pts

    def cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]
