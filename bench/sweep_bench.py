"""The yearly sweep over a generated directory: structures examined per second, against a bare
SQL scan of the same rows in the same run, and the sweep's peak memory.

Two passes: at the generation's reference date (every structure is examined, few are due) and
a year later (every published structure is asked to verify: a transition with its entries,
AuditEvent and message each). Memory is measured with tracemalloc around each pass: the sweep
reads structures in batches, so its peak must not grow with the directory.

Usage: python bench/sweep_bench.py [--resources 100000] [--postgres URL] [--no-sqlite] [--transitions]
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _cli import directory_parser, header, write_results  # noqa: E402
from _pg import fresh_schema  # noqa: E402
from search_bench import _load  # noqa: E402


def _bare_scan(url: str) -> dict:
    """The sweep's reads, straight through the driver: every listed structure's row, by rid."""
    from sqlalchemy import select

    from fhirsrv.storage.engine import make_engine
    from fhirsrv.storage.schema import entry_access, live, resource

    engine = make_engine(url)
    start = time.perf_counter()
    rows = 0
    after = 0
    while True:
        with engine.connect() as conn:
            batch = conn.execute(
                select(resource.c.rid, resource.c.res_id, resource.c.version_id, resource.c.content)
                .join(entry_access, entry_access.c.rid == resource.c.rid)
                .where(
                    entry_access.c.res_type == "Organization",
                    entry_access.c.status.in_(("published", "verification-pending")),
                    live(resource),
                    resource.c.rid > after,
                )
                .order_by(resource.c.rid)
                .limit(500)
            ).all()
        if not batch:
            break
        rows += len(batch)
        after = batch[-1].rid
    seconds = time.perf_counter() - start
    engine.dispose()
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds)}


def _sweep(url: str, when: datetime) -> dict:
    from fhirsrv.settings import Settings
    from fhirsrv.wiring import build_services
    from fhirsrv.workflow import runner
    from fhirsrv.workflow.sweep import sweep

    services = build_services(Settings.from_env(database_url=url, load_demo=False))
    tracemalloc.start()
    report = sweep(services, runner.procedure(services), when)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    services.engine.dispose()
    return {
        "examined": report.examined,
        "asked_to_verify": report.requested,
        "second_reminders": report.second_reminders,
        "delisted": report.delisted,
        "left_for_next_run": report.skipped,
        "seconds": report.seconds,
        "examined_per_second": round(report.examined / max(report.seconds, 1e-6)),
        "peak_python_memory_mb": round(peak / 1e6, 1),
    }


def run(url: str, data: Path | None, transitions: bool) -> dict:
    """Load the generated directory (or, with `data` None, sweep the database as it is)."""
    from fhirsrv.seeding.draw import REFERENCE_DATE
    from fhirsrv.storage.bulk import refresh_statistics
    from fhirsrv.storage.engine import make_engine

    result: dict = {"load": _load(url, data) if data is not None else "loaded earlier (--loaded)"}
    engine = make_engine(url)
    refresh_statistics(engine)
    engine.dispose()
    reference = datetime.combine(REFERENCE_DATE, datetime.min.time())
    result["bare_scan"] = _bare_scan(url)
    result["sweep_at_reference_date"] = _sweep(url, reference)
    result["ratio_bare_vs_sweep_examined_per_second"] = round(
        result["bare_scan"]["rows_per_second"] / max(result["sweep_at_reference_date"]["examined_per_second"], 1), 2
    )
    if transitions:
        result["sweep_a_year_later"] = _sweep(url, reference + timedelta(days=366))
    return result


def main() -> None:
    parser = directory_parser(
        __doc__,
        resources=100_000,
        loaded_help="a PostgreSQL URL whose schema already holds a generated directory of --resources, "
        "loaded at an earlier time (a load takes about 45 minutes at 1M on 2 cores): swept as it is",
    )
    parser.add_argument(
        "--transitions",
        action="store_true",
        help="also sweep a year later, when every published structure is due (slow: ~100 ms a structure)",
    )
    args = parser.parse_args()
    from fhirsrv.seeding.generate import generate

    results = header(args.resources)
    if args.loaded:
        results["postgresql"] = run(args.loaded, None, args.transitions)
        write_results(f"sweep_bench_{args.resources}_postgresql", results)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate(resources=args.resources, seed=1, out_dir=data)
        if not args.no_sqlite:
            results["sqlite"] = run(f"sqlite:///{tmp}/bench.sqlite3", data, args.transitions)
        if args.postgres:
            results["postgresql"] = run(fresh_schema(args.postgres, "fhirsrv_sbench"), data, args.transitions)
    suffix = "_postgresql" if args.no_sqlite else ""
    write_results(f"sweep_bench_{args.resources}{suffix}", results)


if __name__ == "__main__":
    main()
