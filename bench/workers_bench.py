"""Throughput and latency of `fhirsrv serve` with 1 and 2 worker processes, under granian (the
product's set-up, fhirsrv/serving.py) and gunicorn's gthread workers (a comparison only, the
set-up `serve --workers N` had until 2026-11-28), at 1, 4 and 16 concurrent keep-alive
connections.

Three requests, each alone for `--seconds`: a read (`GET Organization/{id}`, anonymous, the
visibility filter applied, authorization on), a public search (`Organization?name=centre`), and
the same stack's fixed-bytes route, the ceiling no FHIR request can pass. Reported per case:
requests/s, median and p95 latency, non-200 answers; then the ratios 2 workers / 1 worker
(requests/s) and read / fixed-bytes, search / fixed-bytes (requests/s).

The load comes from another process so that it is not the bottleneck on 2 cores: `wrk` when
installed (Debian: `apt-get install wrk`), else one Python process per connection with a
keep-alive http.client connection each (heavier: it takes CPU from the server; the JSON says
which ran).

Usage: python bench/workers_bench.py [--seconds 10] [--postgres URL] [--no-sqlite]
       [--servers granian,gunicorn,waitress] [--workers 1,2] [--connections 1,4,16] [--threads 4]
       [--organizations N]   # N published structures instead of the demo region (a quick check)
gunicorn's rows need gunicorn (`pip install -e '.[bench]'`); without it they are left out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _pg import fresh_schema  # noqa: E402
from http_bench import _free_port, _wait  # noqa: E402

from fhirsrv.cli import WORKER_THREADS  # noqa: E402

SEARCH = "/fhir/Organization?name=centre&_count=20"
FIXED = "/baseline/fixed"
READ_IDS = 200  # distinct Organizations the reads cycle through
LIFECYCLE = "https://sos.example.org/fhir/StructureDefinition/sos-entry-lifecycle"


# ------------------------------------------------------------------------------ the database


def prepare(url: str, organizations: int | None) -> None:
    """Migrate; load the first start's content and the demo region, or `organizations`
    published structures named "Centre …" (a quick run)."""
    from fhirsrv.access.principal import SERVER
    from fhirsrv.interactions import writes
    from fhirsrv.interactions.load import load_initial_content
    from fhirsrv.settings import Settings
    from fhirsrv.storage.engine import write_transaction
    from fhirsrv.wiring import build_services

    services = build_services(Settings.from_env(database_url=url, load_demo=organizations is None))
    load_initial_content(services, demo=organizations is None)
    if organizations:
        with write_transaction(services.engine) as conn:
            for k in range(organizations):
                org = {
                    "resourceType": "Organization",
                    "name": f"Centre de soins de support {k}",
                    "extension": [{"url": LIFECYCLE, "extension": [{"url": "status", "valueCode": "published"}]}],
                }
                writes.create(services, conn, org, f"bench-org-{k}", actor=SERVER)
    services.engine.dispose()


# ------------------------------------------------------------------------------ the servers


def _environment(url: str, workers: int, tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FHIRSRV_DATABASE_URL": url,
        "FHIRSRV_DATA_DIR": str(tmp),
        "FHIRSRV_AUTH": "on",
        "FHIRSRV_LOAD_DEMO": "off",
        # Off: the load comes from one address, which the limit would turn into 429s.
        "FHIRSRV_RATE_LIMIT_ANONYMOUS": "0",
        "FHIRSRV_RATE_LIMIT_CLIENT": "0",
        "FHIRSRV_WORKERS": str(workers),
        "FHIRSRV_BENCH_FIXED_BYTES": "400",
        "PYTHONPATH": str(HERE),
    }


def start(kind: str, workers: int, threads: int, url: str, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = _environment(url, workers, tmp)
    if kind == "gunicorn":  # as fhirsrv/serving.py ran it: gthread workers, no preload, no access log
        command = [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--threads", str(threads),
                   "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--keep-alive", "5",
                   "--forwarded-allow-ips", "", "--limit-request-line", "0", "--chdir", str(HERE),
                   "_workers_app:make_app()"]  # fmt: skip
    else:
        command = [sys.executable, str(HERE / "_workers_app.py"), kind, str(port), str(threads)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(port, process)
    return process, port


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def read_paths(port: int) -> list[str]:
    """Organizations an anonymous caller may read (published): the reads' targets."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", f"/fhir/Organization?_count={READ_IDS}&_elements=id&_total=none")
    bundle = json.loads(conn.getresponse().read())
    conn.close()
    ids = [e["resource"]["id"] for e in bundle.get("entry", [])]
    if not ids:
        raise SystemExit("no Organization readable anonymously: nothing to read")
    return [f"/fhir/Organization/{i}" for i in ids]


# ------------------------------------------------------------------------------ the load

WRK_SCRIPT = """
local paths = {%s}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1], {["Accept"] = "application/fhir+json"})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\": %%d, \\"seconds\\": %%f, \\"median_us\\": %%d, \\"p95_us\\": %%d, " ..
    "\\"not_200\\": %%d, \\"socket_errors\\": %%d}\\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(95),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def _with_wrk(port: int, paths: list[str], connections: int, seconds: int, tmp: Path) -> dict[str, Any]:
    script = tmp / "paths.lua"
    script.write_text(WRK_SCRIPT % ", ".join(json.dumps(p) for p in paths))
    threads = min(2, connections)
    done = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "30s",
         "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    raw = json.loads(line.removeprefix("RESULT "))
    return {
        "requests_per_second": round(raw["requests"] / raw["seconds"], 1),
        "median_ms": round(raw["median_us"] / 1000, 3),
        "p95_ms": round(raw["p95_us"] / 1000, 3),
        "requests": raw["requests"],
        "not_200": raw["not_200"] + raw["socket_errors"],
    }


def _python_client(
    port: int, paths: list[str], seconds: float, offset: int, ready: Any, results: Any
) -> None:
    """One keep-alive connection sending requests back to back for `seconds`, once every
    client is connected (`ready`, a barrier); puts (latencies, non-200 count) on `results`."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    ready.wait()
    samples: list[float] = []
    bad = 0
    k = offset
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        path = paths[k % len(paths)]
        k += 1
        began = time.perf_counter()
        conn.request("GET", path, headers={"Accept": "application/fhir+json"})
        response = conn.getresponse()
        response.read()
        samples.append(time.perf_counter() - began)
        bad += response.status != 200
    conn.close()
    results.put((samples, bad))


def _with_python(port: int, paths: list[str], connections: int, seconds: int) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")  # no re-import: the clients start at once
    ready, results = context.Barrier(connections), context.Queue()
    clients = [
        context.Process(target=_python_client, args=(port, paths, seconds, k * 7, ready, results))
        for k in range(connections)
    ]
    for client in clients:
        client.start()
    parts = [results.get(timeout=seconds + 120) for _ in clients]
    for client in clients:
        client.join()
    samples = sorted(s for part, _ in parts for s in part)
    return {
        "requests_per_second": round(len(samples) / seconds, 1),
        "median_ms": round(statistics.median(samples) * 1000, 3),
        "p95_ms": round(samples[max(0, int(len(samples) * 0.95) - 1)] * 1000, 3),
        "requests": len(samples),
        "not_200": sum(bad for _, bad in parts),
    }


def measure(port: int, paths: list[str], connections: int, seconds: int, tmp: Path) -> dict[str, Any]:
    if shutil.which("wrk"):
        return _with_wrk(port, paths, connections, seconds, tmp)
    return _with_python(port, paths, connections, seconds)


# ------------------------------------------------------------------------------ the run


def run_backend(url: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    began = time.perf_counter()
    prepare(url, args.organizations)
    results: dict[str, Any] = {"prepared_seconds": round(time.perf_counter() - began, 1)}
    for kind in args.servers:
        if kind == "gunicorn" and importlib.util.find_spec("gunicorn") is None:
            print("gunicorn is not installed (pip install -e '.[bench]'): its rows are left out", flush=True)
            continue
        for workers in args.workers:
            if kind == "waitress" and workers != 1:
                continue  # the product's single process only
            process, port = start(kind, workers, args.threads, url, tmp)
            try:
                reads = read_paths(port)
                requests = {"read": reads, "search": [SEARCH], "fixed_bytes": [FIXED]}
                measure(port, reads[:20] + [SEARCH, FIXED], 4, 1, tmp)  # warm-up: pools, caches
                case: dict[str, Any] = {}
                for connections in args.connections:
                    case[str(connections)] = {
                        name: measure(port, paths, connections, args.seconds, tmp) for name, paths in requests.items()
                    }
                    print(kind, workers, connections, json.dumps(case[str(connections)]), flush=True)
            finally:
                stop(process)
            results.setdefault(kind, {})[str(workers)] = case
    results["ratios"] = ratios(results, args)
    return results


def ratios(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """requests/s: 2 workers / 1 worker, and read / fixed bytes, search / fixed bytes."""
    out: dict[str, Any] = {}
    for kind in args.servers:
        cases = results.get(kind, {})
        for connections in map(str, args.connections):
            row: dict[str, Any] = {}
            one, two = cases.get("1", {}).get(connections), cases.get("2", {}).get(connections)
            if one and two:
                for name in one:
                    row[f"{name}_2_workers_over_1"] = round(
                        two[name]["requests_per_second"] / max(one[name]["requests_per_second"], 1e-9), 2
                    )
            for workers, by_connections in cases.items():
                measured = by_connections.get(connections)
                if measured:
                    fixed = max(measured["fixed_bytes"]["requests_per_second"], 1e-9)
                    row[f"read_over_fixed_{workers}_workers"] = round(measured["read"]["requests_per_second"] / fixed, 3)
                    row[f"search_over_fixed_{workers}_workers"] = round(
                        measured["search"]["requests_per_second"] / fixed, 3
                    )
            out[f"{kind}_{connections}_connections"] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="per request kind and case")
    parser.add_argument("--postgres", default=os.environ.get("FHIRSRV_BENCH_DATABASE_URL"))
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--servers", type=lambda v: v.split(","), default=["granian", "gunicorn", "waitress"])
    parser.add_argument("--workers", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2])
    parser.add_argument("--connections", type=lambda v: [int(x) for x in v.split(",")], default=[1, 4, 16])
    parser.add_argument("--threads", type=int, default=WORKER_THREADS, help="per worker (fhirsrv serve's default)")
    parser.add_argument("--organizations", type=int, default=None, help="instead of the demo region")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "load_generator": "wrk" if shutil.which("wrk") else "python processes (keep-alive http.client)",
        "seconds": args.seconds,
        "threads_per_worker": args.threads,
        "data": f"{args.organizations} published Organizations" if args.organizations else "the demo region",
        "requests": {"read": "GET /fhir/Organization/{id} (anonymous, authorization on)", "search": SEARCH,
                     "fixed_bytes": f"GET {FIXED} (400 bytes, the same stack)"},
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_sqlite:
            results["sqlite"] = run_backend(f"sqlite:///{tmp}/bench.sqlite3", args, Path(tmp))
        if args.postgres:
            url = fresh_schema(args.postgres, "fhirsrv_workers_bench")
            results["postgresql"] = run_backend(url, args, Path(tmp))
    suffix = "_quick" if args.organizations else ""
    backends = "_".join(b for b in ("sqlite", "postgresql") if b in results)
    out = HERE / "results" / f"workers_bench_{backends}{suffix}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["sqlite" if "sqlite" in results else "postgresql"]["ratios"], indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
