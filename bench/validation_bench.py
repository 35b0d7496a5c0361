"""Cost of profile validation per resource, against the bare fhir.resources parse.

For each example in profiles/examples/, times (median of N runs) the R4B model parse alone,
then the profile validation against the resource's SOS profile (snapshots already cached, as
in a running server), and reports the ratio profile/parse. The issue's target is <= 3x.

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

ROOT = Path(__file__).resolve().parents[1]


def _median_seconds(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


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
        rows.append(
            {
                "example": path.stem,
                "parse_ms": round(parse * 1000, 3),
                "profile_ms": round(profile * 1000, 3),
                "ratio": round(profile / parse, 2),
            }
        )
    for row in rows:
        print(
            f"{row['example']:48} parse {row['parse_ms']:7.3f} ms  profile {row['profile_ms']:7.3f} ms  x{row['ratio']}"
        )
    print(f"median ratio: x{statistics.median(r['ratio'] for r in rows):.2f}")
    if args.out:
        args.out.write_text(json.dumps({"runs": args.runs, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
