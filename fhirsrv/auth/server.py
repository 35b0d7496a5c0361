"""The authorization server (authlib): client credentials with client_secret_basic,
client_secret_post and private_key_jwt (SMART Backend Services), JWT access tokens, JWKS and
the SMART discovery document.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import InsecureTransportError, InvalidClientError, InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from flask import Flask, Response, jsonify, request
from joserfc.jwk import KeySet
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from fhirsrv.auth.clients import Client, get_client, hash_secret
from fhirsrv.auth.keys import public_jwks
from fhirsrv.auth.principal import TokenService
from fhirsrv.auth.tables import oauth_jti
from fhirsrv.interactions.context import Services
from fhirsrv.storage.jsonfmt import utcnow

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
ASSERTION_ALGORITHMS = ["RS384", "ES384"]
SCOPES_SUPPORTED = ["system/*.rs", "system/*.cruds", "system/*.read", "system/*.write"]


def api_base(services: Services) -> str:
    """The public base of the API: the configured one, else as the request reached us."""
    configured = services.settings.base_url.rstrip("/")
    return configured or request.url_root.rstrip("/") + "/fhir"


def token_url(services: Services) -> str:
    return api_base(services) + "/token"


class BackendServicesGrant(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_requested_scope(self) -> None:
        requested = self.request.payload.scope
        if requested and not self.request.client.get_allowed_scope(requested):
            raise InvalidScopeError(description="None of the requested scopes is granted to this client")


class PrivateKeyJwt(JWTBearerClientAssertion):
    """RFC 7523 client assertions as SMART Backend Services profiles them."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, services: Services) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.services = services
        self.max_lifetime = services.settings.max_assertion_lifetime

    def get_audiences(self) -> list[str]:
        """The token endpoint of the public base only: with FHIRSRV_BASE_URL set, a Host header
        (which any client writes) never adds an accepted audience."""
        return [token_url(self.services)]

    def resolve_client_public_key(self, client: Client) -> KeySet:
        keys = [k for k in (client.jwks or {}).get("keys", []) if k.get("kty") in ("RSA", "EC")]
        if not keys:  # an unknown client, or one registered with a secret: no key to check with
            raise InvalidClientError(description="The client assertion signature is not valid")
        return KeySet.import_key_set({"keys": keys})

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        from joserfc import jwt
        from joserfc.errors import JoseError

        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGORITHMS)
        except (JoseError, ValueError) as exc:
            raise InvalidClientError(description="The client assertion signature is not valid") from exc
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: Any) -> None:
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp > time.time() + self.max_lifetime + self.leeway:
            raise InvalidClientError(description="The client assertion expires more than 5 minutes ahead")
        super().verify_claims(claims)

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        """Record the jti as long as the assertion can be accepted, i.e. until its expiry plus
        the clock skew allowed (`leeway`); a second use within that time is a replay."""
        if not isinstance(jti, str) or len(jti) > 255:
            return False
        now = utcnow()
        accepted_until = float(claims["exp"]) + self.leeway
        expires = datetime.fromtimestamp(accepted_until, UTC).replace(tzinfo=None)
        try:
            with self.services.engine.begin() as conn:
                conn.execute(delete(oauth_jti).where(oauth_jti.c.expires < now))
                conn.execute(
                    oauth_jti.insert().values(client_id=str(claims["sub"]), jti=jti, expires=expires)
                )
        except IntegrityError:
            return False
        return True


def unknown_client() -> Client:
    """Stands for a client id that is not registered (or revoked): it holds the hash of a
    secret nobody knows and no keys, so authentication goes through the same scrypt check as
    a known client's wrong secret and fails. Whether an id exists never shows in the time
    of the answer (one check, about 50 ms, either way)."""
    return Client(
        client_id="", name="", scopes="", role="", secret_hash=hash_secret(secrets.token_urlsafe(32))
    )


def install_server(app: Flask, services: Services, tokens: TokenService) -> None:
    nobody = unknown_client()

    def query_client(client_id: str) -> Client:
        if not isinstance(client_id, str) or len(client_id) > 64:
            return nobody
        with services.engine.connect() as conn:
            return get_client(conn, client_id) or nobody

    server = AuthorizationServer(app, query_client=query_client, save_token=lambda token, req: None)
    server.register_client_auth_method("private_key_jwt", PrivateKeyJwt(services))
    server.register_grant(BackendServicesGrant)

    def generate(grant_type: str, client: Client, user: Any = None, scope: Any = None, **_: Any) -> dict:
        return tokens.issue(client, client.get_allowed_scope(scope or ""))

    server.register_token_generator("client_credentials", generate)

    def token() -> Response:
        try:
            response = server.create_token_response()
        except UnicodeDecodeError:  # Basic credentials that are not UTF-8 (authlib decodes them)
            response = jsonify(
                {"error": "invalid_client", "error_description": "The client credentials are not UTF-8 text"}
            )
            response.status_code = 401
        except InsecureTransportError:
            response = jsonify(
                {
                    "error": "invalid_request",
                    "error_description": "The token endpoint answers over https only; behind a "
                    "proxy that terminates TLS, the server must trust it (FHIRSRV_TRUSTED_PROXIES)",
                }
            )
            response.status_code = 400
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response

    app.add_url_rule("/fhir/token", "auth_token", token, methods=["POST"])
    app.add_url_rule("/oauth/token", "auth_token_alias", token, methods=["POST"])

    jwks = public_jwks(tokens.key)
    app.add_url_rule("/fhir/.well-known/jwks.json", "auth_jwks", lambda: jsonify(jwks))

    def smart_configuration() -> Response:
        return jsonify(
            {
                "issuer": tokens.issuer,
                "jwks_uri": api_base(services) + "/.well-known/jwks.json",
                "token_endpoint": token_url(services),
                "token_endpoint_auth_methods_supported": AUTH_METHODS,
                "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
                "grant_types_supported": ["client_credentials"],
                "scopes_supported": SCOPES_SUPPORTED,
                "capabilities": ["client-confidential-asymmetric", "client-confidential-symmetric"],
            }
        )

    app.add_url_rule("/fhir/.well-known/smart-configuration", "auth_smart", smart_configuration)


def security_section(base: str) -> dict[str, Any]:
    """CapabilityStatement.rest.security: SMART on FHIR with the oauth-uris extension, for the
    public base the statement is served from (the token endpoint is under it, as in the
    SMART configuration)."""
    return {
        "cors": True,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth 2 client credentials (SMART Backend Services); anonymous read of published entries",
            }
        ],
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": "token", "valueUri": base + "/token"}],
            }
        ],
        "description": "Writes need a bearer token from the token endpoint; scopes say which types "
        "and interactions, the client's role which entries.",
    }
