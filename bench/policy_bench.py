"""What the access policy costs on the path users take: the same searches and reads through
HTTP, on one generated directory, by an anonymous caller and a bearer-token client on a
server with authorization on, and on a server with authorization off (no policy), measured
interleaved in one run. The ratio anonymous / authorization-off is the policy's cost.

Usage: python bench/policy_bench.py [--resources 100000] [--requests 200] [--postgres URL] [--no-sqlite]
       python bench/policy_bench.py --resources 100000 --loaded URL   # a directory loaded earlier
"""

from __future__ import annotations

import http.client
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
from http_bench import _free_port, _percentiles, _wait  # noqa: E402
from search_bench import SEARCHES, _load  # noqa: E402

# Reads by id of listed entries: the visibility check of one resource.
READS = ("HealthcareService", "Organization", "Location")


class Server:
    def __init__(self, url: str, auth: bool) -> None:
        self.port = _free_port()
        args = [sys.executable, str(HERE / "_server.py"), url, str(self.port), "100"]
        self.proc = subprocess.Popen(args + (["auth"] if auth else []))
        _wait(self.port, self.proc)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[float, int, bytes]:
        start = time.perf_counter()
        self.conn.request("GET", path, headers=headers or {})
        res = self.conn.getresponse()
        body = res.read()
        return time.perf_counter() - start, res.status, body

    def token(self, url: str) -> str:
        from fhirsrv.auth.clients import add_client
        from fhirsrv.storage.engine import make_engine

        engine = make_engine(url)
        with engine.begin() as conn:
            client, secret = add_client(conn, "bench regional", "system/*.rs", "regional-admin")
        engine.dispose()
        import base64

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


def _listed_ids(server: Server) -> dict[str, str]:
    """One listed entry of each read type, found by an anonymous search."""
    found = {}
    for res_type in READS:
        _, status, body = server.get(f"/fhir/{res_type}?_count=1&_total=none")
        assert status == 200, body[:300]
        found[res_type] = json.loads(body)["entry"][0]["resource"]["id"]
    return found


def measure(url: str, requests: int) -> dict:
    on, off = Server(url, auth=True), Server(url, auth=False)
    try:
        bearer = {"Authorization": f"Bearer {on.token(url)}"}
        paths = {f"search {n}": f"/fhir/{t}?{q}" for n, (t, q) in SEARCHES.items()}
        paths |= {f"read {t}": f"/fhir/{t}/{i}" for t, i in _listed_ids(on).items()}
        callers = {
            "authorization off": (off, {}),
            "anonymous (policy on)": (on, {}),
            "bearer token, regional (policy on)": (on, bearer),
        }
        samples: dict[str, dict[str, list[float]]] = {p: {c: [] for c in callers} for p in paths}
        totals: dict[str, dict[str, object]] = {p: {} for p in paths}
        for path_name, path in paths.items():
            for server, headers in callers.values():
                server.get(path, headers)  # warm the caches and the connection
            for _ in range(requests):
                for caller, (server, headers) in callers.items():  # interleaved: same conditions
                    elapsed, status, body = server.get(path, headers)
                    assert status == 200, (caller, path, body[:300])
                    samples[path_name][caller].append(elapsed)
            for caller, (server, headers) in callers.items():
                _, _, body = server.get(path, headers)
                totals[path_name][caller] = json.loads(body).get("total")
        out: dict = {}
        for path_name in paths:
            stats = {c: _percentiles(s) for c, s in samples[path_name].items()}
            base = stats["authorization off"]["median_ms"]
            out[path_name] = {
                "path": paths[path_name],
                **stats,
                "total_matches": totals[path_name],
                "ratio_anonymous_vs_off_median": round(stats["anonymous (policy on)"]["median_ms"] / base, 2),
                "ratio_bearer_vs_off_median": round(
                    stats["bearer token, regional (policy on)"]["median_ms"] / base, 2
                ),
            }
        return out
    finally:
        on.stop()
        off.stop()


def run(url: str, data: Path | None, requests: int) -> dict:
    """Load the generated directory (or, with `data` None, measure the database as it is)."""
    result: dict = {"load": _load(url, data) if data is not None else "loaded earlier (--loaded)"}
    from fhirsrv.storage.bulk import refresh_statistics
    from fhirsrv.storage.engine import make_engine

    engine = make_engine(url)
    refresh_statistics(engine)
    engine.dispose()
    result["http"] = measure(url, requests)
    return result


def main() -> None:
    parser = directory_parser(
        __doc__,
        resources=100_000,
        loaded_help="a PostgreSQL URL whose schema already holds a generated directory of --resources: "
        "measured as it is, without generating and loading one (a load takes minutes at 100k)",
    )
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    from fhirsrv.seeding.generate import generate

    results = header(args.resources, requests=args.requests)
    if args.loaded:
        results["postgresql"] = run(args.loaded, None, args.requests)
        write_results(f"policy_bench_{args.resources}_postgresql", results)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate(resources=args.resources, seed=1, out_dir=data)
        if not args.no_sqlite:
            results["sqlite"] = run(f"sqlite:///{tmp}/bench.sqlite3", data, args.requests)
        if args.postgres:
            results["postgresql"] = run(fresh_schema(args.postgres, "fhirsrv_pbench"), data, args.requests)
    suffix = "_postgresql" if args.no_sqlite else ""
    write_results(f"policy_bench_{args.resources}{suffix}", results)


if __name__ == "__main__":
    main()
