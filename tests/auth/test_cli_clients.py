"""`fhirsrv clients add|list|revoke`: the secret is shown once, works once stored, and a
revoked client gets no token."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from fhirsrv.access.principal import SERVER
from fhirsrv.app import create_app
from fhirsrv.auth.tables import oauth_client
from fhirsrv.cli_clients import clients
from fhirsrv.interactions import writes
from fhirsrv.storage.engine import make_engine
from fhirsrv.wiring import build_services
from tests.auth.conftest import assertion, assertion_form, auth_settings, public_jwks, rsa_key


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(clients, list(args))
    return result.exit_code, result.output


def test_add_a_secret_client_then_get_a_token_then_revoke(db_url: str) -> None:
    code, out = _run(
        "add", "3C Finistère", "--scopes", "system/*.cruds", "--role", "territorial-admin",
        "--departement", "29", "--departement", "22", "--database", db_url,
    )  # fmt: skip
    assert code == 0, out
    created = json.loads(out)
    assert created["departements"] == ["29", "22"] and created["client_secret"]
    engine = make_engine(db_url)
    with engine.connect() as conn:
        stored = conn.execute(select(oauth_client.c.secret_hash)).scalar_one()
    engine.dispose()
    assert created["client_secret"] not in stored and stored.startswith("scrypt$")

    code, out = _run("list", "--database", db_url)
    listed = json.loads(out)
    assert [c["client_id"] for c in listed] == [created["client_id"]]
    assert "client_secret" not in listed[0] and created["client_secret"] not in out

    app = create_app(auth_settings(db_url))
    web = app.test_client()
    form = {"grant_type": "client_credentials"}
    assert (
        web.post("/fhir/token", data=form, auth=(created["client_id"], created["client_secret"])).status_code
        == 200
    )
    assert _run("revoke", created["client_id"], "--database", db_url)[0] == 0
    assert (
        web.post("/fhir/token", data=form, auth=(created["client_id"], created["client_secret"])).status_code
        == 401
    )
    app.extensions["fhirsrv"].engine.dispose()


def _store_organization(db_url: str, oid: str) -> None:
    services = build_services(auth_settings(db_url))
    with services.engine.begin() as conn:
        writes.create(services, conn, {"resourceType": "Organization", "name": "Santélien"}, oid, actor=SERVER)
    services.engine.dispose()


def test_add_a_private_key_jwt_client(db_url: str, tmp_path: Path) -> None:
    _store_organization(db_url, "org-29")
    key = rsa_key()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(public_jwks(key)))
    code, out = _run(
        "add", "Santélien", "--scopes", "system/*.rs", "--role", "structure-referent",
        "--organization", "Organization/org-29", "--jwks", str(jwks_file), "--database", db_url,
    )  # fmt: skip
    assert code == 0, out
    created = json.loads(out)
    assert "client_secret" not in created and created["auth_method"] == "private_key_jwt"
    app = create_app(auth_settings(db_url))
    response = app.test_client().post(
        "/fhir/token", data=assertion_form(assertion(created["client_id"], key))
    )
    assert response.status_code == 200
    app.extensions["fhirsrv"].engine.dispose()


def test_bad_input_is_refused_without_a_client(db_url: str) -> None:
    assert (
        _run("add", "x", "--scopes", "everything", "--role", "regional-admin", "--database", db_url)[0] != 0
    )
    missing_dep = _run(
        "add", "x", "--scopes", "system/*.rs", "--role", "territorial-admin", "--database", db_url
    )
    assert missing_dep[0] != 0 and "departement" in missing_dep[1]
    missing_org = _run(
        "add", "x", "--scopes", "system/*.rs", "--role", "structure-referent", "--database", db_url
    )
    assert missing_org[0] != 0
    assert json.loads(_run("list", "--database", db_url)[1]) == []
    assert _run("revoke", "nobody", "--database", db_url)[0] == 1


def test_a_partner_reader_reads_only(db_url: str) -> None:
    """Coordination platforms get a read-only role: write scopes are refused at registration,
    and the role's token reads the public view plus delisted entries (tests/access)."""
    code, out = _run(
        "add", "Santélien", "--scopes", "system/*.cruds", "--role", "partner-reader", "--database", db_url,
    )  # fmt: skip
    assert code == 2 and "r and s only" in out
    code, out = _run(
        "add", "Santélien", "--scopes", "system/*.rs", "--role", "partner-reader", "--database", db_url,
    )  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["role"] == "partner-reader"
    code, out = _run(
        "add", "x", "--scopes", "system/*.rs", "--role", "partner-reader", "--departement", "29", "--database", db_url,
    )  # fmt: skip
    assert code == 2 and "territorial" in out


def test_a_referent_of_an_organization_the_database_does_not_hold_is_refused(db_url: str) -> None:
    """A typo, or another database than the server's: the referent would see nothing, silently."""
    _store_organization(db_url, "org-29")
    code, out = _run(
        "add", "x", "--scopes", "system/*.rs", "--role", "structure-referent",
        "--organization", "Organization/does-not-exist", "--database", db_url,
    )  # fmt: skip
    assert code == 2
    assert out.count("\n") == 1 and out.startswith("error: ") and "Organization/does-not-exist" in out
    assert json.loads(_run("list", "--database", db_url)[1]) == []
