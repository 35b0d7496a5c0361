"""The committed commune lists (seed/data/communes-*.csv, built by seed/build_communes.py)."""

from __future__ import annotations

import csv
from pathlib import Path

from fhirsrv.seeding.model import Commune
from fhirsrv.settings import PROJECT_ROOT

DATA_DIR = PROJECT_ROOT / "seed" / "data"
FRANCE = DATA_DIR / "communes-france.csv"
BRITTANY = DATA_DIR / "communes-bretagne.csv"
DAC94_OUEST = DATA_DIR / "communes-dac94ouest.csv"


def load_communes(path: Path) -> list[Commune]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [
            Commune(
                insee=row["insee"],
                name=row["name"],
                name_of=row["name_of"],
                departement=row["departement"],
                postal_code=row["postal_code"],
                lat=float(row["lat"]),
                lon=float(row["lon"]),
                population=int(row["population"]),
            )
            for row in csv.DictReader(fh)
        ]
