"""Where the CPU of a bulk load's preparation goes: `_prepare_chunk` of the load pipeline (JSON
parsing, structural validation, stamping, index rows), in this process, on a generated directory.

It reports CPU milliseconds per resource (time.process_time: the machine may be busy, the
process's own CPU is what the code costs) measured three ways, on the same resources:
- the whole preparation, without a profiler, then under cProfile (which slows it down);
- validation (validate_structure) and index extraction (index_tuples) timed alone, without a
  profiler, and their share of the whole;
and writes the profiled run's functions sorted by cumulative time, with those figures on top, to
bench/results/load_profile.txt.

Usage: python bench/load_profile.py [--resources 6000] [--seed 1] [--dir DIR] [--top 40] [--out FILE]
(--dir: a directory `fhirsrv seed generate` wrote; without it one is generated in a temporary
folder, with --resources and --seed.)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from fhirsrv.interactions import load_pipeline
from fhirsrv.resource_types import SUPPORTED_TYPES
from fhirsrv.search.registry import build_registry
from fhirsrv.seeding.generate import generate
from fhirsrv.settings import Settings
from fhirsrv.storage.jsonfmt import utcnow
from fhirsrv.storage.repository import stamp
from fhirsrv.validation.structure import validate_structure

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _lines(folder: Path, limit: int) -> list[tuple[str, list[tuple[int, str]]]]:
    """(file, numbered lines) of the directory's NDJSON files, `limit` lines in all, spread over
    the files in proportion (a generated directory is mostly HealthcareService)."""
    files = sorted(folder.glob("*.ndjson"))
    numbered = {
        f: [(n, line) for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if line]
        for f in files
    }
    total = sum(len(v) for v in numbered.values())
    out = []
    for f, lines in numbered.items():
        share = max(1, round(len(lines) * limit / total)) if total > limit else len(lines)
        out.append((str(f), lines[:share]))
    return out


def _init_state(settings: Settings) -> None:
    """What a worker process holds (load_pipeline._init_worker), in this process."""
    load_pipeline._state = load_pipeline._WorkerState(
        build_registry(settings, SUPPORTED_TYPES),
        settings.base_url.rstrip("/"),
        Settings.canonical_base,
        settings.canonical_base.rstrip("/"),
    )


def _prepare_all(work: list[tuple[str, list[tuple[int, str]]]]) -> int:
    now = utcnow()
    count = 0
    for path, lines in work:
        for start in range(0, len(lines), load_pipeline.CHUNK):
            chunk = lines[start : start + load_pipeline.CHUNK]
            result = load_pipeline._prepare_chunk(path, chunk, now, [str(uuid.uuid4()) for _ in chunk])
            if result.error:
                raise SystemExit(f"the directory does not load: {result.error}")
            count += len(result.items)
    return count


def _cpu_ms(fn: Callable[[], Any]) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1000


def _parts(work: list[tuple[str, list[tuple[int, str]]]]) -> dict[str, float]:
    """CPU ms of validation alone and of index extraction alone over the same resources."""
    state = load_pipeline._state
    assert state is not None
    resources = [orjson.loads(line) for _, lines in work for _, line in lines]
    now = utcnow()
    stamped = [stamp(res, res.get("id") or "x", 1, now) for res in resources]
    validation = _cpu_ms(lambda: [validate_structure(res) for res in resources])
    indexing = _cpu_ms(
        lambda: [load_pipeline.index_tuples(state.registry, res, state.base_url) for res in stamped]
    )
    parsing = _cpu_ms(lambda: [orjson.loads(line) for _, lines in work for _, line in lines])
    return {"validation": validation, "indexing": indexing, "parsing": parsing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resources", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--out", type=Path, default=RESULTS / "load_profile.txt")
    args = parser.parse_args()
    settings = Settings.from_env(database_url="sqlite://")  # no database is opened
    _init_state(settings)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir
        if folder is None:
            folder = Path(tmp)
            generate(resources=args.resources, seed=args.seed, out_dir=folder)
        work = _lines(folder, args.resources)
        count = sum(len(lines) for _, lines in work)
        _prepare_all(work)  # warm: the registry's compiled expressions, the shapes, the caches
        plain = _cpu_ms(lambda: _prepare_all(work))
        parts = _parts(work)
        profiler = cProfile.Profile()
        profiled = _cpu_ms(lambda: profiler.runcall(_prepare_all, work))
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(args.top)
    summary = {
        "resources": count,
        "cpu_ms_per_resource": round(plain / count, 4),
        "cpu_ms_per_resource_profiled": round(profiled / count, 4),
        "validation_ms_per_resource": round(parts["validation"] / count, 4),
        "indexing_ms_per_resource": round(parts["indexing"] / count, 4),
        "parsing_ms_per_resource": round(parts["parsing"] / count, 4),
        "validation_share": round(parts["validation"] / plain, 3),
        "indexing_share": round(parts["indexing"] / plain, 3),
        "profiled_validation_share": round(
            _cumulative(stats, "validate_structure") / _cumulative(stats, "_prepare_all"), 3
        ),
        "profiled_indexing_share": round(
            _cumulative(stats, "index_tuples") / _cumulative(stats, "_prepare_all"), 3
        ),
        "cores": os.cpu_count(),
    }
    head = json.dumps(summary, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    listing = text.getvalue().replace(str(ROOT) + "/", "")  # paths relative to the project
    listing = re.sub(r"\S*/site-packages/", "", listing)
    args.out.write_text(f"{__doc__.splitlines()[0]}\n\n{head}\n\n{listing}", encoding="utf-8")
    print(head)


def _cumulative(stats: pstats.Stats, function: str) -> float:
    """Cumulative seconds of the function of that name (summed if several share it)."""
    entries = stats.stats.items()  # type: ignore[attr-defined]
    return sum(ct for (_, _, name), (_, _, _, ct, _) in entries if name == function)


if __name__ == "__main__":
    main()
