"""Bulk `$export` of a generated directory: resources written per second, against a bare SQL
scan of the same rows in the same run, and the peak resident memory (RSS) of the exporting
process.

The export runs in a process of its own (this script with --child), as in `fhirsrv serve`: an
app is built, `GET /fhir/$export` is kicked off (authorization off: the server's view, every
live resource but the audit trail), its worker writes the NDJSON files, and the process reports
its RSS once the app was built and its peak during the export (the kernel's VmHWM, reset when
the export starts: /proc/self/clear_refs). The export reads in keyset chunks and writes each
row as it comes, so the peak must not grow with the directory. The bare scan reads the same
rows (the same types, live, in rid order, the same chunks) straight through the driver and
keeps nothing.

`--bare-load` puts the generated rows into the resource table at driver speed (load_bench.py's
baseline) instead of `fhirsrv load`: the server's view of an export reads that table alone, and
a million resources are then in the database in minutes instead of an hour or more on a shared
2-core machine (their access facts are derived once, before anything is timed).

Usage: python bench/export_bench.py [--resources 100000] [--postgres URL] [--no-sqlite] [--keep] [--bare-load]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _cli import directory_parser, header, write_results  # noqa: E402
from _pg import fresh_schema  # noqa: E402
from load_bench import bare_insert  # noqa: E402
from search_bench import _load  # noqa: E402

SCHEMA = "fhirsrv_ebench"


def _memory() -> dict[str, float]:
    """This process's resident memory now and at its peak, in MB (Linux /proc)."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = round(int(value.split()[0]) / 1024, 1)
    return found


def _child(url: str, export_dir: str) -> None:
    """Run one export in this process and print its figures as JSON."""
    from fhirsrv.api.bulk_export import worker
    from fhirsrv.app import create_app
    from fhirsrv.settings import Settings

    settings = Settings.from_env(
        database_url=url,
        load_demo=False,
        auth=False,
        base_url="http://bench/fhir",
        export_dir=Path(export_dir),
    )
    app = create_app(settings)
    web = app.test_client()
    before = _memory()
    Path("/proc/self/clear_refs").write_text("5")  # the peak from here on is the export's
    start = time.perf_counter()
    kicked = web.get("/fhir/$export", headers={"Prefer": "respond-async"})
    assert kicked.status_code == 202, kicked.get_json()
    worker(app).join()
    status = web.get(kicked.headers["Content-Location"].removeprefix("http://bench"))
    seconds = time.perf_counter() - start
    assert status.status_code == 200, status.get_json()
    manifest = status.get_json()
    after = _memory()
    written = sum(o["count"] for o in manifest["output"])
    size = sum(
        (Path(export_dir) / d / f.name).stat().st_size
        for d in Path(export_dir).iterdir()
        for f in (Path(export_dir) / d).iterdir()
    )
    print(
        json.dumps(
            {
                "resources": written,
                "files": len(manifest["output"]),
                "megabytes_written": round(size / 1e6, 1),
                "seconds": round(seconds, 2),
                "resources_per_second": round(written / seconds),
                "rss_mb_before_export": before["VmRSS"],
                "peak_rss_mb": after["VmHWM"],
                "peak_rss_growth_mb": round(after["VmHWM"] - before["VmRSS"], 1),
            }
        )
    )
    app.extensions["fhirsrv"].engine.dispose()


def _export(url: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, __file__, "--child", url, folder], check=True, capture_output=True, text=True
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _bare_scan(url: str) -> dict:
    """The export's reads, straight through the driver: the same rows in the same chunks."""
    from sqlalchemy import select

    from fhirsrv.storage.engine import make_engine
    from fhirsrv.storage.schema import live, resource
    from fhirsrv.sync.export_request import EXPORT_ORDER
    from fhirsrv.sync.export_writer import CHUNK_ROWS

    engine = make_engine(url)
    rows = size = 0
    start = time.perf_counter()
    with engine.connect() as conn, conn.begin():
        for res_type in EXPORT_ORDER:
            if res_type == "AuditEvent":
                continue
            after = -1
            while True:
                batch = conn.execute(
                    select(resource.c.rid, resource.c.content)
                    .where(resource.c.res_type == res_type, live(resource), resource.c.rid > after)
                    .order_by(resource.c.rid)
                    .limit(CHUNK_ROWS)
                ).all()
                if not batch:
                    break
                rows += len(batch)
                size += sum(len(content) for _, content in batch)
                after = batch[-1].rid
    seconds = time.perf_counter() - start
    engine.dispose()
    return {
        "rows": rows,
        "megabytes": round(size / 1e6, 1),
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
    }


def _bare_load(url: str, data: Path) -> dict:
    """The rows at driver speed, then their access facts and identifiers derived (untimed) by
    building the services once, as a first start on such a database would."""
    from sqlalchemy import func, select

    from fhirsrv.settings import Settings
    from fhirsrv.storage.engine import make_engine
    from fhirsrv.storage.schema import resource
    from fhirsrv.wiring import build_services

    seconds = bare_insert(url, data)
    build_services(Settings.from_env(database_url=url, load_demo=False, auth=False)).engine.dispose()
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(resource)).scalar_one()
    engine.dispose()
    return {"resources": rows, "seconds": round(seconds, 1), "how": "bare INSERT into resource (--bare-load)"}


def run(url: str, data: Path, bare: bool) -> dict:
    from fhirsrv.storage.bulk import refresh_statistics
    from fhirsrv.storage.engine import make_engine

    result: dict = {"load": _bare_load(url, data) if bare else _load(url, data)}
    if not (bare and url.startswith("sqlite")):  # after a bare load SQLite plans the scans by index anyway
        engine = make_engine(url)
        refresh_statistics(engine)
        engine.dispose()
    result["bare_scan"] = _bare_scan(url)
    result["export"] = _export(url)
    result["ratio_bare_vs_export_per_second"] = round(
        result["bare_scan"]["rows_per_second"] / max(result["export"]["resources_per_second"], 1), 2
    )
    assert result["export"]["resources"] == result["bare_scan"]["rows"], (
        "the export and the scan read the same rows"
    )
    return result


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
        return
    parser = directory_parser(__doc__, resources=100_000, loaded_help="not used by this benchmark")
    parser.add_argument("--keep", action="store_true", help=f"keep the PostgreSQL schema {SCHEMA} afterwards")
    parser.add_argument(
        "--bare-load", action="store_true", help="put the rows in at driver speed (see above)"
    )
    args = parser.parse_args()
    from fhirsrv.seeding.generate import generate

    results = header(args.resources)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate(resources=args.resources, seed=1, out_dir=data)
        if not args.no_sqlite:
            results["sqlite"] = run(f"sqlite:///{tmp}/bench.sqlite3", data, args.bare_load)
        if args.postgres:
            url = fresh_schema(args.postgres, SCHEMA)
            try:
                results["postgresql"] = run(url, data, args.bare_load)
            finally:
                if not args.keep:
                    _drop(args.postgres)
    suffix = ("_postgresql" if args.no_sqlite else "") + ("_bare_load" if args.bare_load else "")
    write_results(f"export_bench_{args.resources}{suffix}", results)


def _drop(url: str) -> None:
    from sqlalchemy import text

    from fhirsrv.storage.engine import make_engine

    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    admin.dispose()


if __name__ == "__main__":
    main()
