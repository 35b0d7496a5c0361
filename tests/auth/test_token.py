"""The token endpoint: each client authentication method, and the assertions it must refuse."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.auth.conftest import Clients, assertion, assertion_form, ec_key, public_jwks, rsa_key


def _token(web: FlaskClient, **kw):  # type: ignore[no-untyped-def]
    return web.post("/fhir/token", **kw)


def _refused(response) -> bool:  # type: ignore[no-untyped-def]
    """RFC 6749 §5.2: invalid_client, 401 when the client used HTTP Basic, else 400."""
    return response.status_code in (400, 401) and response.get_json()["error"] == "invalid_client"


def test_client_secret_basic_issues_a_jwt_verifiable_with_the_published_jwks(
    web: FlaskClient, clients: Clients
) -> None:
    client_id, secret = clients.register(scopes="system/*.rs")
    response = _token(web, data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] <= 300
    assert response.headers["Cache-Control"] == "no-store"
    keys = KeySet.import_key_set(web.get("/fhir/.well-known/jwks.json").get_json())
    claims = jwt.decode(body["access_token"], keys, algorithms=["RS384"]).claims
    assert claims["sub"] == client_id and claims["scope"] == "system/*.rs"
    assert claims["role"] == "regional-admin"


def test_client_secret_post(web: FlaskClient, clients: Clients) -> None:
    client_id, secret = clients.register()
    response = _token(
        web,
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "system/HealthcareService.rs",
        },
    )
    assert response.status_code == 200
    assert response.get_json()["scope"] == "system/HealthcareService.rs"


def test_wrong_secret_unknown_client_and_revoked_client_are_refused(
    web: FlaskClient, clients: Clients
) -> None:
    client_id, secret = clients.register()
    assert _token(web, data={"grant_type": "client_credentials"}, auth=(client_id, "nope")).status_code == 401
    assert _token(web, data={"grant_type": "client_credentials"}, auth=("ghost", secret)).status_code == 401
    from fhirsrv.auth.clients import revoke_client

    with clients.services.engine.begin() as conn:
        assert revoke_client(conn, client_id)
    response = _token(web, data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def test_an_unknown_client_costs_the_same_secret_check_as_a_known_one(
    web: FlaskClient, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a client id exists must not show in the time of the answer: an unknown id (or a
    revoked one) goes through the same secret-hash check as a known id with a wrong secret."""
    import hashlib

    client_id, _ = clients.register()
    revoked_id, _ = clients.register()
    signing_id, _ = clients.register(jwks=public_jwks(rsa_key()))  # has no secret at all
    from fhirsrv.auth.clients import revoke_client

    with clients.services.engine.begin() as conn:
        revoke_client(conn, revoked_id)
    real_scrypt = hashlib.scrypt
    calls: list[int] = []

    def counting_scrypt(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real_scrypt(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting_scrypt)
    work = {}
    for who in (client_id, "ghost", revoked_id, signing_id, "x" * 300):
        calls.clear()
        response = _token(web, data={"grant_type": "client_credentials"}, auth=(who, "wrong"))
        assert response.status_code == 401
        work[who[:10]] = len(calls)
    assert work == {client_id[:10]: 1, "ghost": 1, revoked_id[:10]: 1, signing_id[:10]: 1, "x" * 10: 1}


def test_the_token_endpoint_over_plain_http_to_a_public_host_is_a_clear_400(
    web: FlaskClient, clients: Clients
) -> None:
    """OAuth 2 wants https: a plain-http request to a public host (a TLS-terminating proxy the
    server does not trust) is refused with an OAuth error saying so, never a 500."""
    client_id, secret = clients.register()
    form = {"grant_type": "client_credentials"}
    response = _token(web, data=form, auth=(client_id, secret), base_url="http://annuaire.example")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"
    assert "FHIRSRV_TRUSTED_PROXIES" in response.get_json()["error_description"]


def test_a_scope_beyond_the_registered_ones_is_refused(web: FlaskClient, clients: Clients) -> None:
    client_id, secret = clients.register(scopes="system/HealthcareService.rs")
    response = _token(
        web, data={"grant_type": "client_credentials", "scope": "system/*.cruds"}, auth=(client_id, secret)
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_scope"


def test_private_key_jwt_with_rs384_and_es384(web: FlaskClient, clients: Clients) -> None:
    rsa, ec = rsa_key(), ec_key()
    client_id, secret = clients.register(scopes="system/*.rs", jwks=public_jwks(rsa, ec))
    assert secret == ""  # an asymmetric client gets no secret
    for key, alg in ((rsa, "RS384"), (ec, "ES384")):
        response = _token(web, data=assertion_form(assertion(client_id, key, alg)))
        assert response.status_code == 200, response.get_json()
        token = response.get_json()["access_token"]
        read = web.get("/fhir/HealthcareService/hs-29-draft", headers={"Authorization": f"Bearer {token}"})
        assert read.status_code == 200  # an authenticated reader sees the draft


def test_a_replayed_client_assertion_is_refused(web: FlaskClient, clients: Clients) -> None:
    key = rsa_key()
    client_id, _ = clients.register(jwks=public_jwks(key))
    signed = assertion(client_id, key)
    assert _token(web, data=assertion_form(signed)).status_code == 200
    assert _refused(_token(web, data=assertion_form(signed)))


def test_a_used_assertion_is_refused_while_the_clock_skew_still_accepts_it(
    web: FlaskClient, clients: Clients
) -> None:
    """An assertion expired a few seconds ago is still accepted (30 s of clock skew): its jti
    must be remembered until then, or it could be replayed after its expiry."""
    key = rsa_key()
    client_id, _ = clients.register(jwks=public_jwks(key))
    signed = assertion(client_id, key, exp_in=-10)
    assert _token(web, data=assertion_form(signed)).status_code == 200
    # Another client's assertion clears the store of what has expired meanwhile.
    other_key = rsa_key()
    other_id, _ = clients.register(jwks=public_jwks(other_key))
    assert _token(web, data=assertion_form(assertion(other_id, other_key))).status_code == 200
    assert _refused(_token(web, data=assertion_form(signed)))


def test_an_expired_assertion_is_refused(web: FlaskClient, clients: Clients) -> None:
    key = rsa_key()
    client_id, _ = clients.register(jwks=public_jwks(key))
    assert _refused(_token(web, data=assertion_form(assertion(client_id, key, exp_in=-600))))


def test_an_assertion_valid_for_more_than_five_minutes_is_refused(web: FlaskClient, clients: Clients) -> None:
    key = rsa_key()
    client_id, _ = clients.register(jwks=public_jwks(key))
    assert _refused(_token(web, data=assertion_form(assertion(client_id, key, exp_in=3600))))


def test_an_assertion_signed_with_another_key_is_refused(web: FlaskClient, clients: Clients) -> None:
    registered, other = rsa_key(), rsa_key()
    client_id, _ = clients.register(jwks=public_jwks(registered))
    forged = assertion(client_id, other)
    assert _refused(_token(web, data=assertion_form(forged)))


def test_an_assertion_for_another_audience_or_weak_algorithm_is_refused(
    web: FlaskClient, clients: Clients
) -> None:
    key = rsa_key()
    client_id, _ = clients.register(jwks=public_jwks(key))
    other_aud = assertion(client_id, key, aud="https://elsewhere.example/token")
    assert _refused(_token(web, data=assertion_form(other_aud)))
    # The audience is the configured public base's token endpoint, whatever Host the request names.
    via_host = assertion(client_id, key, aud="https://attacker.example/fhir/token")
    assert _refused(_token(web, data=assertion_form(via_host), base_url="https://attacker.example"))
    rs256 = assertion(client_id, key, alg="RS256")
    assert _refused(_token(web, data=assertion_form(rs256)))


def test_a_secret_client_cannot_use_an_assertion_nor_a_jwt_client_a_secret(
    web: FlaskClient, clients: Clients
) -> None:
    key = rsa_key()
    jwt_client, _ = clients.register(jwks=public_jwks(key))
    assert _token(web, data={"grant_type": "client_credentials"}, auth=(jwt_client, "")).status_code == 401


def test_discovery_and_capability_statement_point_at_the_token_endpoint(web: FlaskClient) -> None:
    smart = web.get("/fhir/.well-known/smart-configuration").get_json()
    assert smart["token_endpoint"] == "http://fhir.test/fhir/token"
    assert "private_key_jwt" in smart["token_endpoint_auth_methods_supported"]
    assert smart["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    security = web.get("/fhir/metadata").get_json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = security["extension"][0]["extension"]
    assert {"url": "token", "valueUri": "http://fhir.test/fhir/token"} in uris


def test_a_tampered_or_foreign_access_token_is_401(web: FlaskClient, clients: Clients) -> None:
    token = clients.token()
    head, body, sig = token.split(".")
    tampered = ".".join([head, body, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")])
    foreign = jwt.encode(
        {"alg": "RS384"}, {"sub": "x", "scope": "system/*.cruds"}, rsa_key(), algorithms=["RS384"]
    )
    for bad in (tampered, foreign, "not-a-jwt"):
        response = web.get("/fhir/Organization/org-29", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.get_json()["resourceType"] == "OperationOutcome"


def test_tokens_of_a_revoked_client_stop_working_at_once(db_url: str) -> None:
    """No cache between a revocation and the next request, with the default settings."""
    from fhirsrv.app import create_app
    from fhirsrv.auth.clients import revoke_client
    from tests.auth.conftest import auth_settings

    app = create_app(auth_settings(db_url))
    clients = Clients(app)
    client_id, secret = clients.register(scopes="system/*.rs")
    web = app.test_client()
    token = _token(web, data={"grant_type": "client_credentials"}, auth=(client_id, secret)).get_json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert web.get("/fhir/Organization", headers=headers).status_code == 200
    with clients.services.engine.begin() as conn:
        revoke_client(conn, client_id)
    assert web.get("/fhir/Organization", headers=headers).status_code == 401
    app.extensions["fhirsrv"].engine.dispose()


def test_without_a_configured_base_the_token_endpoint_and_issuer_are_the_requests_base(db_url: str) -> None:
    """/metadata, the SMART configuration and the tokens agree on the public base, here the
    request's (FHIRSRV_BASE_URL unset); a token is accepted only at the base it was issued for."""
    from fhirsrv.app import create_app
    from tests.auth.conftest import auth_settings

    app = create_app(auth_settings(db_url, base_url=""))
    client_id, secret = Clients(app).register(scopes="system/*.rs")
    web = app.test_client()
    here, elsewhere = "https://annuaire.example", "https://other.example"
    security = web.get("/fhir/metadata", base_url=here).get_json()["rest"][0]["security"]
    assert {"url": "token", "valueUri": f"{here}/fhir/token"} in security["extension"][0]["extension"]
    smart = web.get("/fhir/.well-known/smart-configuration", base_url=here).get_json()
    assert smart["issuer"] == f"{here}/fhir" and smart["token_endpoint"] == f"{here}/fhir/token"
    issued = web.post(
        "/fhir/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret), base_url=here
    ).get_json()["access_token"]
    keys = KeySet.import_key_set(web.get("/fhir/.well-known/jwks.json").get_json())
    assert jwt.decode(issued, keys, algorithms=["RS384"]).claims["iss"] == f"{here}/fhir"
    headers = {"Authorization": f"Bearer {issued}"}
    assert web.get("/fhir/Organization", headers=headers, base_url=here).status_code == 200
    assert web.get("/fhir/Organization", headers=headers, base_url=elsewhere).status_code == 401
    app.extensions["fhirsrv"].engine.dispose()


# Found by an anonymous review of the server: both were 500s.
def test_an_assertion_naming_an_unknown_client_is_refused(web: FlaskClient) -> None:
    forged = assertion("nobody-registered-this", rsa_key())
    assert _refused(_token(web, data=assertion_form(forged)))


def test_basic_credentials_that_are_not_text_are_refused(web: FlaskClient) -> None:
    response = _token(web, data={"grant_type": "client_credentials"}, headers={"Authorization": "Basic //46AA=="})
    assert _refused(response)
