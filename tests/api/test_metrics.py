"""/metrics: who may read it, what it counts after real requests, the pool and the outbox,
and the multi-process mode a server of several worker processes (granian) uses.

Scrapes are parsed with prometheus-client's own parser, as Prometheus would read them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from fhirsrv.app import create_app
from fhirsrv.settings import Settings, SettingsError
from fhirsrv.storage.engine import write_transaction
from fhirsrv.storage.jsonfmt import utcnow
from fhirsrv.storage.schema import outbox as outbox_table
from fhirsrv.workflow.outbox import enqueue
from tests.api.helpers import FHIR, org, post

TOKEN = "metrics-token-for-the-tests-0123456789"
PROJECT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _settings(db_url: str, **overrides: object) -> Settings:
    given: dict[str, object] = {"load_demo": False, "auth": False, "base_url": "http://fhir.test/fhir"}
    return Settings.from_env(database_url=db_url, **(given | overrides))


@pytest.fixture
def metrics_app(db_url: str) -> Iterator[Flask]:
    app = create_app(_settings(db_url, metrics_allow="127.0.0.1/32"))
    yield app
    app.extensions["fhirsrv"].engine.dispose()


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def scrape(client: FlaskClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def requests(found: Samples, interaction: str, resource_type: str, status: int) -> float:
    key = ("fhirsrv_http_requests_total", frozenset({
        ("interaction", interaction), ("resource_type", resource_type), ("status", str(status))
    }))  # fmt: skip
    return found.get(key, 0.0)


def latency_count(found: Samples, interaction: str, resource_type: str) -> float:
    key = ("fhirsrv_http_request_duration_seconds_count", frozenset({
        ("interaction", interaction), ("resource_type", resource_type)
    }))  # fmt: skip
    return found.get(key, 0.0)


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


# ------------------------------------------------------------------------------------ access


def test_closed_by_default(client: FlaskClient):
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert "FHIRSRV_METRICS_TOKEN" in response.get_json()["issue"][0]["diagnostics"]


def test_the_bearer_token_opens_it_even_with_authorization_on(db_url: str):
    """The API's token check never sees the metrics token (it would answer 401 to it)."""
    app = create_app(_settings(db_url, auth=True, metrics_token=TOKEN))
    client = app.test_client()
    try:
        assert client.get("/metrics").status_code == 403
        assert client.get("/metrics", headers={"Authorization": "Bearer " + TOKEN[:-1]}).status_code == 403
        assert client.get("/metrics", headers={"Authorization": "Basic " + TOKEN}).status_code == 403
        assert "fhirsrv_db_pool_size" in value_names(scrape(client, Authorization="Bearer " + TOKEN))
        # The loopback address alone opens nothing when only the token is configured.
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 403
    finally:
        app.extensions["fhirsrv"].engine.dispose()


def value_names(found: Samples) -> set[str]:
    return {name for name, _ in found}


@pytest.mark.parametrize(
    ("address", "status"),
    [("10.1.2.3", 200), ("192.168.1.9", 403), ("::ffff:10.1.2.3", 200), ("2001:db8::1", 200), ("2001:db9::1", 403)],
)
def test_the_address_allow_list(db_url: str, address: str, status: int):
    app = create_app(_settings(db_url, metrics_allow="10.0.0.0/8, 2001:db8::/32"))
    try:
        answer = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": address})
        assert answer.status_code == status
    finally:
        app.extensions["fhirsrv"].engine.dispose()


def test_behind_a_trusted_proxy_the_forwarded_address_is_judged(db_url: str):
    app = create_app(_settings(db_url, metrics_allow="10.0.0.0/8", trusted_proxies=1))
    client = app.test_client()
    try:
        proxied = {"REMOTE_ADDR": "127.0.0.1"}
        assert client.get("/metrics", environ_base=proxied, headers={"X-Forwarded-For": "10.9.9.9"}).status_code == 200
        outsider = client.get("/metrics", environ_base=proxied, headers={"X-Forwarded-For": "203.0.113.5"})
        assert outsider.status_code == 403
    finally:
        app.extensions["fhirsrv"].engine.dispose()


# ---------------------------------------------------------------------------------- contents


def test_counts_change_by_the_requests_made(metrics_app: Flask):
    client = metrics_app.test_client()
    created = post(client, org("Centre de soins de support"))
    assert created.status_code == 201
    org_id = created.get_json()["id"]
    before = scrape(client)

    for _ in range(3):
        assert client.get(f"/fhir/Organization/{org_id}").status_code == 200
    for _ in range(2):
        assert client.get("/fhir/Organization/no-such-entry-4711").status_code == 404
    assert client.get("/fhir/Organization?name=centre").status_code == 200
    assert client.get(f"/fhir/Organization/{org_id}/_history/1").status_code == 200
    assert client.get("/fhir/Unheard/x-42").status_code == 404
    assert post(client, org("Ligue")).status_code == 201
    for kind in ("batch", "transaction"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [
            {"request": {"method": "GET", "url": f"Organization/{org_id}"}}
        ]}  # fmt: skip
        assert client.post("/fhir", json=bundle, headers={"Content-Type": FHIR}).status_code == 200
    assert client.get("/fhir/metadata").status_code == 200

    after = scrape(client)

    def delta(interaction: str, resource_type: str, status: int) -> float:
        return requests(after, interaction, resource_type, status) - requests(before, interaction, resource_type, status)

    assert delta("read", "Organization", 200) == 3
    assert delta("read", "Organization", 404) == 2
    assert delta("search-type", "Organization", 200) == 1
    assert delta("vread", "Organization", 200) == 1
    assert delta("read", "unknown", 404) == 1
    assert delta("create", "Organization", 201) == 1
    assert delta("batch", "", 200) == 1
    assert delta("transaction", "", 200) == 1
    assert delta("capabilities", "", 200) == 1
    assert delta("metrics", "", 200) == 1  # the first scrape, counted once it was answered
    assert latency_count(after, "read", "Organization") - latency_count(before, "read", "Organization") == 5
    # Bounded labels: no id, no raw path, no unknown type's name.
    text = client.get("/metrics").get_data(as_text=True)
    for free_text in (org_id, "no-such-entry-4711", "Unheard", "x-42", "/fhir"):
        assert free_text not in text


def test_the_pool_gauges_follow_connections_in_use(metrics_app: Flask):
    client = metrics_app.test_client()
    engine = metrics_app.extensions["fhirsrv"].engine
    idle = scrape(client)
    assert value(idle, "fhirsrv_db_pool_checked_out") == 0
    assert (value(idle, "fhirsrv_db_pool_size"), value(idle, "fhirsrv_db_pool_max")) == (8, 16)
    with engine.connect(), engine.connect():
        assert value(scrape(client), "fhirsrv_db_pool_checked_out") == 2
    assert value(scrape(client), "fhirsrv_db_pool_checked_out") == 0


def test_the_outbox_depth(metrics_app: Flask):
    client = metrics_app.test_client()
    engine = metrics_app.extensions["fhirsrv"].engine
    empty = scrape(client)
    assert value(empty, "fhirsrv_outbox_messages", status="pending") == 0
    assert value(empty, "fhirsrv_outbox_scrape_success") == 1
    now = utcnow()
    with write_transaction(engine) as conn:
        for key, when in (("due", now - timedelta(hours=1)), ("later", now + timedelta(days=1)), ("bad", now)):
            enqueue(
                conn, template="published", recipients=["referent@example.org"], context={"structure": "S"},
                entry="Organization/o1", dedupe_key=key, now=when,
            )  # fmt: skip
        conn.execute(update(outbox_table).where(outbox_table.c.dedupe_key == "bad").values(status="failed"))
    found = scrape(client)
    assert value(found, "fhirsrv_outbox_messages", status="pending") == 2
    assert value(found, "fhirsrv_outbox_messages", status="failed") == 1
    assert value(found, "fhirsrv_outbox_messages", status="sending") == 0
    assert value(found, "fhirsrv_outbox_due") == 1


def test_the_subscriptions_delivery_queue(db_url: str):
    """Notifications matched but not delivered (the receiver refuses connections here)."""
    from fhirsrv.sync.delivery import Delivery

    app = create_app(_settings(db_url, metrics_allow="127.0.0.1/32", subscription_allowed_endpoints="http://127.0.0.1:9"))
    try:
        client = app.test_client()
        empty = scrape(client)
        assert value(empty, "fhirsrv_subscription_events_queued") == 0
        assert value(empty, "fhirsrv_subscription_scrape_success") == 1
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "metrics",
            "criteria": "Organization?name=suivie",
            "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/notify"},
        }
        assert post(client, subscription).status_code == 201
        delivery = Delivery(app.extensions["fhirsrv"])
        assert delivery.run_pass() is not None  # set up; the handshake fails
        for name in ("Suivie par la plateforme", "Autre structure"):
            assert post(client, org(name)).status_code == 201
        assert delivery.run_pass() is not None  # one event queued; still no receiver
        found = scrape(client)
        assert value(found, "fhirsrv_subscription_events_queued") == 1
        assert value(found, "fhirsrv_subscription_oldest_event_seconds") >= 0
        assert value(found, "fhirsrv_subscriptions", status="requested") == 1
        assert value(found, "fhirsrv_subscriptions", status="active") == 0
    finally:
        app.extensions["fhirsrv"].engine.dispose()


# ----------------------------------------------------------------------------- multi-process

# A worker process of a multi-process server: an app on the shared database, some requests.
_WORKER = """
import json, sys
from fhirsrv.app import create_app
from fhirsrv.settings import Settings
app = create_app(Settings.from_env(load_demo=False, auth=False, metrics_allow="127.0.0.1/32"))
client = app.test_client()
for _ in range(int(sys.argv[1])):
    assert client.get("/fhir/Organization/missing").status_code == 404
if sys.argv[2:]:  # the scraping worker, once the others have exited
    print(json.dumps(client.get("/metrics").get_data(as_text=True)))
else:
    import os
    print(os.getpid())
"""


def test_several_worker_processes_add_up_and_a_dead_one_leaves_the_pool_gauges(tmp_path: Path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(PROJECT),
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "FHIRSRV_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.sqlite3'}",
        "FHIRSRV_JWT_KEY_FILE": str(tmp_path / "key.pem"),
    }

    def worker(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", _WORKER, *args], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    pids = [worker("3"), worker("2")]
    assert len(list(folder.glob("gauge_live*"))) == 2  # the exited workers' pool gauges, for now
    found = samples(json.loads(worker("1", *pids)))
    assert requests(found, "read", "Organization", 404) == 6  # 3 + 2 + the scraping worker's 1: kept
    assert value(found, "fhirsrv_db_pool_size") == 8  # the scraping worker's pool alone
    assert value(found, "fhirsrv_outbox_scrape_success") == 1
    assert len(list(folder.glob("gauge_live*"))) == 1  # the exited workers' were retired


def test_a_multiprocess_directory_set_after_the_start_is_refused(db_url: str, tmp_path: Path):
    """prometheus-client chose in-memory counting when this test process started."""
    with pytest.raises(SettingsError, match="PROMETHEUS_MULTIPROC_DIR"):
        create_app(_settings(db_url, prometheus_multiproc_dir=str(tmp_path)))
