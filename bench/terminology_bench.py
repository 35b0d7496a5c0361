"""Terminology operations on the shipped catalogue against the bare SQL of the same lookup.

Usage: python bench/terminology_bench.py [--requests 500] [--postgres URL]
Requests go through the WSGI app in process (no socket): the figure is the server's own work.
The baseline is the SQL each operation cannot avoid (finding the ValueSet/CodeSystem by its
canonical URL; for `:below`, the closure and token-index join), run directly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _pg import fresh_schema  # noqa: E402
from http_bench import _percentiles  # noqa: E402

BASE = "https://sos.example.org/fhir"
CAT = f"{BASE}/CodeSystem/sos-category"
OPERATIONS = {
    "expand_filter": f"/fhir/ValueSet/$expand?url={BASE}/ValueSet/sos-category&filter=dietetique",
    "validate_code": f"/fhir/ValueSet/$validate-code?url={BASE}/ValueSet/sos-inca-basket&system={CAT}&code=douleur",
    "search_below": f"/fhir/HealthcareService?specialty:below={CAT}|douleur&_count=20",
}


def _time(fn, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def run(url: str, n: int) -> dict:
    from fhirsrv.app import create_app
    from fhirsrv.interactions.load import load_paths
    from fhirsrv.settings import Settings
    from fhirsrv.storage.schema import code_closure, idx_token, idx_uri, resource

    app = create_app(Settings.from_env(database_url=url, load_demo=False, auth=False))
    services = app.extensions["fhirsrv"]
    load_paths(services, [services.settings.terminology_dir, services.settings.seed_dir / "demo"])
    client = app.test_client()
    out: dict = {"operations": {}, "bare_sql": {}}
    for name, path in OPERATIONS.items():
        for _ in range(20):
            assert client.get(path).status_code == 200
        out["operations"][name] = _percentiles(_time(lambda p=path: client.get(p).data, n))
    by_url = (
        select(resource.c.content)
        .join(idx_uri, idx_uri.c.rid == resource.c.rid)
        .where(
            idx_uri.c.res_type == "ValueSet",
            idx_uri.c.param == "url",
            idx_uri.c.value == f"{BASE}/ValueSet/sos-category",
        )
    )
    branch = select(code_closure.c.descendant).where(
        code_closure.c.system == CAT, code_closure.c.ancestor == "douleur"
    )

    def below(conn):  # type: ignore[no-untyped-def]
        codes = [c for (c,) in conn.execute(branch)]
        query = select(idx_token.c.rid).where(
            idx_token.c.res_type == "HealthcareService",
            idx_token.c.param == "specialty",
            idx_token.c.system == CAT,
            idx_token.c.code.in_(codes),
        )
        return conn.execute(query.limit(21)).all()

    with services.engine.connect() as conn:
        lookup = _percentiles(_time(lambda: conn.execute(by_url).all(), n))
        out["bare_sql"] = {
            "expand_filter": lookup,
            "validate_code": lookup,
            "search_below": _percentiles(_time(lambda: below(conn), n)),
        }
    out["ratio_median"] = {
        k: round(out["operations"][k]["median_ms"] / max(out["bare_sql"][k]["median_ms"], 1e-3), 1)
        for k in OPERATIONS
    }
    services.engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--postgres", default=os.environ.get("FHIRSRV_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    results: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "requests": args.requests,
        "operations": OPERATIONS,
    }
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = run(f"sqlite:///{tmp}/t.sqlite3", args.requests)
    if args.postgres:
        results["postgresql"] = run(fresh_schema(args.postgres, "fhirsrv_tbench"), args.requests)
    (HERE / "results" / "terminology_bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
