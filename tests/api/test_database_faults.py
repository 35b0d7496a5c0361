"""A database that hangs, refuses or is too slow answers 503 with Retry-After, never a 500 nor a
request that waits forever; and nothing of the request is written.

The faults are real: a loopback proxy to PostgreSQL that starts hanging or closes its port,
and a lock held by another connection for longer than the statement timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from fhirsrv.app import create_app
from fhirsrv.settings import Settings
from fhirsrv.storage.engine import write_transaction
from tests.api.helpers import org, post
from tests.conftest import ONLY_POSTGRES
from tests.tcp_faults import DatabaseProxy, with_address

# A safety limit, far above the timeouts under test (2 s): a request must end, not hang.
MUST_NOT_HANG_SECONDS = 120


def _within_limit(call: Callable[[], object], *, on_hang: Callable[[], None] = lambda: None) -> object:
    """`call()`'s result, run in a thread so that a hanging request fails the test instead of
    hanging the run (`on_hang` releases what it waits for before the test fails)."""
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    worker.start()
    worker.join(MUST_NOT_HANG_SECONDS)
    if worker.is_alive():
        on_hang()
        pytest.fail(f"the request was still waiting on the database after {MUST_NOT_HANG_SECONDS} s")
    return outcome[0]


def _assert_unavailable(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) > 0
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] in ("transient", "timeout")


@pytest.fixture
def proxied_app(db_url: str) -> Iterator[tuple[Flask, DatabaseProxy]]:
    """An app whose PostgreSQL connections go through a proxy the test can break."""
    target = make_url(db_url)
    proxy = DatabaseProxy(target.host or "127.0.0.1", target.port or 5432)
    settings = Settings.from_env(
        database_url=with_address(db_url, "127.0.0.1", proxy.port),
        load_demo=False,
        auth=False,
        base_url="http://fhir.test/fhir",
        db_connect_timeout=2,
        db_pool_timeout=2,
    )
    app = create_app(settings)
    yield app, proxy
    proxy.close()
    app.extensions["fhirsrv"].engine.dispose()


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_a_hanging_database_answers_503_within_the_connect_timeout(proxied_app):
    app, proxy = proxied_app
    client = app.test_client()
    assert client.get("/fhir/Organization").status_code == 200
    proxy.hang()
    response = _within_limit(lambda: client.get("/fhir/Organization"))
    _assert_unavailable(response)


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_a_refusing_database_answers_503_with_retry_after_for_reads_and_writes(proxied_app):
    app, proxy = proxied_app
    client = app.test_client()
    assert post(client, org("Avant la panne")).status_code == 201
    created = client.get("/fhir/Organization?name=Avant").get_json()["entry"][0]["resource"]["id"]
    assert client.get(f"/fhir/Organization/{created}").status_code == 200  # a pooled connection
    proxy.refuse()
    _assert_unavailable(_within_limit(lambda: client.get("/fhir/Organization")))
    # A read by id runs on the pool's driver connection itself (storage/rawread.py): the cut
    # connection is a database fault too, not a bug.
    _assert_unavailable(_within_limit(lambda: client.get(f"/fhir/Organization/{created}")))
    _assert_unavailable(_within_limit(lambda: post(client, org("Pendant la panne"))))
    # The driver's words (host, port, "Connection refused") stay in the server: the client is
    # told the database is unavailable, not how it is reached.
    body = client.get("/fhir/Organization").get_data(as_text=True)
    assert str(proxy.port) not in body and "refused" not in body.lower()


@pytest.fixture
def slow_app(db_url: str) -> Iterator[Flask]:
    settings = Settings.from_env(
        database_url=db_url,
        load_demo=False,
        auth=False,
        base_url="http://fhir.test/fhir",
        db_statement_timeout=1,
    )
    app = create_app(settings)
    yield app
    app.extensions["fhirsrv"].engine.dispose()


def _hold_the_write_lock(engine: Engine, holding: threading.Event, release: threading.Event) -> None:
    """Another writer, in the middle of a long transaction: PostgreSQL's table lock, SQLite's
    database lock (BEGIN IMMEDIATE)."""
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("LOCK TABLE resource IN ACCESS EXCLUSIVE MODE"))
        holding.set()
        release.wait(MUST_NOT_HANG_SECONDS * 2)


def test_a_write_waiting_longer_than_the_statement_timeout_answers_503_and_writes_nothing(
    slow_app: Flask, engine: Engine
):
    client = slow_app.test_client()
    holding, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_the_write_lock, args=(engine, holding, release), daemon=True)
    holder.start()
    assert holding.wait(30)
    try:
        response = _within_limit(lambda: post(client, org("Attend le verrou")), on_hang=release.set)
    finally:
        release.set()
        holder.join(30)
    _assert_unavailable(response)
    assert response.get_json()["issue"][0]["code"] == "timeout"
    assert client.get("/fhir/Organization?name=Attend").get_json()["total"] == 0
    # Once the lock is gone, the same request passes: a 503 worth retrying.
    assert post(client, org("Attend le verrou")).status_code == 201


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_a_search_blocked_longer_than_the_statement_timeout_answers_503(slow_app: Flask, engine: Engine):
    client = slow_app.test_client()
    assert post(client, org("Visible")).status_code == 201
    holding, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_the_write_lock, args=(engine, holding, release), daemon=True)
    holder.start()
    assert holding.wait(30)
    try:
        response = _within_limit(lambda: client.get("/fhir/Organization?name=Visible"), on_hang=release.set)
    finally:
        release.set()
        holder.join(30)
    _assert_unavailable(response)
    assert client.get("/fhir/Organization?name=Visible").get_json()["total"] == 1


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_a_read_by_id_blocked_longer_than_the_statement_timeout_answers_503_then_reads(
    slow_app: Flask, engine: Engine
):
    client = slow_app.test_client()
    created = post(client, org("Lue par son id"))
    assert created.status_code == 201
    path = f"/fhir/Organization/{created.get_json()['id']}"
    holding, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_the_write_lock, args=(engine, holding, release), daemon=True)
    holder.start()
    assert holding.wait(30)
    try:
        response = _within_limit(lambda: client.get(path), on_hang=release.set)
    finally:
        release.set()
        holder.join(30)
    _assert_unavailable(response)
    assert response.get_json()["issue"][0]["code"] == "timeout"
    # The connection that timed out went back to the pool fit for the next read and write.
    assert client.get(path).get_json()["name"] == "Lue par son id"
    assert post(client, org("Après la lecture")).status_code == 201
