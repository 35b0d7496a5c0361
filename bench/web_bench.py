"""The public page's results against the FHIR search it wraps, side by side in one run.

Usage: python bench/web_bench.py [--requests 300] [--postgres URL] [--no-sqlite]

A server process (the same waitress stack as `fhirsrv serve`, authorization on, rate limits
off, no map tiles) loads the demo region. For each query the client asks, in turn, the results
page (HTML, 20 results), the anonymous FHIR search that page runs — its URL is taken from the
page's own "in FHIR (JSON)" link, so it is exactly the search the page wraps — and a fixed-bytes
route of the same stack as a floor. Requests go one at a time on one keep-alive connection, so
the figures are latencies, not throughput. Reported: median and p95 of each, and the ratios
page / FHIR search and each / fixed bytes. The issue's aim: the page under 1.5× its search at
the median.
"""

from __future__ import annotations

import argparse
import html
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from _cli import header, write_results  # noqa: E402
from _pg import fresh_schema  # noqa: E402
from http_bench import _free_port  # noqa: E402

QUERIES = {
    "category": "/?categorie=douleur",
    "near a town, by distance": "/?commune=Brest+%2829200%29&distance=20",
    "département and audience": "/?departement=35&public=proche",
    "everything, by name": "/?tri=nom",
}
FHIR_LINK = re.compile(r'<p class="fhir"><a href="([^"]+)"')


def child(database_url: str, port: int) -> None:
    from _server import with_fixed_route

    from fhirsrv.app import create_app, make_server
    from fhirsrv.interactions.load import load_initial_content
    from fhirsrv.settings import Settings
    from fhirsrv.wiring import build_services

    settings = Settings.from_env(
        database_url=database_url,
        load_demo=True,
        auth=True,
        rate_limit_anonymous=0,
        rate_limit_client=0,
        web_tile_url="",
    )
    services = build_services(settings)
    load_initial_content(services, demo=True)
    app = with_fixed_route(create_app(settings, services), 20_000)
    make_server(app, settings, "127.0.0.1", port, threads=4, ident="fhirsrv-bench").run()


def _wait(port: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("server did not start")


def _get(conn: http.client.HTTPConnection, path: str, accept: str) -> tuple[float, int, bytes]:
    start = time.perf_counter()
    conn.request("GET", path, headers={"Accept": accept})
    res = conn.getresponse()
    body = res.read()
    return time.perf_counter() - start, res.status, body


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 2),
        "n": len(ordered),
    }


def run(database_url: str, requests: int) -> dict:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--child", database_url, str(port)])
    try:
        _wait(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        results: dict = {}
        for name, page_path in QUERIES.items():
            _, status, body = _get(conn, page_path, "text/html")
            assert status == 200, (name, status)
            link = html.unescape(FHIR_LINK.search(body.decode()).group(1))
            parts = urlsplit(link)
            fhir_path = f"{parts.path}?{parts.query}"
            shown = body.decode().count('class="offer" data-offer=')
            for _ in range(20):  # warm-up
                _get(conn, page_path, "text/html")
                _get(conn, fhir_path, "application/fhir+json")
                _get(conn, "/baseline/fixed", "application/fhir+json")
            page, fhir, fixed = [], [], []
            for _ in range(requests):
                took, status, _ = _get(conn, page_path, "text/html")
                assert status == 200
                page.append(took)
                took, status, _ = _get(conn, fhir_path, "application/fhir+json")
                assert status == 200
                fhir.append(took)
                took, _, _ = _get(conn, "/baseline/fixed", "application/fhir+json")
                fixed.append(took)
            row = {
                "page": page_path,
                "fhir_search": fhir_path,
                "results_on_page": shown,
                "page_html": _stats(page),
                "fhir_search_json": _stats(fhir),
                "fixed_bytes": _stats(fixed),
            }
            row["ratio_page_vs_fhir_search"] = round(row["page_html"]["median_ms"] / row["fhir_search_json"]["median_ms"], 2)
            row["ratio_page_vs_fixed"] = round(row["page_html"]["median_ms"] / row["fixed_bytes"]["median_ms"], 2)
            row["ratio_fhir_search_vs_fixed"] = round(
                row["fhir_search_json"]["median_ms"] / row["fixed_bytes"]["median_ms"], 2
            )
            results[name] = row
            print(name, row["page_html"], row["fhir_search_json"], row["ratio_page_vs_fhir_search"], flush=True)
        return results
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--postgres", default=os.environ.get("FHIRSRV_BENCH_DATABASE_URL"))
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    results = header(0, requests=args.requests, directory="the demo region (seed/demo)")
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            results["sqlite"] = run(f"sqlite:///{tmp}/bench.sqlite3", args.requests)
    if args.postgres:
        results["postgresql"] = run(fresh_schema(args.postgres, "fhirsrv_wbench"), args.requests)
    write_results("web_bench", results)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
