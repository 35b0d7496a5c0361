"""Notification latency of rest-hook Subscriptions: from a write's commit to its notification's
arrival at a receiver, under a steady load of matching writes.

`fhirsrv serve` runs as in production (its own process, the demo region, authorization on);
a partner's Subscription follows the issue's criteria (pain management offers in Finistère),
and a receiver in this process records each notification as it arrives. A regional
administrator's client then updates the matching offers at --rate writes a second for
--seconds, open loop (each write is sent at its time on one of WRITERS connections, whatever
the previous one did). Offers are updated in turn, each about once a second. Each event's
latency is its arrival time minus its `timestamp` (the instant its change committed, stamped by
the server under the change log's lock, to the millisecond; same machine, same clock).

Writes of one offer the loop has not looked at yet make one event (the offer as it then is):
the events are counted against the writes. With one worker process a write wakes the loop of
its own process at once; with several, a write of another worker is seen at the next poll
(FHIRSRV_SUBSCRIPTION_POLL_SECONDS), which the results report.

Usage: python bench/notification_bench.py [--rate 20] [--seconds 30] [--workers 1] [--poll 1.0]
                                          [--postgres URL] [--no-sqlite]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _cli import write_results  # noqa: E402
from _pg import fresh_schema  # noqa: E402
from http_bench import _free_port, _percentiles, _wait  # noqa: E402

CATEGORY = "https://sos.example.org/fhir/CodeSystem/sos-category"
CRITERIA = f"HealthcareService?specialty:below={CATEGORY}|douleur&departement=29"
FHIR = "application/fhir+json"
# Connections the writes are sent on: a write waiting for the database must not delay the next.
WRITERS = 4


class Receiver:
    """Records, per event number, when its notification arrived and its commit instant."""

    def __init__(self) -> None:
        self.arrivals: dict[int, tuple[float, float]] = {}  # number -> (arrival, committed)
        self.handshakes = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                arrived = time.time()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.record(arrived, body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def record(self, arrived: float, body: dict[str, Any]) -> None:
        parameters = body["entry"][0]["resource"]["parameter"]
        with self.lock:
            for p in parameters:
                if p["name"] == "type" and p["valueCode"] == "handshake":
                    self.handshakes += 1
                if p["name"] != "notification-event":
                    continue
                parts = {part["name"]: part for part in p["part"]}
                number = int(parts["event-number"]["valueString"])
                committed = datetime.fromisoformat(parts["timestamp"]["valueInstant"]).timestamp()
                self.arrivals.setdefault(number, (arrived, committed))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Server:
    """`fhirsrv serve` on the database, with the demo region loaded at its first start."""

    def __init__(self, url: str, receiver: Receiver, workers: int, poll: float, tmp: Path) -> None:
        self.url = url
        self.port = _free_port()
        env = {
            **os.environ,
            "FHIRSRV_DATABASE_URL": url,
            "FHIRSRV_DATA_DIR": str(tmp),
            "FHIRSRV_BASE_URL": f"http://127.0.0.1:{self.port}/fhir",
            "FHIRSRV_RATE_LIMIT_CLIENT": "0",
            "FHIRSRV_TOKEN_LIFETIME": "3600",
            "FHIRSRV_SUBSCRIPTION_ALLOWED_ENDPOINTS": receiver.origin,
            "FHIRSRV_SUBSCRIPTION_POLL_SECONDS": str(poll),
        }
        command = [
            sys.executable,
            "-c",
            "from fhirsrv.cli import main; main()",
            "serve",
            "--port",
            str(self.port),
        ]
        self.log = open(tmp / "serve.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(command + ["--workers", str(workers)], env=env, stderr=self.log)
        _wait_long(self.port, self.proc)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def token(self, name: str, scopes: str, role: str) -> dict[str, str]:
        from fhirsrv.auth.clients import add_client
        from fhirsrv.storage.engine import make_engine

        engine = make_engine(self.url)
        with engine.begin() as conn:
            client, secret = add_client(conn, name, scopes, role)
        engine.dispose()
        conn = self.connection()
        basic = base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()
        conn.request(
            "POST",
            "/fhir/token",
            body="grant_type=client_credentials",
            headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        token = json.loads(conn.getresponse().read())["access_token"]
        return {"Authorization": f"Bearer {token}", "Content-Type": FHIR}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def _wait_long(port: int, proc: subprocess.Popen) -> None:
    """The first start loads the demo region (about 10 s, longer on a loaded machine)."""
    for _ in range(20):
        try:
            _wait(port, proc)
            return
        except SystemExit:
            if proc.poll() is not None:
                raise
    raise SystemExit("server did not start")


def _call(
    conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str], body: Any = None
) -> Any:
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    answer = conn.getresponse()
    data = answer.read()
    if answer.status >= 300:
        raise SystemExit(f"{method} {path}: {answer.status} {data[:300]!r}")
    return json.loads(data) if data else None


def measure(url: str, rate: float, seconds: float, workers: int, poll: float) -> dict[str, Any]:
    receiver = Receiver()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(url, receiver, workers, poll, Path(tmp))
        try:
            return _measure(server, receiver, rate, seconds, workers, poll)
        finally:
            server.stop()
            receiver.close()


def _measure(
    server: Server, receiver: Receiver, rate: float, seconds: float, workers: int, poll: float
) -> dict:
    admin = server.token("bench DSRC", "system/*.cruds", "regional-admin")
    partner = server.token("bench plateforme", "system/*.rs system/Subscription.cruds", "partner-reader")
    conn = server.connection()
    found = _call(conn, "GET", f"/fhir/{CRITERIA}&_count=100", partner)  # what the partner may see
    offers = [{k: v for k, v in e["resource"].items() if k != "meta"} for e in found.get("entry", [])]
    if not offers:
        raise SystemExit("no offer of the demo region matches the criteria")
    subscription = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "notification_bench",
        "criteria": CRITERIA,
        "channel": {"type": "rest-hook", "endpoint": f"{receiver.origin}/notify", "payload": FHIR},
    }
    _call(conn, "POST", "/fhir/Subscription", partner, subscription)
    deadline = time.time() + 60
    while receiver.handshakes == 0 and time.time() < deadline:
        time.sleep(0.05)
    if receiver.handshakes == 0:
        raise SystemExit("no handshake")
    time.sleep(max(poll, 0.5))  # the Subscription active before the load starts
    count = int(rate * seconds)
    writes: list[float] = []
    late: list[float] = []
    start = time.perf_counter()

    def writer(lane: int) -> None:
        """Every WRITERS-th write, each sent at its time (open loop): one slow write does not
        hold back the others."""
        own = server.connection()
        for n in range(lane, count, WRITERS):
            due = start + n / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            offer = offers[n % len(offers)]
            body = offer | {"name": f"{offer['name']} #{n}"}
            sent = time.perf_counter()
            _call(own, "PUT", f"/fhir/HealthcareService/{offer['id']}", admin, body)
            writes.append(time.perf_counter() - sent)
            late.append(max(sent - due, 0.0))

    lanes = [threading.Thread(target=writer, args=(lane,)) for lane in range(WRITERS)]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    elapsed = time.perf_counter() - start
    last, quiet = len(receiver.arrivals), time.time()
    while time.time() - quiet < max(3.0, 3 * poll):  # until no notification comes for a while
        time.sleep(0.1)
        if len(receiver.arrivals) != last:
            last, quiet = len(receiver.arrivals), time.time()
    latencies = [arrived - committed for arrived, committed in receiver.arrivals.values()]
    numbers = sorted(receiver.arrivals)
    return {
        "workers": workers,
        "poll_seconds": poll,
        "matching_offers": len(offers),
        "writes": count,
        "writes_per_second_achieved": round(count / elapsed, 2),
        "write_latency": _percentiles(writes),
        "writes_sent_late": _percentiles(late),
        "events_received": len(numbers),
        "event_numbers_contiguous": numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        if numbers
        else True,
        "commit_to_receiver": _percentiles(latencies),
        "commit_to_receiver_max_ms": round(max(latencies) * 1000, 3) if latencies else None,
        "commit_to_receiver_mean_ms": round(statistics.fmean(latencies) * 1000, 3) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=20.0, help="matching writes a second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1], help="processes of fhirsrv serve (several: each)"
    )
    parser.add_argument("--poll", type=float, default=1.0, help="FHIRSRV_SUBSCRIPTION_POLL_SECONDS")
    parser.add_argument("--postgres", default=os.environ.get("FHIRSRV_BENCH_DATABASE_URL"))
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    args = parser.parse_args()
    from datetime import UTC

    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "criteria": CRITERIA,
        "rate": args.rate,
        "seconds": args.seconds,
        "machine": f"{os.cpu_count()} cores",
    }
    for workers in args.workers:
        if not args.no_sqlite:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/bench.sqlite3"
                results[f"sqlite, {workers} worker(s)"] = measure(
                    url, args.rate, args.seconds, workers, args.poll
                )
        if args.postgres:
            url = fresh_schema(args.postgres, "fhirsrv_nbench")
            results[f"postgresql, {workers} worker(s)"] = measure(
                url, args.rate, args.seconds, workers, args.poll
            )
    suffix = "_postgresql" if args.no_sqlite else ""
    write_results(f"notification_bench{suffix}", results)


if __name__ == "__main__":
    main()
