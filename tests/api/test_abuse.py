"""A Bundle is many requests in one: what one anonymous Bundle may cost is bounded like them.

The issue's measurements: a batch of 100 × `HealthcareService?_count=1000` answered 472 MB and
took the process from 715 MB to 2.26 GB, and a Bundle of 10,000 entries counted as one request
for the rate limiter."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhirsrv.access.principal import SERVER
from fhirsrv.app import create_app
from fhirsrv.interactions import writes
from fhirsrv.settings import Settings
from tests.api.helpers import FHIR, count_rows, org
from tests.live_server import call, probe_during, serving

# Anonymous callers may read a published structure.
PUBLISHED = {
    "extension": [
        {
            "url": "https://sos.example.org/fhir/StructureDefinition/sos-entry-lifecycle",
            "extension": [{"url": "status", "valueCode": "published"}],
        }
    ]
}


def batch(*urls: str, kind: str = "batch", writes_: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        {"request": {"method": "POST", "url": res["resourceType"]}, "resource": res} for res in writes_ or []
    ]
    entries += [{"request": {"method": "GET", "url": url}} for url in urls]
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


@pytest.fixture
def make_app(db_url: str) -> Iterator[Any]:
    """Apps on one database holding `organizations` published Organizations of ~2 kB each."""
    apps: list[Flask] = []

    def build(organizations: int = 0, **overrides: Any) -> Flask:
        values: dict[str, Any] = {"auth": False, **overrides}
        settings = Settings.from_env(
            database_url=db_url, load_demo=False, base_url="http://fhir.test/fhir", **values
        )
        app = create_app(settings)
        apps.append(app)
        services = app.extensions["fhirsrv"]
        with services.engine.begin() as conn:
            for i in range(organizations):
                res = {**org(f"Structure {i} " + "x" * 2000), **PUBLISHED}
                writes.create(services, conn, res, f"o{i}", actor=SERVER)
        return app

    yield build
    for app in apps:
        app.extensions["fhirsrv"].engine.dispose()


def _outcome(answer: Any, status: int, variable: str) -> None:
    assert answer.status_code == status, answer.get_data(as_text=True)[:500]
    issue = answer.get_json()["issue"][0]
    assert issue["code"] in ("too-costly", "throttled")
    assert variable in issue["diagnostics"]


def _post(client: FlaskClient, bundle: dict[str, Any]) -> Any:
    return client.post("/fhir", json=bundle, headers={"Content-Type": FHIR})


def test_a_bundle_whose_reads_pass_the_budget_is_refused_before_anything_runs(make_app):
    client = make_app().test_client()
    before = count_rows(client)
    # 11 searches of 1,000 (the server's max _count) ask for 11,000 resources.
    bundle = batch(*["Organization?_count=1000"] * 11, writes_=[org("Written?")])
    _outcome(_post(client, bundle), 413, "FHIRSRV_MAX_BUNDLE_RESULTS")
    assert count_rows(client) == before
    # Reads by id count one each; searches without _count their default page.
    assert _post(client, batch(*["Organization?_count=1000"] * 10)).status_code == 200
    assert _post(client, batch(*["Organization/x"] * 100, *["Organization"] * 20)).status_code == 200
    # Counting the reads does not turn one bad entry of a batch into the whole batch's failure.
    answer = _post(client, batch("Organization/x/y/z", "Organization?_count=10"))
    assert answer.status_code == 200
    assert [e["response"]["status"][:3] for e in answer.get_json()["entry"]] == ["400", "200"]


def test_a_batch_answer_stops_at_its_byte_budget(make_app):
    app = make_app(organizations=30, max_response_bytes=100_000)
    client = app.test_client()
    # Each search answers ~60 kB: the second passes the budget, the rest are not run.
    tracemalloc.start()
    try:
        answer = _post(client, batch(*["Organization?_count=30"] * 40))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 200
    assert len(answer.get_data()) < 200_000  # the budget, plus the entry that crossed it
    statuses = [e["response"]["status"] for e in answer.get_json()["entry"]]
    assert statuses[:2] == ["200 OK", "200 OK"]
    assert all(s.startswith("422") for s in statuses[2:])
    refused = answer.get_json()["entry"][2]["response"]["outcome"]["issue"][0]
    assert refused["code"] == "too-costly" and "FHIRSRV_MAX_RESPONSE_BYTES" in refused["diagnostics"]
    # Unbounded, the answer was 40 × 60 kB = 2.4 MB, and held more than once in memory.
    assert peak < 2_000_000


def test_a_transaction_past_the_byte_budget_fails_whole(make_app):
    client = make_app(organizations=30, max_response_bytes=100_000).test_client()
    before = count_rows(client)
    bundle = batch(*["Organization?_count=30"] * 5, kind="transaction", writes_=[org("Not kept")])
    _outcome(_post(client, bundle), 422, "FHIRSRV_MAX_RESPONSE_BYTES")
    assert count_rows(client) == before


def test_each_entry_counts_against_the_rate_limit(make_app):
    client = make_app(organizations=1, auth=True, rate_limit_anonymous=10).test_client()
    # Ten entries are the whole minute's allowance of an anonymous caller: the next request waits.
    assert _post(client, batch(*["Organization/o0"] * 10)).status_code == 200
    refused = client.get("/fhir/Organization/o0")
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    # Eleven entries are more than the minute allows at all: refused, whatever the wait.
    client = make_app(auth=True, rate_limit_anonymous=10).test_client()
    _outcome(_post(client, batch(*["Organization/o0"] * 11)), 429, "FHIRSRV_RATE_LIMIT_ANONYMOUS")


def test_a_big_batch_neither_balloons_nor_stalls_other_clients(make_app):
    app = make_app(organizations=200)
    attack = batch(*["Organization?_count=1000"] * 100)
    with serving(app) as base_url:
        probed = probe_during(base_url, lambda: call("POST", base_url, attack))
    assert probed.failures == []
    assert probed.attack is not None
    # Refused before it ran, rather than 100 × 200 resources (40 MB) built and sent.
    assert probed.attack.status == 413
    assert len(probed.attack.body) < 10_000
