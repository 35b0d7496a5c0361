"""What the benchmarks that generate a directory share: their common options, the header of
their results (when, how big, on what machine) and where the results are written."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def directory_parser(doc: str | None, *, resources: int, loaded_help: str) -> argparse.ArgumentParser:
    """--resources, --postgres, --no-sqlite and --loaded, the options of every benchmark that
    measures a generated directory on both back-ends (or a PostgreSQL one loaded earlier)."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--resources", type=int, default=resources)
    parser.add_argument("--postgres", default=os.environ.get("FHIRSRV_BENCH_DATABASE_URL"))
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--loaded", help=loaded_help)
    return parser


def header(resources: int, **more: object) -> dict:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "resources": resources,
        **more,
        "machine": f"{os.cpu_count()} cores",
    }


def write_results(name: str, results: dict) -> Path:
    """bench/results/<name>.json, and the same on standard output."""
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return out
