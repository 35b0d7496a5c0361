"""Shared fixtures: every storage-touching test runs on SQLite, and on PostgreSQL when
FHIRSRV_TEST_DATABASE_URL is set (each xdist worker gets its own PostgreSQL schema)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from fhirsrv.app import create_app
from fhirsrv.settings import Settings
from fhirsrv.storage.engine import make_engine, normalise_url
from fhirsrv.storage.migrate import ensure_schema
from fhirsrv.storage.schema import metadata

PG_URL = os.environ.get("FHIRSRV_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)] if PG_URL else ["sqlite"]
# For a test about one back-end's own machinery: `@pytest.mark.parametrize("db_url", ONLY_POSTGRES,
# indirect=True)` runs it there only, instead of a skip on the other.
ONLY_SQLITE = ["sqlite"]
ONLY_POSTGRES = [b for b in BACKENDS if b != "sqlite"]


@pytest.fixture(scope="session", autouse=True)
def _signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The token signing key file of every app the tests build (FHIRSRV_JWT_KEY_FILE), in a
    temporary directory of this test process, never the project's var/."""
    variable = "FHIRSRV_JWT_KEY_FILE"
    before = os.environ.get(variable)
    os.environ[variable] = str(tmp_path_factory.mktemp("keys") / "jwt-signing-key.pem")
    yield
    if before is None:
        os.environ.pop(variable, None)
    else:
        os.environ[variable] = before


@pytest.fixture(scope="session", autouse=True)
def _export_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The bulk export files of every app the tests build (FHIRSRV_EXPORT_DIR), likewise."""
    variable = "FHIRSRV_EXPORT_DIR"
    before = os.environ.get(variable)
    os.environ[variable] = str(tmp_path_factory.mktemp("exports"))
    yield
    if before is None:
        os.environ.pop(variable, None)
    else:
        os.environ[variable] = before


def _pg_schema_url(worker: str) -> tuple[str, str]:
    # The pid keeps concurrent runs on one server (developers, CI) out of each other's way.
    schema = f"fhirsrv_test_{worker}_{os.getpid()}"
    base = normalise_url(PG_URL)
    sep = "&" if "?" in base else "?"
    return schema, f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def _pg_engine(worker_id: str) -> Iterator[Engine | None]:
    if not PG_URL:
        yield None
        return
    schema, url = _pg_schema_url(worker_id)
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    engine = make_engine(url)
    ensure_schema(engine)
    yield engine
    engine.dispose()
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def _truncate_all(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in reversed(metadata.sorted_tables))
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, _pg_engine: Engine | None) -> str:
    """A database URL with an empty, migrated schema, for each back-end under test."""
    if request.param == "postgres":
        assert _pg_engine is not None
        _truncate_all(_pg_engine)
        return _pg_engine.url.render_as_string(hide_password=False)
    url = f"sqlite:///{tmp_path / 'test.sqlite3'}"
    engine = make_engine(url)
    ensure_schema(engine)
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(db_url: str) -> Settings:
    """Settings for an app on the test database, without demo data (tests create their own).

    Authorization is off here: these tests are about FHIR behaviour; tests/auth builds apps
    with it on and checks every role boundary."""
    return Settings.from_env(
        database_url=db_url, load_demo=False, base_url="http://fhir.test/fhir", auth=False
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    yield app
    app.extensions["fhirsrv"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    """Say plainly how many tests ran against PostgreSQL, so a CI log shows both back-ends ran."""
    passed = [r for r in terminalreporter.stats.get("passed", []) if "[postgres" in r.nodeid]
    failed = [r for r in terminalreporter.stats.get("failed", []) if "[postgres" in r.nodeid]
    if PG_URL:
        terminalreporter.write_line(f"PostgreSQL back-end: {len(passed)} tests passed, {len(failed)} failed")
    else:
        terminalreporter.write_line("PostgreSQL back-end: not configured (FHIRSRV_TEST_DATABASE_URL unset)")
