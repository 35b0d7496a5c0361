"""The token signing key: in a file only the server's user may read, never in clear in the
database, and one key per deployment."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select

from fhirsrv.app import create_app
from fhirsrv.auth.keys import LEGACY_STATE_KEY, SigningKeyError
from fhirsrv.storage.schema import server_state
from tests.auth.conftest import Clients, auth_settings


@pytest.fixture
def build(db_url: str) -> Iterator[Any]:
    apps: list[Flask] = []

    def make(key_file: Path) -> Flask:
        app = create_app(auth_settings(db_url, jwt_key_file=key_file))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["fhirsrv"].engine.dispose()


def _state(app: Flask) -> dict[str, str]:
    with app.extensions["fhirsrv"].engine.connect() as conn:
        return {r.key: r.value or "" for r in conn.execute(select(server_state.c.key, server_state.c.value))}


def test_the_generated_key_is_in_an_owner_only_file_and_not_in_the_database(
    build: Any, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys" / "jwt.pem"
    app = build(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in key_file.read_text()
    assert not any("PRIVATE KEY" in value for value in _state(app).values())
    # Tokens verify with the published key, which is the file's.
    token = Clients(app).token(scopes="system/*.rs")
    keys = KeySet.import_key_set(app.test_client().get("/fhir/.well-known/jwks.json").get_json())
    assert jwt.decode(token, keys, algorithms=["RS384"]).claims["scope"] == "system/*.rs"
    assert RSAKey.import_key(key_file.read_text()).thumbprint() == keys.keys[0].thumbprint()


def test_a_key_file_others_may_read_stops_the_server(build: Any, tmp_path: Path) -> None:
    key_file = tmp_path / "jwt.pem"
    build(key_file)
    key_file.chmod(0o640)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        build(key_file)


def test_a_key_kept_in_clear_by_an_earlier_version_moves_to_the_file(
    build: Any, tmp_path: Path
) -> None:
    legacy = RSAKey.generate_key(2048, private=True)
    first = build(tmp_path / "unused.pem")
    with first.extensions["fhirsrv"].engine.begin() as conn:
        conn.execute(server_state.delete())
        pem = legacy.as_pem(private=True).decode()
        conn.execute(server_state.insert().values(key=LEGACY_STATE_KEY, value=pem))
    key_file = tmp_path / "moved.pem"
    app = build(key_file)
    assert RSAKey.import_key(key_file.read_text()).thumbprint() == legacy.thumbprint()
    assert LEGACY_STATE_KEY not in _state(app)
    jwks = app.test_client().get("/fhir/.well-known/jwks.json").get_json()
    assert KeySet.import_key_set(jwks).keys[0].thumbprint() == legacy.thumbprint()


def test_a_process_without_the_deployments_key_refuses_to_make_its_own(
    build: Any, tmp_path: Path
) -> None:
    """A second host on the same database, without the key file: generating a key of its own
    would issue tokens the other hosts reject, so it stops and says what to do."""
    build(tmp_path / "host-a.pem")
    with pytest.raises(SigningKeyError, match="FHIRSRV_JWT_KEY_FILE"):
        build(tmp_path / "host-b.pem")
    assert not (tmp_path / "host-b.pem").exists()
    # Given the deployment's key, it starts.
    (tmp_path / "host-b.pem").write_bytes((tmp_path / "host-a.pem").read_bytes())
    (tmp_path / "host-b.pem").chmod(0o600)
    build(tmp_path / "host-b.pem")
