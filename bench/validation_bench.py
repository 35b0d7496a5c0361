"""Cost of profile validation per resource, against the bare fhir.resources parse.

For each example in profiles/examples/, times (median of N runs) the R4B model parse alone,
then the profile validation against the resource's SOS profile (snapshots already cached, as
in a running server), and reports the ratio profile/parse. The issue's target is <= 3x.
It also times the structural check every write makes (median and p95): the walk of
fhirsrv/validation/jsonformat.py, which replaced that parse.

Times are the process's CPU time (time.process_time), not wall time: the machine running the
benchmarks is often busy with other work, which wall time would measure too.

Usage: python bench/validation_bench.py [--runs 200] [--out bench/results/validation_bench.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from fhir.resources.R4B import get_fhir_model_class

from fhirsrv.validation import default_validator, validate_resource
from fhirsrv.validation.structure import validate_structure

ROOT = Path(__file__).resolve().parents[1]


def _samples(fn, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.process_time()
        fn()
        samples.append(time.process_time() - start)
    return samples


def _median_seconds(fn, runs: int) -> float:
    return statistics.median(_samples(fn, runs))


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    validator = default_validator()
    rows = []
    for path in sorted((ROOT / "profiles" / "examples").glob("*.json")):
        res = json.loads(path.read_text(encoding="utf-8"))
        model = get_fhir_model_class(res["resourceType"])
        profiles = res["meta"]["profile"]
        validate_resource(res, profiles, validator)  # warm the snapshot cache
        parse = _median_seconds(lambda res=res, model=model: model.model_validate(res), args.runs)
        profile = _median_seconds(lambda res=res, p=profiles: validate_resource(res, p, validator), args.runs)
        structure = _samples(lambda res=res: validate_structure(res), args.runs)
        rows.append(
            {
                "example": path.stem,
                "parse_ms": round(parse * 1000, 3),
                "profile_ms": round(profile * 1000, 3),
                "ratio": round(profile / parse, 2),
                "structure_ms": round(statistics.median(structure) * 1000, 3),
                "structure_p95_ms": round(_p95(structure) * 1000, 3),
            }
        )
    for row in rows:
        print(
            f"{row['example']:48} parse {row['parse_ms']:7.3f} ms  profile {row['profile_ms']:7.3f} ms  x{row['ratio']}"
            f"  structure {row['structure_ms']:7.3f} ms (p95 {row['structure_p95_ms']:7.3f})"
        )
    print(f"median ratio: x{statistics.median(r['ratio'] for r in rows):.2f}")
    print(
        f"structure: median {statistics.median(r['structure_ms'] for r in rows):.3f} ms,"
        f" parse: median {statistics.median(r['parse_ms'] for r in rows):.3f} ms"
    )
    if args.out:
        args.out.write_text(json.dumps({"runs": args.runs, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
