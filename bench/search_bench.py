"""Search latency at scale: five representative searches through HTTP, against the bare SQL of
the same query (the statement the engine runs to select the page), on SQLite and PostgreSQL.
Also records the load throughput of the generated directory.

Usage: python bench/search_bench.py [--resources 10000] [--requests 200] [--postgres URL]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _pg import fresh_schema  # noqa: E402
from http_bench import _free_port, _percentiles, _wait  # noqa: E402

R211 = "https://mos.esante.gouv.fr/NOS/TRE_R211-ActiviteOperationnelle/FHIR/TRE-R211-ActiviteOperationnelle"
SEARCHES = {
    "token": ("HealthcareService", f"specialty={quote(R211)}|414&_count=20"),
    "string": ("Organization", "name=centre&_count=20"),
    "chain": ("HealthcareService", "organization.name=maison&_count=20"),
    "near": ("Location", "near=48.11|-1.68|20|km&_count=20"),
    "include": (
        "HealthcareService",
        "_include=HealthcareService:organization&_include=HealthcareService:location"
        "&_revinclude=PractitionerRole:service&_count=20",
    ),
}


def _load(url: str, directory: Path) -> dict:
    from fhirsrv.app import build_services
    from fhirsrv.interactions.load import load_paths
    from fhirsrv.settings import Settings

    services = build_services(Settings.from_env(database_url=url, load_demo=False))
    start = time.perf_counter()
    report = load_paths(services, [directory])
    elapsed = time.perf_counter() - start
    total = sum(report.counts.values())
    services.engine.dispose()
    return {"resources": total, "seconds": round(elapsed, 1), "resources_per_second": round(total / elapsed)}


def _bare_sql(url: str, requests: int) -> dict:
    """Replay, straight through the driver, every SQL statement the engine runs for the search
    (page, total, stored JSON, includes): the same query without Python, HTTP or Bundle."""
    from sqlalchemy import event

    from fhirsrv.app import build_services
    from fhirsrv.search.scope import UNRESTRICTED
    from fhirsrv.settings import Settings
    from fhirsrv.storage.engine import read_transaction

    services = build_services(Settings.from_env(database_url=url, load_demo=False, auth=False))
    engine = services.search
    out = {}
    for name, (res_type, query) in SEARCHES.items():
        request = engine.prepare(res_type, parse_qsl(query), strict=True)
        statements: list[tuple[str, object]] = []

        def capture(conn, cursor, statement, parameters, context, executemany, _into=statements):  # type: ignore[no-untyped-def]
            if (
                not statement.lstrip()
                .upper()
                .startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"))
            ):
                _into.append((statement, parameters))

        event.listen(services.engine, "before_cursor_execute", capture)
        with read_transaction(services.engine) as conn:
            engine.execute(conn, request, UNRESTRICTED)
        event.remove(services.engine, "before_cursor_execute", capture)
        samples = []
        for _ in range(requests):
            with read_transaction(services.engine) as conn:
                cursor = conn.connection.driver_connection.cursor()
                start = time.perf_counter()
                for statement, parameters in statements:
                    cursor.execute(statement, parameters)
                    cursor.fetchall()
                samples.append(time.perf_counter() - start)
        out[name] = {**_percentiles(samples), "statements": len(statements)}
    services.engine.dispose()
    return out


def _http(url: str, requests: int) -> dict:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "_server.py"), url, str(port), "100"])
    try:
        _wait(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        out = {}
        for name, (res_type, query) in SEARCHES.items():
            samples, matches = [], 0
            for _ in range(requests):
                start = time.perf_counter()
                conn.request("GET", f"/fhir/{res_type}?{query}")
                res = conn.getresponse()
                body = res.read()
                samples.append(time.perf_counter() - start)
                assert res.status == 200, body[:300]
            matches = json.loads(body).get("total")
            stats = _percentiles(samples)
            stats["requests_per_second"] = round(len(samples) / sum(samples), 1)
            stats["total_matches"] = matches
            out[name] = stats
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run(url: str, directory: Path | None, requests: int) -> dict:
    result: dict = {"load": _load(url, directory) if directory else "see load_bench results"}
    from fhirsrv.storage.bulk import refresh_statistics
    from fhirsrv.storage.engine import make_engine

    engine = make_engine(url)
    refresh_statistics(engine)  # what `fhirsrv load` (or autovacuum) leaves after a load
    engine.dispose()
    result["http"] = _http(url, requests)
    result["bare_sql"] = _bare_sql(url, requests)
    result["ratio_http_vs_bare_sql_median"] = {
        name: round(result["http"][name]["median_ms"] / max(result["bare_sql"][name]["median_ms"], 1e-3), 2)
        for name in SEARCHES
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--postgres", default=os.environ.get("FHIRSRV_BENCH_DATABASE_URL"))
    parser.add_argument(
        "--loaded",
        type=Path,
        help="search the databases load_bench.py --keep DIR loaded (SQLite file and PostgreSQL "
        "schema) instead of generating and loading again: a 1M load takes a quarter of an hour",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()
    from fhirsrv.seeding.generate import generate

    results: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "resources": args.resources,
        "requests": args.requests,
        "machine": f"{os.cpu_count()} cores",
        "searches": SEARCHES,
    }
    if args.loaded:
        if not args.no_sqlite:
            results["sqlite"] = run(f"sqlite:///{args.loaded}/sqlite.db", None, args.requests)
        if args.postgres:
            sep = "&" if "?" in args.postgres else "?"
            pg = f"{args.postgres}{sep}options=-csearch_path%3Dfhirsrv_lbench_kept"
            results["postgresql"] = run(pg, None, args.requests)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            generate(resources=args.resources, seed=1, out_dir=data)
            if not args.no_sqlite:
                results["sqlite"] = run(f"sqlite:///{tmp}/bench.sqlite3", data, args.requests)
            if args.postgres:
                results["postgresql"] = run(fresh_schema(args.postgres, "fhirsrv_bench"), data, args.requests)
    suffix = "_postgresql" if args.no_sqlite else ""
    out = HERE / "results" / f"search_bench_{args.resources}{suffix}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
