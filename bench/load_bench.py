"""Bulk load throughput of `fhirsrv load` against a bare bulk INSERT of the same rows.

Usage: python bench/load_bench.py [--resources 100000] [--postgres URL] [--no-sqlite]
The baseline inserts the same resources, already serialised, into the `resource` table with one
multi-row statement per 500: what any loader pays at the least. fhirsrv adds structural
validation, version rows and every search index.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _cpu import CpuMeter, with_application_name  # noqa: E402
from _pg import fresh_schema  # noqa: E402

HERE = Path(__file__).resolve().parent


def _fresh(url: str, schema: str) -> str:
    return fresh_schema(url, schema) if url.startswith("postgresql") else url


def bare_insert(url: str, data: Path) -> float:
    """The same rows into `resource`, at driver speed (COPY on PostgreSQL), no index rows."""
    from fhirsrv.storage import bulk
    from fhirsrv.storage.engine import make_engine
    from fhirsrv.storage.jsonfmt import utcnow
    from fhirsrv.storage.migrate import ensure_schema
    from fhirsrv.storage.schema import resource

    engine = make_engine(url)
    ensure_schema(engine)
    columns = ("res_type", "res_id", "version_id", "last_updated", "deleted", "content")
    start = time.perf_counter()
    with engine.begin() as conn:
        for path in sorted(data.glob("*.ndjson")):
            with path.open(encoding="utf-8") as handle:
                batch = []
                for line in handle:
                    res = json.loads(line)
                    batch.append((res["resourceType"], res["id"], 1, utcnow(), False, line.rstrip("\n")))
                    if len(batch) == 500:
                        bulk.insert_tuples(conn, resource, batch, columns)
                        batch = []
                bulk.insert_tuples(conn, resource, batch, columns)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


LOADER = "fhirsrv-load-bench"  # the loader's connections' application_name, for the CPU meter


def fhirsrv_load(url: str, data: Path, admin_url: str | None) -> tuple[int, float, dict]:
    """Load `data` as `fhirsrv load` does; the count, the seconds, and the CPU per resource of
    the loading process, its worker processes and (PostgreSQL) the backends it used."""
    from fhirsrv.app import build_services
    from fhirsrv.interactions.load import load_paths
    from fhirsrv.settings import Settings

    if admin_url:
        url = with_application_name(url, LOADER)
    services = build_services(Settings.from_env(database_url=url, load_demo=False, auth=False))
    with CpuMeter(admin_url, LOADER) as meter:
        start = time.perf_counter()
        report = load_paths(services, [data])
        elapsed = time.perf_counter() - start
    services.engine.dispose()
    count = sum(report.counts.values())
    assert meter.split is not None
    return count, elapsed, meter.split.per_resource_ms(count)


def _drop(url: str, schema: str, sqlite_file: Path) -> None:
    """The baseline's copy is only timed; dropping it halves the disk a 1M run needs."""
    if url.startswith("postgresql"):
        from sqlalchemy import text

        from fhirsrv.storage.engine import make_engine

        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()
    else:
        sqlite_file.unlink(missing_ok=True)


KEPT_SCHEMA = "fhirsrv_lbench_kept"  # --keep: what search_bench.py --loaded searches


def run(url: str, data: Path, tmp: str, name: str, kept: bool = False) -> dict:
    for leftover in Path(tmp).glob(f"{name}*.db*"):
        leftover.unlink()
    base_url = (
        _fresh(url, "fhirsrv_lbench_bare")
        if url.startswith("postgresql")
        else f"sqlite:///{tmp}/{name}-bare.db"
    )
    load_url = (
        _fresh(url, KEPT_SCHEMA if kept else "fhirsrv_lbench_load")
        if url.startswith("postgresql")
        else f"sqlite:///{tmp}/{name}.db"
    )
    bare = bare_insert(base_url, data)
    _drop(url, "fhirsrv_lbench_bare", Path(tmp) / f"{name}-bare.db")
    count, loaded, cpu = fhirsrv_load(load_url, data, url if url.startswith("postgresql") else None)
    return {
        "resources": count,
        "fhirsrv_load_s": round(loaded, 1),
        "fhirsrv_resources_per_s": round(count / loaded),
        "bare_insert_s": round(bare, 2),
        "bare_resources_per_s": round(count / bare),
        "ratio_vs_bare_insert": round(loaded / bare, 1),
        "cpu_ms_per_resource": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--postgres", default=os.environ.get("FHIRSRV_BENCH_DATABASE_URL"))
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the generated data and the loaded SQLite database in this directory (and the "
        f"PostgreSQL schema {KEPT_SCHEMA}), for search_bench.py --loaded",
    )
    args = parser.parse_args()
    from fhirsrv.seeding.generate import generate

    results: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores",
    }
    with tempfile.TemporaryDirectory() as scratch:
        tmp = str(args.keep) if args.keep else scratch
        data = Path(tmp) / "data"
        if args.keep and (data / "05-HealthcareService.ndjson").exists():
            print(f"reusing the data in {data}")
        else:
            generate(resources=args.resources, seed=1, out_dir=data)
        if not args.no_sqlite:
            results["sqlite"] = run("sqlite", data, tmp, "sqlite", kept=bool(args.keep))
        if args.postgres:
            results["postgresql"] = run(args.postgres, data, tmp, "pg", kept=bool(args.keep))
    (HERE / "results" / f"load_bench_{args.resources}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
