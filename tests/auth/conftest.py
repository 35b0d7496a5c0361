"""An app with auth on, a small directory in two départements, and clients of each role.

Every test here runs twice: under the shipped canonical base and under a region's own
(FHIRSRV_CANONICAL_BASE), so no access check can depend on a URL spelt in the code."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from fhirsrv.access.principal import SERVER
from fhirsrv.app import create_app
from fhirsrv.auth.clients import add_client
from fhirsrv.interactions import writes
from fhirsrv.settings import Settings

FHIR = "application/fhir+json"
CANONICAL_BASES = ("https://sos.example.org/fhir", "https://annuaire.sos-bretagne.test/fhir")
TOKEN_URL = "http://fhir.test/fhir/token"
# The base of the running test (the `canonical_base` fixture sets it; tests run one at a time).
_ACTIVE = {"base": CANONICAL_BASES[0]}


def canonical(path: str) -> str:
    """An SOS canonical URL under the base the test's server publishes."""
    return f"{_ACTIVE['base']}/{path}"


def lifecycle(status: str) -> list[dict[str, Any]]:
    url = canonical("StructureDefinition/sos-entry-lifecycle")
    return [{"url": url, "extension": [{"url": "status", "valueCode": status}]}]


def organization(oid: str, dep: str, status: str = "published") -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": oid,
        "extension": lifecycle(status),
        "name": f"Structure {oid}",
        "address": [{"city": "Ville", "district": dep, "postalCode": f"{dep}000"}],
    }


def location(lid: str, org_id: str, postal: str) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": lid,
        "extension": lifecycle("published"),
        "name": f"Site {lid}",
        "address": {"city": "Ville", "postalCode": postal},
        "managingOrganization": {"reference": f"Organization/{org_id}"},
    }


def service(sid: str, org_id: str, loc_id: str, status: str = "published") -> dict[str, Any]:
    return {
        "resourceType": "HealthcareService",
        "id": sid,
        "extension": lifecycle(status),
        "name": f"Offre {sid}",
        "providedBy": {"reference": f"Organization/{org_id}"},
        "location": [{"reference": f"Location/{loc_id}"}],
    }


def directory() -> list[dict[str, Any]]:
    return [
    organization("org-29", "29"),
    organization("org-35", "35"),
    location("loc-29", "org-29", "29200"),
    location("loc-35", "org-35", "35000"),
    service("hs-29", "org-29", "loc-29"),
    service("hs-35", "org-35", "loc-35"),
    service("hs-29-draft", "org-29", "loc-29", status="draft"),
    service("hs-29-pending", "org-29", "loc-29", status="verification-pending"),
    service("hs-29-delisted", "org-29", "loc-29", status="delisted"),
    {"resourceType": "Practitioner", "id": "pr-1", "name": [{"family": "Martin"}]},
    ]


@pytest.fixture(params=CANONICAL_BASES, ids=["shipped-base", "regional-base"])
def canonical_base(request: pytest.FixtureRequest) -> Iterator[str]:
    _ACTIVE["base"] = request.param
    yield request.param
    _ACTIVE["base"] = CANONICAL_BASES[0]


def auth_settings(db_url: str, **overrides: Any) -> Settings:
    # These tests are about who may write what: the SOS profile rules that apply to referents'
    # writes (fhirsrv.wiring) are tested with the validation, so only claimed profiles apply here.
    # `overrides` are typed Settings fields (trusted_proxies=1, not "1").
    values: dict[str, Any] = {
        "auth": True,
        "rate_limit_anonymous": 0,
        "rate_limit_client": 0,
        "enforce_sos_profiles": "claimed-only",
        "canonical_base": _ACTIVE["base"],
        "base_url": "http://fhir.test/fhir",
        **overrides,
    }
    return Settings.from_env(database_url=db_url, load_demo=False, **values)


@pytest.fixture
def auth_app(db_url: str, canonical_base: str) -> Iterator[Flask]:
    app = create_app(auth_settings(db_url))
    services = app.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        for res in directory():
            writes.create(services, conn, dict(res), res["id"], actor=SERVER)
    yield app
    services.engine.dispose()


@pytest.fixture
def web(auth_app: Flask) -> FlaskClient:
    return auth_app.test_client()


class Clients:
    """Registers clients in the app's database and fetches tokens for them."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.services = app.extensions["fhirsrv"]

    def register(
        self, role: str = "regional-admin", scopes: str = "system/*.cruds", **kw: Any
    ) -> tuple[str, str]:
        with self.services.engine.begin() as conn:
            client, secret = add_client(conn, f"test {role}", scopes, role, **kw)
        return client.client_id, secret or ""

    def token(self, role: str = "regional-admin", scopes: str = "system/*.cruds", **kw: Any) -> str:
        client_id, secret = self.register(role, scopes, **kw)
        response = self.app.test_client().post(
            "/fhir/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        assert response.status_code == 200, response.get_json()
        return response.get_json()["access_token"]

    def headers(
        self, role: str = "regional-admin", scopes: str = "system/*.cruds", **kw: Any
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, scopes, **kw)}", "Content-Type": FHIR}


@pytest.fixture
def clients(auth_app: Flask) -> Clients:
    return Clients(auth_app)


def rsa_key() -> RSAKey:
    key = RSAKey.generate_key(2048, private=True)
    key.ensure_kid()
    return key


def ec_key() -> ECKey:
    key = ECKey.generate_key("P-384", private=True)
    key.ensure_kid()
    return key


def public_jwks(*keys: Any) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def assertion(
    client_id: str,
    key: Any,
    alg: str = "RS384",
    *,
    exp_in: int = 240,
    jti: str | None = None,
    aud: str = TOKEN_URL,
) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + exp_in,
        "jti": jti or str(uuid.uuid4()),
    }
    return jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])


def assertion_form(token: str, scope: str = "system/*.rs") -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": token,
    }
