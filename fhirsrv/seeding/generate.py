"""`fhirsrv seed generate`: a directory of about N resources shaped like the demo region.

Structure kinds keep the demo region's proportions (shape.TYPES[...].brittany); each structure
settles in a département drawn in proportion to its population, then in one of its communes
drawn with weight population ** exponent of its kind, so hospitals gather in towns and MSP
spread into the countryside, in every département.
Offers, axes and lifecycle states are drawn exactly as for the demo region (draw.py). Resources
are streamed to NDJSON as they are made: memory does not grow with N.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections import Counter
from pathlib import Path

from fhirsrv.seeding.communes import FRANCE, load_communes
from fhirsrv.seeding.draw import draw_lifecycle, draw_status, draw_structure
from fhirsrv.seeding.model import Commune
from fhirsrv.seeding.output import NdjsonWriter
from fhirsrv.seeding.resources import structure_resources
from fhirsrv.seeding.shape import TYPES

REGIONAL_VALIDATOR = "DSRC (validation régionale)"
TERRITORIAL_VALIDATOR = "3C / DAC (validation territoriale)"


class CommunePicker:
    """Weighted draws of communes, as the demo region does: a département in proportion to its
    population, then a commune of it with weight population ** exponent. Drawing the commune
    nationally instead would send most hospitals to Paris."""

    def __init__(self, communes: list[Commune]) -> None:
        self.by_departement: dict[str, list[Commune]] = {}
        for commune in communes:
            self.by_departement.setdefault(commune.departement, []).append(commune)
        self.departements = sorted(self.by_departement)
        self._departement_table = list(
            itertools.accumulate(sum(c.population for c in self.by_departement[d]) for d in self.departements)
        )
        # Built up front, not on first use: memory is then the same for 1k and 1M resources.
        self._tables = {
            (dep, exponent): list(itertools.accumulate(max(c.population, 1) ** exponent for c in members))
            for dep, members in self.by_departement.items()
            for exponent in {shape.population_exponent for shape in TYPES.values()}
        }

    def pick(self, rng: random.Random, exponent: float) -> Commune:
        table = self._departement_table
        dep = self.departements[bisect.bisect_right(table, rng.random() * table[-1])]
        communes = self.by_departement[dep]
        weights = self._tables[(dep, exponent)]
        return communes[bisect.bisect_right(weights, rng.random() * weights[-1])]

    def neighbour(self, rng: random.Random, commune: Commune) -> Commune | None:
        """Another commune of the same département (a second site), if there is one."""
        others = [c for c in self.by_departement[commune.departement] if c.insee != commune.insee]
        return rng.choice(others) if others else None


def generate(resources: int, seed: int, out_dir: Path, communes_path: Path | None = None) -> dict[str, int]:
    """Write about `resources` resources as NDJSON files in `out_dir`; return the count per type.

    Same (resources, seed) → same bytes. Stops after the structure that reaches the target, so the
    total exceeds `resources` by less than one structure's worth (at most a few tens)."""
    picker = CommunePicker(load_communes(communes_path or FRANCE))
    kinds = list(TYPES)
    kind_weights = list(itertools.accumulate(TYPES[k].brittany for k in kinds))
    rng = random.Random(seed)
    numbers: Counter[str] = Counter()
    with NdjsonWriter(out_dir) as writer:
        while sum(writer.counts.values()) < resources:
            kind = kinds[bisect.bisect_right(kind_weights, rng.random() * kind_weights[-1])]
            shape = TYPES[kind]
            commune = picker.pick(rng, shape.population_exponent)
            numbers[commune.departement] += 1
            key = f"{commune.departement}-{numbers[commune.departement]:06d}"
            own = random.Random(f"{seed}:{key}")
            lifecycle = draw_lifecycle(
                own, draw_status(own), regional=REGIONAL_VALIDATOR, territorial=TERRITORIAL_VALIDATOR
            )
            second = picker.neighbour(own, commune) if own.random() < shape.second_site else None
            structure = draw_structure(own, kind, key, commune, lifecycle, second_commune=second)
            for res in structure_resources(structure):
                writer.write(res)
        return dict(writer.counts)
