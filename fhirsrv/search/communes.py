"""Where a French commune is, by its INSEE code: the town halls of the shipped commune lists
(seed/data/communes-*.csv, see seed/data/README.md), for searches that name a commune instead of
a point (the ROR's `near-insee-code`).

Read once, on the first search that needs it: a few thousand rows, kept in memory.
"""

from __future__ import annotations

import csv
from pathlib import Path


class CommunePositions:
    """INSEE commune code -> (latitude, longitude) of its town hall (WGS 84)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._positions: dict[str, tuple[float, float]] | None = None

    def position(self, insee: str) -> tuple[float, float] | None:
        if self._positions is None:
            self._positions = self._load()
        return self._positions.get(insee)

    def _load(self) -> dict[str, tuple[float, float]]:
        # The lists overlap (every Breton commune, the larger ones of France): same code, same row.
        positions: dict[str, tuple[float, float]] = {}
        for path in sorted(self.data_dir.glob("communes-*.csv")):
            with path.open(encoding="utf-8", newline="") as fh:
                for row in csv.DictReader(fh):
                    positions[row["insee"]] = (float(row["lat"]), float(row["lon"]))
        return positions
