"""The generator: about N resources, shaped like the demo region, over all of France."""

from __future__ import annotations

import csv
import math
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhirsrv.seeding.communes import FRANCE
from fhirsrv.seeding.generate import generate
from fhirsrv.seeding.resources import CS, RESOURCE_TYPES
from fhirsrv.seeding.shape import LIFECYCLE, TYPES
from tests.seeding.helpers import codes, dangling, lifecycle, read_dir


def _bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.ndjson"))}


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
    out = tmp_path_factory.mktemp("gen30k")
    counts = generate(resources=30_000, seed=11, out_dir=out)
    return counts, read_dir(out)


@pytest.mark.parametrize("target", [1_000, 12_345])
def test_writes_about_the_requested_number_of_resources(tmp_path: Path, target: int):
    counts = generate(resources=target, seed=5, out_dir=tmp_path)
    assert target <= sum(counts.values()) < target + 60
    written = read_dir(tmp_path)
    assert {t: len(written[t]) for t in written} == counts
    assert [p.name for p in sorted(tmp_path.glob("*.ndjson"))] == [
        f"{i:02d}-{t}.ndjson" for i, t in enumerate(RESOURCE_TYPES, 1)
    ]


def test_same_seed_same_bytes_other_seed_other_directory(tmp_path: Path):
    generate(resources=3_000, seed=42, out_dir=tmp_path / "a")
    generate(resources=3_000, seed=42, out_dir=tmp_path / "b")
    generate(resources=3_000, seed=43, out_dir=tmp_path / "c")
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    assert _bytes(tmp_path / "a") != _bytes(tmp_path / "c")


def test_rewriting_a_directory_replaces_its_files(tmp_path: Path):
    generate(resources=3_000, seed=1, out_dir=tmp_path)
    counts = generate(resources=1_000, seed=1, out_dir=tmp_path)
    assert {t: len(r) for t, r in read_dir(tmp_path).items()} == counts


def test_every_reference_resolves_and_every_resource_parses(tmp_path: Path):
    generate(resources=4_000, seed=3, out_dir=tmp_path)
    written = read_dir(tmp_path)
    assert dangling(written) == []
    for res_type, resources in written.items():
        model = get_fhir_model_class(res_type)
        for res in resources:
            model.model_validate(res)


def test_ids_never_collide_with_the_demo_region(tmp_path: Path):
    generate(resources=2_000, seed=3, out_dir=tmp_path)
    for org in read_dir(tmp_path)["Organization"]:
        assert len(org["id"].rsplit("-", 1)[1]) == 6  # org-<dep>-NNNNNN; the demo uses 4 digits


def test_structure_types_keep_the_demo_proportions(large):
    _, written = large
    kinds = Counter(codes(o["type"], f"{CS}/sos-structure-type")[0] for o in written["Organization"])
    total = sum(kinds.values())
    brittany = sum(t.brittany for t in TYPES.values())
    for code, shape in TYPES.items():
        assert abs(kinds[code] / total - shape.brittany / brittany) < 0.02, code


def test_categories_per_structure_type_follow_the_documented_probabilities(large):
    _, written = large
    kind = {
        f"Organization/{o['id']}": codes(o["type"], f"{CS}/sos-structure-type")[0]
        for o in written["Organization"]
    }
    structures = Counter(kind.values())
    offered: Counter[tuple[str, str]] = Counter()
    for service in written["HealthcareService"]:
        category = codes(service["specialty"], f"{CS}/sos-category")[0]
        offered[(kind[service["providedBy"]["reference"]], category)] += 1
    for code, shape in TYPES.items():
        n = structures[code]
        none = math.prod(1 - p for p in shape.categories.values())
        fallback = max(shape.categories, key=lambda c: shape.categories[c])
        for category, p in shape.categories.items():
            expected = p + (none if category == fallback else 0.0)
            tolerance = 4 * math.sqrt(expected * (1 - expected) / n) + 0.01  # 4 standard errors
            assert abs(offered[(code, category)] / n - expected) < tolerance, (code, category)


def test_services_per_structure_and_lifecycle_shares(large):
    counts, written = large
    assert 3.0 < counts["HealthcareService"] / counts["Organization"] < 4.2
    status: dict[str, str] = {}
    for service in written["HealthcareService"]:
        status.setdefault(service["providedBy"]["reference"], lifecycle(service)["status"])
    shares = Counter(status.values())
    for state, share in LIFECYCLE.items():
        assert abs(shares[state] / len(status) - share) < 0.02, state


def test_axes_follow_the_category_rules(large):
    _, written = large
    patients = 0
    for service in written["HealthcareService"]:
        category = codes(service["specialty"], f"{CS}/sos-category")[0]
        phases = codes(service["characteristic"], f"{CS}/sos-care-phase")
        audiences = codes(service["characteristic"], f"{CS}/sos-audience")
        assert phases and audiences
        patients += "patient" in audiences
        if category == "soins-palliatifs":
            assert "palliatif-fin-de-vie" in phases
        if category == "soutien-proches-aidants":
            assert {"proche", "aidant"} <= set(audiences)
    assert patients / len(written["HealthcareService"]) > 0.85


def test_structures_spread_over_departements_in_proportion_to_population(large):
    _, written = large
    with FRANCE.open(encoding="utf-8") as fh:
        population: Counter[str] = Counter()
        for row in csv.DictReader(fh):
            population[row["departement"]] += int(row["population"])
    deps = Counter(o["address"][0]["district"] for o in written["Organization"])
    assert len(deps) >= 95 and set(deps) <= set(population)
    total_pop, total = sum(population.values()), sum(deps.values())
    for dep, pop in population.items():
        assert abs(deps[dep] / total - pop / total_pop) < 0.01, dep


def test_memory_does_not_grow_with_the_number_of_resources(tmp_path: Path):
    def peak(n: int) -> int:
        tracemalloc.start()
        generate(resources=n, seed=9, out_dir=tmp_path / str(n))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, big = peak(1_500), peak(12_000)
    assert big - small < 1_000_000, (small, big)
