"""What one abusive client costs the others: the latency of `/metadata` for another client while
one client sends, again and again, the worst request of each kind the server bounds (a
backtracking regex in `$expand`, a big batch, many sort keys, a deep chain, wide includes),
against its idle latency measured in the same run. Aim: median and p95 at most 2 × idle.

Usage: python bench/attack_bench.py [--resources 10000] [--seconds 10] [--postgres URL] [--no-sqlite]
                                   [--workers 2] [--fresh-connections]

The server runs in its own process(es): one waitress process with 4 threads (`--workers 1`, the
embedded default), or `fhirsrv serve --workers N`'s granian set-up, with authorization
on, and every request is anonymous, as the attacks of the issue were. The rate limit is off:
with it, the attacker would mostly be answered 429 and the measure would be of the limiter,
not of the work each request may still ask for. Each attack is the worst request still
accepted (at the limit of each setting), plus, for the big batch and the sort keys, the issue's
own request, which is now refused before it runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _pg import fresh_schema  # noqa: E402
from http_bench import _free_port, _percentiles, _wait  # noqa: E402

STRUCTURES = "https://sos.example.org/fhir/CodeSystem/sos-structure-type"


def _expand(pattern: str) -> bytes:
    vs = {
        "resourceType": "ValueSet",
        "status": "active",
        "compose": {
            "include": [
                {"system": STRUCTURES, "filter": [{"property": "code", "op": "regex", "value": pattern}]}
            ]
        },
    }
    return json.dumps(
        {"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": vs}]}
    ).encode()


def _batch(url: str, times: int) -> bytes:
    entries = [{"request": {"method": "GET", "url": url}} for _ in range(times)]
    return json.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}).encode()


# name -> (method, path, body). The defaults of the settings: 10,000 results per Bundle, 5 sort
# keys, 3 references per chain, 10 include parameters.
ATTACKS: dict[str, tuple[str, str, bytes | None]] = {
    # The pattern: ×3 per character of the code with a backtracking matcher.
    "redos_expand": ("POST", "/fhir/ValueSet/$expand", _expand(".{7}(.*.*)*Zfreeze")),
    "batch_at_budget_10x1000": ("POST", "/fhir", _batch("HealthcareService?_count=1000", 10)),
    "batch_of_the_issue_100x1000": ("POST", "/fhir", _batch("HealthcareService?_count=1000", 100)),
    "sort_5_keys": (
        "GET",
        "/fhir/HealthcareService?_count=1000&_sort=name,-name,_id,-_lastUpdated,name",
        None,
    ),
    "sort_300_keys": ("GET", "/fhir/HealthcareService?_count=1000&_sort=" + ",".join(["name"] * 300), None),
    "chain_3_deep": ("GET", "/fhir/HealthcareService?_count=1000&organization.partof.partof.name=a", None),
    "include_wide": (
        "GET",
        "/fhir/HealthcareService?_count=1000&_include=*&_include:iterate=*&_revinclude=PractitionerRole:service"
        "&_revinclude=Location:organization&_revinclude:iterate=HealthcareService:organization",
        None,
    ),
}


class Client:
    """One keep-alive connection, or with `fresh` a new connection for every request (as a
    crowd of clients arrives: the kernel hands each to whichever worker accepts first)."""

    def __init__(self, port: int, fresh: bool = False) -> None:
        self.port, self.fresh = port, fresh
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def send(self, method: str, path: str, body: bytes | None = None) -> tuple[float, int, int]:
        headers = {"Content-Type": "application/fhir+json"} if body else {}
        start = time.perf_counter()
        if self.fresh:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            headers["Connection"] = "close"
        self.conn.request(method, path, body=body, headers=headers)
        res = self.conn.getresponse()
        size = len(res.read())
        if self.fresh:
            self.conn.close()
        return time.perf_counter() - start, res.status, size


# How much less CPU the attacking client's own process gets (--nice-attacker): an attacker's
# client runs on its own machine; on this one it shares the server's two cores.
ATTACKER_NICENESS = 0
# How the probing client connects (set by --fresh-connections).
FRESH_PROBES = False


def _probe(port: int, seconds: float, stop: threading.Event | None = None) -> list[float]:
    """/metadata, one request after the other, for `seconds` (or until `stop`)."""
    client = Client(port, FRESH_PROBES)
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and not (stop and stop.is_set()):
        elapsed, status, _ = client.send("GET", "/fhir/metadata")
        assert status == 200, status
        samples.append(elapsed)
    return samples


def _attacker(port: int, name: str, seconds: float, results: Any) -> None:
    """The attacking client: the attack again and again for `seconds`; its (time, status, size)s
    sent through `results`."""
    method, path, body = ATTACKS[name]
    if ATTACKER_NICENESS:
        os.nice(ATTACKER_NICENESS)
    attacker = Client(port)
    attacks: list[tuple[float, int, int]] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        attacks.append(attacker.send(method, path, body))
    results.send(attacks)
    results.close()


def _attack(port: int, name: str, seconds: float) -> dict:
    """The attack from a process of its own, as another client is: its reading of big answers
    does not hold the probing client's interpreter, which would add to the probe's times."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_attacker, args=(port, name, seconds, sender))
    process.start()
    sender.close()
    found: list[list[tuple[float, int, int]]] = []
    stop = threading.Event()

    def collect() -> None:
        found.append(receiver.recv())
        stop.set()

    collector = threading.Thread(target=collect)
    collector.start()
    probes = _probe(port, seconds * 10, stop)  # until the last attack has been answered
    collector.join()
    process.join()
    attacks = found[0]
    return {
        "probes": probes,
        "attack": {
            "requests": len(attacks),
            "statuses": sorted({status for _, status, _ in attacks}),
            "answer_bytes": max(size for _, _, size in attacks),
            **{f"attack_{k}": v for k, v in _percentiles([t for t, _, _ in attacks]).items()},
        },
    }


def _start(url: str, workers: int, tmp: Path) -> tuple[subprocess.Popen, int]:
    """One waitress process (4 threads) for 1 worker, else `fhirsrv serve --workers N`'s own
    granian set-up (bench/_workers_app.py, its default threads a worker), authorization on, rate
    limits off."""
    if workers > 1:
        from workers_bench import start

        from fhirsrv.cli import WORKER_THREADS

        return start("granian", workers, WORKER_THREADS, url, tmp)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "_server.py"), url, str(port), "100", "auth"])
    _wait(port, proc)
    return proc, port


def measure(url: str, seconds: float, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = _start(url, workers, Path(tmp))
        try:
            return _measure(port, seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def _measure(port: int, seconds: float) -> dict:
    _probe(port, 1.0)  # warm-up
    idle = _percentiles(_probe(port, seconds))
    out: dict = {"idle_metadata": idle}
    for name in ATTACKS:
        found = _attack(port, name, seconds)
        during = _percentiles(found["probes"])
        out[name] = {
            "metadata_during": during,
            **found["attack"],
            "ratio_median_vs_idle": round(during["median_ms"] / idle["median_ms"], 2),
            "ratio_p95_vs_idle": round(during["p95_ms"] / idle["p95_ms"], 2),
        }
    return out


def _load(url: str, data: Path) -> dict:
    from fhirsrv.app import build_services
    from fhirsrv.interactions.load import load_paths
    from fhirsrv.settings import Settings

    services = build_services(Settings.from_env(database_url=url, load_demo=False))
    start = time.perf_counter()
    # The shipped terminology too: the $expand attack filters one of its code systems.
    report = load_paths(services, [services.settings.terminology_dir, data])
    services.engine.dispose()
    return {"resources": sum(report.counts.values()), "seconds": round(time.perf_counter() - start, 1)}


def run(url: str, data: Path, seconds: float, workers: int) -> dict:
    return {"load": _load(url, data), "http": measure(url, seconds, workers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="per attack, and for the idle probe")
    parser.add_argument("--postgres", default=os.environ.get("FHIRSRV_BENCH_DATABASE_URL"))
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument(
        "--workers", type=int, default=1, help="1: one waitress process; 2+: fhirsrv serve --workers"
    )
    parser.add_argument(
        "--fresh-connections", action="store_true", help="the probing client opens a connection per request"
    )
    parser.add_argument(
        "--nice-attacker",
        type=int,
        default=0,
        help="run the attacking client at this niceness (its CPU is not the server's)",
    )
    args = parser.parse_args()
    global FRESH_PROBES, ATTACKER_NICENESS
    FRESH_PROBES = args.fresh_connections
    ATTACKER_NICENESS = args.nice_attacker
    from fhirsrv.seeding.generate import generate

    results: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "resources": args.resources,
        "seconds_per_attack": args.seconds,
        "workers": args.workers,
        "heavy_workers": int(os.environ.get("FHIRSRV_HEAVY_WORKERS", "1")) if args.workers > 1 else 0,
        "attacker_niceness": args.nice_attacker,
        "probe_connections": "one per request" if args.fresh_connections else "one keep-alive",
        "machine": f"{os.cpu_count()} cores",
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate(resources=args.resources, seed=1, out_dir=data)
        if not args.no_sqlite:
            results["sqlite"] = run(f"sqlite:///{tmp}/bench.sqlite3", data, args.seconds, args.workers)
        if args.postgres:
            results["postgresql"] = run(
                fresh_schema(args.postgres, "fhirsrv_abench"), data, args.seconds, args.workers
            )
    suffix = ("_postgresql" if args.no_sqlite else "") + (
        f"_{args.workers}workers" if args.workers > 1 else ""
    )
    suffix += "_fresh" if args.fresh_connections else ""
    out = HERE / "results" / f"attack_bench_{args.resources}{suffix}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
