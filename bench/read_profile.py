"""Where the CPU of one anonymous FHIR read goes, in this process, through the WSGI interface.

The app is the one `fhirsrv serve` runs (create_app, authorization on, no rate limit), on the
demo region; each request is a WSGI call with a plain environ, so no HTTP server and no test
client is counted, only what the app itself does per request. Reported, in CPU milliseconds per
request (time.process_time: the machine may be busy, the process's own CPU is what the code
costs), for four requests measured in turn:
- read: anonymous `GET /fhir/Organization/{id}` cycling over up to 200 published Organizations
  (authorization on, the visibility filter applied);
- search: anonymous `GET /fhir/Organization?name=centre&_count=20`;
- metadata: anonymous `GET /fhir/metadata` (the CapabilityStatement every client fetches first);
- fixed: the same stack's fixed-bytes route (bench/_server.py), the floor of any request;
and the profiled run of the reads (or of --profile's request), sorted by cumulative time, to
bench/results/read_profile.txt.

--digest FILE writes, for every read target and the search, the status, the headers (in order) but those
that change per request (Date, X-Request-ID) and a hash of the body: two runs' digests are equal
exactly when the answers are, byte for byte.

Usage: python bench/read_profile.py [--postgres URL | --sqlite FILE] [--reads 2000] [--searches 300]
       [--profile read|search|metadata] [--top 45] [--out FILE] [--digest FILE] [--keep]
READ_PROFILE_CALLERS=<regex> in the environment adds who calls the functions it matches
(pstats' print_callers), e.g. "local.py:310" for werkzeug's proxies.
(--postgres: a schema fhirsrv_read_profile_bench is created, loaded and, unless --keep, dropped;
 --keep also reuses an already loaded one. Without either, a temporary SQLite file.)
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _pg import fresh_schema  # noqa: E402
from _server import with_fixed_route  # noqa: E402
from workers_bench import prepare  # noqa: E402

from fhirsrv.app import create_app  # noqa: E402
from fhirsrv.settings import Settings  # noqa: E402

SCHEMA = "fhirsrv_read_profile_bench"
SEARCH = "/fhir/Organization?name=centre&_count=20"
METADATA = "/fhir/metadata"
FIXED = "/baseline/fixed"
READ_IDS = 200
VARYING = {"date", "x-request-id"}
RESULTS = HERE / "results"


def _environ(path: str) -> dict[str, Any]:
    """What a WSGI server hands the app for `GET path` from 127.0.0.1, Accept: FHIR JSON."""
    raw_path, _, query = path.partition("?")
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": raw_path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8080",
        "HTTP_ACCEPT": "application/fhir+json",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def call(app: Any, path: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """One request: (status line, headers, body)."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, headers

    chunks = app(_environ(path), start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return seen["status"], seen["headers"], body


def _run(app: Any, paths: list[str], count: int) -> None:
    for k in range(count):
        status, _, _ = call(app, paths[k % len(paths)])
        if not status.startswith("200"):
            raise SystemExit(f"{paths[k % len(paths)]} answered {status}")


def _cpu_ms(fn: Callable[[], Any]) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1000


def read_paths(app: Any) -> list[str]:
    status, _, body = call(app, f"/fhir/Organization?_count={READ_IDS}&_elements=id&_total=none")
    ids = [e["resource"]["id"] for e in json.loads(body).get("entry", [])]
    if not status.startswith("200") or not ids:
        raise SystemExit("no Organization readable anonymously: nothing to read")
    return [f"/fhir/Organization/{i}" for i in sorted(ids)]


def digest(app: Any, paths: Iterable[str]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        status, headers, body = call(app, path)
        kept = [(k.lower(), v) for k, v in headers if k.lower() not in VARYING]
        out.append({"path": path, "status": status, "headers": kept, "body_sha256": _body_hash(body)})
    return out


def _body_hash(body: bytes) -> str:
    """The body's hash; a Bundle's without the id, instant and paging cursor (encrypted with a
    timestamp) it is given at each answer."""
    if body.startswith(b'{"resourceType":"Bundle"'):
        bundle = json.loads(body)
        for varying in ("id", "meta", "timestamp"):
            bundle.pop(varying, None)
        for link in bundle.get("link", []):
            link["url"] = re.sub(r"_cursor=[^&]*", "_cursor=…", link["url"])
        body = json.dumps(bundle).encode()
    return hashlib.sha256(body).hexdigest()


def make_app(url: str) -> Any:
    settings = Settings.from_env(
        database_url=url, auth=True, load_demo=False, rate_limit_anonymous=0, rate_limit_client=0
    )
    return with_fixed_route(create_app(settings), 400)


def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    app = make_app(url)
    paths = read_paths(app)
    cases = {
        "read": (paths, args.reads),
        "search": ([SEARCH], args.searches),
        "metadata": ([METADATA], args.searches),
        "fixed": ([FIXED], args.reads),
    }
    for case_paths, count in cases.values():  # warm: pools, caches, compiled statements
        _run(app, case_paths, min(count, 200))
    # CPU time is what the code costs, but a busy machine still inflates it (caches, the other
    # core's work): the load average says how busy it was.
    results: dict[str, Any] = {"read_targets": len(paths), "load_average_1m": round(os.getloadavg()[0], 2)}
    for name, (case_paths, count) in cases.items():
        best = min(_cpu_ms(lambda p=case_paths, c=count: _run(app, p, c)) for _ in range(args.repeat))
        results[f"{name}_cpu_ms"] = round(best / count, 4)
    profiled_paths, profiled_count = cases[args.profile]
    profiler = cProfile.Profile(time.process_time)  # CPU, not the waits on the database
    profiler.runcall(_run, app, profiled_paths, profiled_count)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    if os.environ.get("READ_PROFILE_CALLERS"):
        stats.print_callers(os.environ["READ_PROFILE_CALLERS"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        f"# python bench/read_profile.py {' '.join(sys.argv[1:])}\n"
        + json.dumps(results, indent=2)
        + f"\n\n# profiled: {profiled_count} x {args.profile}\n"
        + text.getvalue(),
        encoding="utf-8",
    )
    if args.digest:
        args.digest.write_text(json.dumps(digest(app, [*paths, SEARCH]), indent=1), encoding="utf-8")
    app.extensions["fhirsrv"].engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default=None)
    parser.add_argument("--sqlite", type=Path, default=None)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case; the least CPU is kept")
    parser.add_argument("--profile", choices=("read", "search", "metadata"), default="read")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--out", type=Path, default=RESULTS / "read_profile.txt")
    parser.add_argument("--digest", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the loaded database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            url = _schema(args.postgres, args.keep)
        else:
            url = f"sqlite:///{args.sqlite or Path(tmp) / 'read.sqlite3'}"
            if args.sqlite is None or not args.sqlite.exists():
                prepare(url, None)
        try:
            results = measure(url, args)
        finally:
            if args.postgres and not args.keep:
                _drop(args.postgres)
    print(json.dumps(results, indent=2))


def _schema(base: str, keep: bool) -> str:
    """The loaded schema's URL: reused when --keep finds it loaded, else made and loaded."""
    from sqlalchemy import text

    from fhirsrv.storage.engine import make_engine

    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{SCHEMA}"
    if keep:
        engine = make_engine(base)
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM information_schema.tables WHERE table_schema = :s AND table_name = 'resource'"),
                {"s": SCHEMA},
            ).first()
        engine.dispose()
        if found:
            return url
    url = fresh_schema(base, SCHEMA)
    prepare(url, None)
    return url


def _drop(base: str) -> None:
    from sqlalchemy import text

    from fhirsrv.storage.engine import make_engine

    engine = make_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    engine.dispose()


if __name__ == "__main__":
    main()
