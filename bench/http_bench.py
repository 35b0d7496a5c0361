"""Read and create latency through HTTP on SQLite and PostgreSQL, against a fixed-bytes baseline.

Usage: python bench/http_bench.py [--requests 2000] [--postgres URL]
The server runs in its own process (as in production); one keep-alive client sends requests
one at a time, so the figures are per-request latency, not throughput under contention.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
from _pg import fresh_schema  # noqa: E402

ORG = {
    "resourceType": "Organization",
    "identifier": [{"system": "http://finess.sante.gouv.fr", "value": "290000017"}],
    "active": True,
    "name": "Comité du Finistère de la Ligue contre le cancer",
    "telecom": [
        {"system": "phone", "value": "02 99 00 00 00"},
        {"system": "email", "value": "contact@example.org"},
    ],
    "address": [{"line": ["1 rue de l'Exemple"], "city": "Quimper", "postalCode": "29000", "district": "29"}],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 3),
        "n": len(ordered),
    }


def _timed(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> tuple[float, int]:
    headers = {"Content-Type": "application/fhir+json"} if body else {}
    start = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    res = conn.getresponse()
    res.read()
    return time.perf_counter() - start, res.status


def run_backend(name: str, url: str, requests: int) -> dict:
    port = _free_port()
    body = json.dumps(ORG).encode()
    proc = subprocess.Popen([sys.executable, str(HERE / "_server.py"), url, str(port), str(len(body) + 120)])
    try:
        _wait(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for _ in range(50):  # warm-up: connection pool, caches
            _timed(conn, "GET", "/baseline/fixed")
        creates = []
        for _ in range(requests):
            elapsed, status = _timed(conn, "POST", "/fhir/Organization", body)
            assert status == 201, status
            creates.append(elapsed)
        # Ids of what we created, for reads.
        conn.request("GET", "/fhir/Organization/_history?_count=1000")
        history = json.loads(conn.getresponse().read())
        org_ids = [e["fullUrl"].rsplit("/", 1)[1] for e in history["entry"]]
        rng = random.Random(7)
        baseline, reads = [], []
        for _ in range(requests):
            elapsed, status = _timed(conn, "GET", "/baseline/fixed")
            baseline.append(elapsed)
            elapsed, status = _timed(conn, "GET", f"/fhir/Organization/{rng.choice(org_ids)}")
            assert status == 200, status
            reads.append(elapsed)
        result = {
            "baseline_fixed_bytes": _percentiles(baseline),
            "read": _percentiles(reads),
            "create": _percentiles(creates),
        }
        base = result["baseline_fixed_bytes"]["median_ms"]
        result["ratio_read_vs_baseline"] = round(result["read"]["median_ms"] / base, 2)
        result["ratio_create_vs_baseline"] = round(result["create"]["median_ms"] / base, 2)
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--postgres", default=os.environ.get("FHIRSRV_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    results: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "requests": args.requests,
        "machine": f"{os.cpu_count()} cores",
    }
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = run_backend("sqlite", f"sqlite:///{tmp}/bench.sqlite3", args.requests)
    if args.postgres:
        url = fresh_schema(args.postgres, "fhirsrv_bench")
        results["postgresql"] = run_backend("postgresql", url, args.requests)
    out = HERE / "results" / "http_bench.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
