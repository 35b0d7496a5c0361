"""A platform's first sync: paging through `_history?_since=<epoch>&_count=1000` of a generated
directory over HTTP, to its last page, as an anonymous client and as a partner reader with a
bearer token, on a server with authorization on. Throughput in resources a second (entries
carrying a resource), against a bare SQL scan of the same change_log and resource_version rows
in the same run (keyset pages of 1,000 straight through the driver, no filter, no JSON). The
throughput counts the server's time (request sent to last byte received); the client's own
parse of the pages is reported apart (end to end).

Usage: python bench/history_bench.py [--resources 100000] [--postgres URL] [--no-sqlite]
       python bench/history_bench.py --resources 100000 --loaded URL   # a directory loaded earlier
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _cli import directory_parser, header, write_results  # noqa: E402
from _pg import fresh_schema  # noqa: E402
from http_bench import _free_port, _percentiles, _wait  # noqa: E402
from search_bench import _load  # noqa: E402

PAGE = 1000
EPOCH = "1970-01-01T00:00:00Z"


def _bare_scan(url: str) -> dict:
    """Every change and the version it names, by keyset pages of PAGE, content included."""
    from sqlalchemy import and_, select

    from fhirsrv.storage.engine import make_engine
    from fhirsrv.storage.schema import change_log, resource_version

    c, v = change_log.c, resource_version.c
    engine = make_engine(url)
    rows = size = 0
    after = 0
    start = time.perf_counter()
    with engine.connect() as conn:
        while True:
            page = conn.execute(
                select(c.seq, c.res_type, c.res_id, c.version_id, v.last_updated, v.content)
                .join_from(change_log, resource_version, and_(v.rid == c.rid, v.version_id == c.version_id))
                .where(c.seq > after)
                .order_by(c.seq)
                .limit(PAGE)
            ).all()
            if not page:
                break
            rows += len(page)
            size += sum(len(r.content or "") for r in page)
            after = page[-1].seq
    seconds = time.perf_counter() - start
    engine.dispose()
    return {
        "rows": rows,
        "content_mb": round(size / 1e6, 1),
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
    }


class Server:
    """bench/_server.py with authorization on, in its own process."""

    def __init__(self, url: str) -> None:
        self.port = _free_port()
        # Tokens that outlive a sync (one of 1M resources takes longer than the default 5 minutes).
        env = {**os.environ, "FHIRSRV_TOKEN_LIFETIME": "3600"}
        self.proc = subprocess.Popen([sys.executable, str(HERE / "_server.py"), url, str(self.port), "100", "auth"], env=env)
        _wait(self.port, self.proc)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)

    def get(self, path: str, headers: dict[str, str]) -> tuple[float, int, bytes]:
        start = time.perf_counter()
        self.conn.request("GET", path, headers=headers)
        res = self.conn.getresponse()
        body = res.read()
        return time.perf_counter() - start, res.status, body

    def token(self, url: str, role: str, scopes: str) -> str:
        from fhirsrv.auth.clients import add_client
        from fhirsrv.storage.engine import make_engine

        engine = make_engine(url)
        with engine.begin() as conn:
            client, secret = add_client(conn, f"bench {role}", scopes, role)
        engine.dispose()
        basic = base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()
        self.conn.request(
            "POST",
            "/fhir/token",
            body="grant_type=client_credentials",
            headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        res = self.conn.getresponse()
        return json.loads(res.read())["access_token"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _sync(server: Server, headers: dict[str, str]) -> dict:
    """Every page of `_history?_since=<epoch>&_count=PAGE`, following `next` to the end."""
    path: str | None = f"/fhir/_history?{urlencode({'_since': EPOCH, '_count': PAGE})}"
    pages = resources = removals = size = 0
    latencies = []
    parsing = 0.0
    start = time.perf_counter()
    while path:
        elapsed, status, body = server.get(path, headers)
        assert status == 200, body[:300]
        latencies.append(elapsed)
        size += len(body)
        parsed = time.perf_counter()
        bundle = orjson.loads(body)  # the client's own work: timed apart from the server's
        parsing += time.perf_counter() - parsed
        pages += 1
        for entry in bundle["entry"]:
            if "resource" in entry:
                resources += 1
            else:
                removals += 1
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        path = None
        if following:
            parts = urlsplit(following[0])
            path = f"{parts.path}?{parts.query}"
    seconds = time.perf_counter() - start
    answering = sum(latencies)
    return {
        "pages": pages,
        "resources": resources,
        "removals": removals,
        "mb": round(size / 1e6, 1),
        # The server's side: from each request sent to the last byte of its answer.
        "server_seconds": round(answering, 2),
        "resources_per_second": round(resources / answering),
        "page": _percentiles(latencies) | {"max_ms": round(max(latencies) * 1000, 1)},
        # The client's side too: parsing 1,000 resources a page into Python objects (orjson).
        "client_parse_seconds": round(parsing, 2),
        "end_to_end_seconds": round(seconds, 2),
        "end_to_end_resources_per_second": round(resources / seconds),
    }


def run(url: str, data: Path | None) -> dict:
    """Load the generated directory (or, with `data` None, measure the database as it is)."""
    from fhirsrv.storage.bulk import refresh_statistics
    from fhirsrv.storage.engine import make_engine

    result: dict = {"load": _load(url, data) if data is not None else "loaded earlier (--loaded)"}
    engine = make_engine(url)
    refresh_statistics(engine)
    engine.dispose()
    server = Server(url)
    try:
        result["bare_scan"] = _bare_scan(url)
        result["anonymous"] = _sync(server, {})
        # A token lives FHIRSRV_TOKEN_LIFETIME (5 min): asked for when the sync starts.
        partner = {"Authorization": f"Bearer {server.token(url, 'partner-reader', 'system/*.rs')}"}
        result["partner_reader"] = _sync(server, partner)
        result["bare_scan_again"] = _bare_scan(url)  # the scan after both, in case caches warmed
    finally:
        server.stop()
    bare = max(result["bare_scan"]["rows_per_second"], result["bare_scan_again"]["rows_per_second"])
    for caller in ("anonymous", "partner_reader"):
        result[f"ratio_bare_vs_{caller}"] = round(bare / max(result[caller]["resources_per_second"], 1), 2)
    return result


def main() -> None:
    parser = directory_parser(
        __doc__,
        resources=100_000,
        loaded_help="a PostgreSQL URL whose schema already holds a generated directory of --resources "
        "(migrated to the change log): measured as it is",
    )
    args = parser.parse_args()
    from fhirsrv.seeding.generate import generate

    results = header(args.resources, page=PAGE)
    if args.loaded:
        results["postgresql"] = run(args.loaded, None)
        write_results(f"history_bench_{args.resources}_postgresql", results)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate(resources=args.resources, seed=1, out_dir=data)
        if not args.no_sqlite:
            results["sqlite"] = run(f"sqlite:///{tmp}/bench.sqlite3", data)
        if args.postgres:
            results["postgresql"] = run(fresh_schema(args.postgres, "fhirsrv_hbench"), data)
    suffix = "_postgresql" if args.no_sqlite else ""
    write_results(f"history_bench_{args.resources}{suffix}", results)


if __name__ == "__main__":
    main()
