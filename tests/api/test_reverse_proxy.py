"""The server behind a real reverse proxy on loopback, as every region deploys it: the token
endpoint, links, HSTS and the rate limits see the public base and the real client, never what
a client can forge (the Host header, an X-Forwarded-For the proxy did not write)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask

from fhirsrv.access.principal import SERVER
from fhirsrv.app import create_app
from fhirsrv.auth.clients import add_client
from fhirsrv.interactions import writes
from fhirsrv.settings import Settings
from tests.api.helpers import PUBLISHED_ORGANIZATION
from tests.api.proxy import PROXIES, request, reverse_proxy, waitress_server

PUBLIC = "https://annuaire.sos-bretagne.test/fhir"
PUBLIC_HOST = "annuaire.sos-bretagne.test"


def _app(db_url: str, **overrides: Any) -> Flask:
    values: dict[str, Any] = {
        "auth": True,
        "base_url": PUBLIC,
        "rate_limit_anonymous": 0,
        "rate_limit_client": 0,
        **overrides,
    }
    app = create_app(Settings.from_env(database_url=db_url, load_demo=False, **values))
    services = app.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        writes.create(services, conn, dict(PUBLISHED_ORGANIZATION), "o1", actor=SERVER)
    return app


@pytest.fixture(params=PROXIES)
def proxy_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def behind_proxy(db_url: str, proxy_kind: str, tmp_path: Path) -> Iterator[Any]:
    """Builds an app with the given settings, serves it with waitress behind the proxy; yields
    (app, proxy port, server port)."""
    apps: list[Flask] = []
    with ExitStack() as stack:

        def start(**overrides: Any) -> tuple[Flask, int, int]:
            app = _app(db_url, **overrides)
            apps.append(app)
            server_port = stack.enter_context(waitress_server(app))
            workdir = tmp_path / f"proxy{len(apps)}"
            proxy_port = stack.enter_context(reverse_proxy(proxy_kind, server_port, workdir))
            return app, proxy_port, server_port

        yield start
    for app in apps:
        app.extensions["fhirsrv"].engine.dispose()


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def test_client_credentials_through_the_proxy_with_a_public_https_base(behind_proxy: Any) -> None:
    app, proxy, _ = behind_proxy(trusted_proxies=1)
    with app.extensions["fhirsrv"].engine.begin() as conn:
        client, secret = add_client(conn, "dsrc", "system/*.rs", "regional-admin")
    form = urlencode({"grant_type": "client_credentials"}).encode()
    issued = request(
        proxy,
        "POST",
        "/fhir/token",
        headers={
            "Host": PUBLIC_HOST,
            "Authorization": _basic(client.client_id, secret or ""),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=form,
    )
    assert issued.status == 200, issued.body[:300]
    assert issued.headers["Cache-Control"] == "no-store"
    token = issued.json()["access_token"]
    read = request(
        proxy,
        "GET",
        "/fhir/Organization?name=Ligue",
        headers={"Host": PUBLIC_HOST, "Authorization": f"Bearer {token}"},
    )
    assert read.status == 200
    assert read.json()["entry"][0]["resource"]["id"] == "o1"


def test_links_use_the_public_base_whatever_the_host_header(behind_proxy: Any) -> None:
    _, proxy, _ = behind_proxy(trusted_proxies=1)
    found = request(proxy, "GET", "/fhir/Organization?name=Ligue", headers={"Host": "attacker.example"})
    assert found.status == 200
    bundle = found.json()
    assert bundle["link"][0]["url"].startswith(PUBLIC + "/Organization")
    assert bundle["entry"][0]["fullUrl"] == PUBLIC + "/Organization/o1"
    metadata = request(proxy, "GET", "/fhir/metadata", headers={"Host": "attacker.example"}).json()
    uris = metadata["rest"][0]["security"]["extension"][0]["extension"]
    assert {"url": "token", "valueUri": PUBLIC + "/token"} in uris


def test_hsts_is_sent_through_the_proxy(behind_proxy: Any) -> None:
    _, proxy, _ = behind_proxy(trusted_proxies=1, base_url="")
    # No configured base: the https the trusted proxy forwards is what makes the request secure.
    answer = request(proxy, "GET", "/fhir/Organization/o1", headers={"Host": PUBLIC_HOST})
    assert answer.status == 200
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")


def test_each_client_behind_the_trusted_proxy_has_its_own_budget(behind_proxy: Any) -> None:
    _, proxy, _ = behind_proxy(trusted_proxies=1, rate_limit_anonymous=2)

    def read(source: str, forged: str | None = None) -> int:
        headers = {"Host": PUBLIC_HOST, **({"X-Forwarded-For": forged} if forged else {})}
        return request(proxy, "GET", "/fhir/Organization/o1", source=source, headers=headers).status

    assert [read("127.0.0.2") for _ in range(3)] == [200, 200, 429]
    assert read("127.0.0.3") == 200
    # An address a client writes itself is not the trusted hop's: it gets no fresh budget.
    assert [read("127.0.0.4", forged=f"198.51.100.{i}") for i in range(3)] == [200, 200, 429]


def test_without_a_trusted_proxy_a_forged_forwarded_for_is_ignored(behind_proxy: Any) -> None:
    _, _, server = behind_proxy(trusted_proxies=0, rate_limit_anonymous=2)
    statuses = [
        request(server, "GET", "/fhir/Organization/o1", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status
        for i in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_the_audit_trail_names_the_client_behind_the_trusted_proxy(behind_proxy: Any) -> None:
    app, proxy, _ = behind_proxy(trusted_proxies=1)
    body = b'{"resourceType": "Organization", "name": "Nouvelle structure"}'
    headers = {
        "Host": PUBLIC_HOST,
        "Content-Type": "application/fhir+json",
        "X-Forwarded-For": "198.51.100.7",
    }
    refused = request(proxy, "POST", "/fhir/Organization", source="127.0.0.5", headers=headers, body=body)
    assert refused.status == 401
    web = app.test_client()
    with app.extensions["fhirsrv"].engine.begin() as conn:
        client, secret = add_client(conn, "audit reader", "system/*.rs", "regional-admin")
    token = web.post(
        "/fhir/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret)
    )
    events = web.get(
        "/fhir/AuditEvent", headers={"Authorization": f"Bearer {token.get_json()['access_token']}"}
    ).get_json()
    addresses = [
        agent.get("network", {}).get("address")
        for entry in events.get("entry", [])
        for agent in entry["resource"].get("agent", [])
    ]
    assert "127.0.0.5" in addresses  # the proxy's peer, not the proxy, nor what the client wrote
    assert "198.51.100.7" not in addresses
