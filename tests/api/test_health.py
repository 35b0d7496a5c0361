"""/healthz and /readyz: what a load balancer sees when the database is up, down, hanging or
at an older schema revision, on both back-ends.

The faults are real: a loopback proxy to PostgreSQL that closes its port or stops answering,
an SQLite file whose directory has gone, a version table that names another revision. A probe
reuses its verdict for up to a second (api/health.py), so a test waits for the change, within a
generous limit; nothing here measures how long anything takes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url

from fhirsrv.api.health import BEHIND, FOREIGN, Readiness
from fhirsrv.app import create_app
from fhirsrv.settings import Settings
from fhirsrv.storage.engine import make_engine
from fhirsrv.storage.migrate import alembic_config, head_revisions, known_revisions
from tests.conftest import ONLY_POSTGRES
from tests.tcp_faults import DatabaseProxy, with_address

# A safety limit for a verdict to change (it is reused for one second): not a timing assertion.
CHANGE_WITHIN_SECONDS = 60


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + CHANGE_WITHIN_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not {what} after {CHANGE_WITHIN_SECONDS} s")
        time.sleep(0.2)


def _status(client: FlaskClient, path: str = "/readyz") -> int:
    return client.get(path).status_code


def _assert_not_ready(client: FlaskClient, *hidden: str) -> str:
    """The 503 a load balancer gets: Retry-After, a one-line reason, nothing of the driver."""
    response = client.get("/readyz")
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    assert body.startswith("not ready: ") and body.count("\n") == 1, body
    for secret in ("Traceback", "postgresql", "sqlite", "psycopg", "refused", *hidden):
        assert secret.lower() not in body.lower(), (secret, body)
    return body


def _settings(database_url: str, **overrides: object) -> Settings:
    given: dict[str, object] = {
        "load_demo": False,
        "auth": False,
        "base_url": "http://fhir.test/fhir",
        "db_connect_timeout": 2,
        "db_pool_timeout": 2,
    }
    return Settings.from_env(database_url=database_url, **(given | overrides))


@pytest.fixture
def proxied(db_url: str) -> Iterator[tuple[FlaskClient, DatabaseProxy]]:
    target = make_url(db_url)
    proxy = DatabaseProxy(target.host or "127.0.0.1", target.port or 5432)
    app = create_app(_settings(with_address(db_url, "127.0.0.1", proxy.port)))
    yield app.test_client(), proxy
    proxy.close()
    app.extensions["fhirsrv"].engine.dispose()


def test_both_probes_answer_200_with_a_tiny_body(client: FlaskClient):
    live = client.get("/healthz")
    assert (live.status_code, live.get_data(as_text=True), live.mimetype) == (200, "ok\n", "text/plain")
    ready = client.get("/readyz")
    assert (ready.status_code, ready.get_data(as_text=True)) == (200, "ready\n")
    assert client.head("/healthz").status_code == 200


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_a_stopped_database_is_not_ready_while_the_process_stays_alive(proxied):
    client, proxy = proxied
    assert _status(client) == 200
    proxy.refuse()
    _until(lambda: _status(client) == 503, "503")
    body = _assert_not_ready(client, str(proxy.port), "127.0.0.1")
    assert "cannot be reached" in body
    # Alive: restarting the process would not bring the database back.
    assert _status(client, "/healthz") == 200


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_a_hanging_database_is_not_ready_and_the_probe_ends(proxied):
    client, proxy = proxied
    assert _status(client) == 200
    proxy.hang()
    _until(lambda: _status(client) == 503, "503")  # each probe ends with its connect timeout
    _assert_not_ready(client, str(proxy.port))
    assert _status(client, "/healthz") == 200


def test_an_sqlite_file_that_has_gone_is_not_ready_then_ready_again(tmp_path: Path):
    """The probe opens the file as it is now: never creates an empty one in its place."""
    folder = tmp_path / "data"
    app = create_app(_settings(f"sqlite:///{folder / 'directory.sqlite3'}"))
    client = app.test_client()
    try:
        assert _status(client) == 200
        folder.rename(tmp_path / "elsewhere")
        _until(lambda: _status(client) == 503, "503")
        _assert_not_ready(client, str(tmp_path))
        assert _status(client, "/healthz") == 200
        assert not folder.exists()
        (tmp_path / "elsewhere").rename(folder)
        _until(lambda: _status(client) == 200, "ready again")
    finally:
        app.extensions["fhirsrv"].engine.dispose()


def _stamp(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def test_a_database_behind_head_is_not_ready_until_it_is_upgraded(app: Flask, engine: Engine):
    client = app.test_client()
    (head,) = head_revisions()
    previous = ScriptDirectory.from_config(alembic_config(engine)).get_revision(head).down_revision
    assert isinstance(previous, str)
    assert _status(client) == 200
    try:
        _stamp(engine, previous)
        _until(lambda: _status(client) == 503, "503")
        assert BEHIND in _assert_not_ready(client, previous, head)
        _stamp(engine, "f00d")  # written by a version of the server this one does not know
        _until(lambda: FOREIGN in client.get("/readyz").get_data(as_text=True), "foreign")
    finally:
        _stamp(engine, head)
    _until(lambda: _status(client) == 200, "ready again")


def test_probes_are_outside_the_rate_limit_and_the_token_check(db_url: str):
    """A load balancer behind the same address as busy clients must not read a 429 as "down",
    nor a 401 for a header it forwards."""
    app = create_app(_settings(db_url, auth=True, rate_limit_anonymous=2))
    client = app.test_client()
    try:
        for _ in range(5):
            assert _status(client, "/healthz") == 200
            assert _status(client, "/readyz") == 200
            assert client.get("/readyz", headers={"Authorization": "Bearer not-a-token"}).status_code == 200
        # The limit is there for everything else.
        answers = [client.get("/fhir/metadata").status_code for _ in range(3)]
        assert answers[-1] == 429, answers
    finally:
        app.extensions["fhirsrv"].engine.dispose()


def test_a_verdict_is_reused_briefly_so_a_flood_of_probes_costs_one_statement(db_url: str):
    engine = make_engine(db_url, pooled=False)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    now = [100.0]
    readiness = Readiness(engine, head_revisions(), known_revisions(), clock=lambda: now[0])
    try:
        assert all(readiness.verdict().ready for _ in range(50))
        probes = [s for s in statements if "alembic_version" in s]
        assert len(probes) == 1, statements
        now[0] += 1.5
        assert readiness.verdict().ready
        assert len([s for s in statements if "alembic_version" in s]) == 2
    finally:
        engine.dispose()
