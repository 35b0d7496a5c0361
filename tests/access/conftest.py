"""One fixture directory per back-end for the whole module (building it takes seconds), in a
database of its own: on PostgreSQL a schema no other test truncates."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from fhirsrv.app import create_app
from fhirsrv.settings import Settings
from fhirsrv.storage.engine import make_engine, normalise_url
from tests.access.directory import CANONICAL, RECEIVER, Directory
from tests.conftest import BACKENDS, PG_URL


def _database(backend: str, folder: Path, worker: str) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{folder / 'directory.sqlite3'}", None
    schema = f"fhirsrv_access_{worker}_{os.getpid()}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    base = normalise_url(PG_URL)
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


@pytest.fixture(scope="module", params=BACKENDS)
def directory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[Directory]:
    url, schema = _database(request.param, tmp_path_factory.mktemp("access"), worker_id)
    settings = Settings.from_env(
        database_url=url,
        load_demo=False,
        base_url="http://fhir.test/fhir",
        canonical_base=CANONICAL,
        auth=True,
        rate_limit_anonymous=0,
        rate_limit_client=0,
        enforce_sos_profiles="claimed-only",
        # The table's tokens are issued once per module: they must outlive a slow run.
        token_lifetime=3600,
        # The fixture's Subscriptions notify a receiver no test runs (no delivery loop here).
        subscription_allowed_endpoints=RECEIVER,
    )
    app = create_app(settings)
    found = Directory(app)
    found.populate()
    yield found
    for other in found.other_apps.values():
        other.extensions["fhirsrv"].engine.dispose()
    found.services.engine.dispose()
    if schema is not None:
        admin = make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
