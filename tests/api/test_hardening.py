"""Limits, rate limiting, security headers, CORS and error hygiene of the HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhirsrv.access.principal import SERVER
from fhirsrv.app import create_app
from fhirsrv.interactions import writes
from fhirsrv.settings import Settings
from tests.api.helpers import FHIR, PUBLISHED_ORGANIZATION, count_rows


def _settings(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "auth": True,
        "rate_limit_anonymous": 0,
        "rate_limit_client": 0,
        "base_url": "http://fhir.test/fhir",
        **overrides,
    }
    return Settings.from_env(database_url=db_url, load_demo=False, **values)


@pytest.fixture
def make_app(db_url: str) -> Iterator[Any]:
    apps: list[Flask] = []

    def build(**overrides: Any) -> FlaskClient:
        app = create_app(_settings(db_url, **overrides))
        apps.append(app)
        services = app.extensions["fhirsrv"]
        with services.engine.begin() as conn:
            if not count_rows(app.test_client())[0]:  # one sample per database
                writes.create(services, conn, dict(PUBLISHED_ORGANIZATION), "o1", actor=SERVER)
        return app.test_client()

    yield build
    for app in apps:
        app.extensions["fhirsrv"].engine.dispose()


def _outcome(response: Any, status: int, code: str | None = None) -> None:
    assert response.status_code == status
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    if code:
        assert body["issue"][0]["code"] == code


def test_body_size_limit_is_413(make_app: Any) -> None:
    web = make_app(max_body_bytes=2000)
    before = count_rows(web)
    big = {"resourceType": "Organization", "name": "x" * 5000}
    # A Bundle is what an anonymous caller may post (a batch of reads): its size is judged.
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": big, "request": {"method": "POST", "url": "Organization"}}]}
    _outcome(web.post("/fhir", json=batch, headers={"Content-Type": FHIR}), 413)
    # A write is judged on its credentials first: an anonymous one is 401 whatever its size.
    _outcome(web.post("/fhir/Organization", json=big, headers={"Content-Type": FHIR}), 401)
    after = count_rows(web)
    assert after[0] - before[0] == after[1] - before[1] <= 1  # at most the refusal's AuditEvent
    assert web.get("/fhir/Organization?_summary=count").get_json()["total"] == 1


def test_query_string_limit_is_414(make_app: Any) -> None:
    web = make_app(max_query_length=200)
    _outcome(web.get("/fhir/Organization?name=" + "a" * 300), 414, "too-costly")


def test_too_many_search_parameters_is_400_too_costly(make_app: Any) -> None:
    web = make_app(max_search_params=5)
    query = "&".join(f"name=n{i}" for i in range(8))
    _outcome(web.get(f"/fhir/Organization?{query}"), 400, "too-costly")
    assert web.get("/fhir/Organization?name=n1&name=n2").status_code == 200


def test_count_is_capped(make_app: Any, db_url: str) -> None:
    web = make_app(max_count=2)
    response = web.get("/fhir/Organization?_count=100000")
    assert response.status_code == 200
    assert len(response.get_json().get("entry", [])) <= 2


def test_bundle_entry_limit(make_app: Any) -> None:
    from fhirsrv.auth.clients import add_client

    web = make_app(max_bundle_entries=3)
    services = web.application.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        client, secret = add_client(conn, "dsrc", "system/*.cruds", "regional-admin")
    token = web.post(
        "/fhir/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret)
    )
    headers = {"Authorization": f"Bearer {token.get_json()['access_token']}", "Content-Type": FHIR}
    entry = {
        "resource": {"resourceType": "Organization", "name": "a"},
        "request": {"method": "POST", "url": "Organization"},
    }
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry] * 5}
    before = count_rows(web)
    response = web.post("/fhir", json=bundle, headers=headers)
    assert 400 <= response.status_code < 500
    assert count_rows(web) == before


def test_anonymous_rate_limit_answers_429_with_retry_after(make_app: Any) -> None:
    web = make_app(rate_limit_anonymous=3, rate_limit_client=100)
    statuses = [web.get("/fhir/Organization/o1").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = web.get("/fhir/Organization/o1")
    _outcome(limited, 429, "throttled")
    assert int(limited.headers["Retry-After"]) >= 1
    # Another address has its own bucket.
    other = web.get("/fhir/Organization/o1", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 200


def test_client_rate_limit_is_per_client(make_app: Any) -> None:
    from fhirsrv.auth.clients import add_client

    web = make_app(rate_limit_anonymous=2, rate_limit_client=3)
    services = web.application.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        client, secret = add_client(conn, "dsrc", "system/*.rs", "regional-admin")
    token = web.post(
        "/fhir/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret)
    )
    headers = {"Authorization": f"Bearer {token.get_json()['access_token']}"}
    statuses = [web.get("/fhir/Organization/o1", headers=headers).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_requests_with_a_bad_token_are_rate_limited_per_address(make_app: Any) -> None:
    web = make_app(rate_limit_anonymous=3, rate_limit_client=100)
    bad = {"Authorization": "Bearer not-a-token"}
    statuses = [web.get("/fhir/Organization/o1", headers=bad).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    # The address's budget is spent, whatever it sends next; another address still has its own.
    assert web.get("/fhir/Organization/o1").status_code == 429
    other = web.get("/fhir/Organization/o1", headers=bad, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 401


def test_under_several_workers_each_process_allows_its_share_of_the_limit(make_app: Any) -> None:
    """5 a minute over 2 worker processes: 3 in each (rounded up), so a caller spread over both
    gets at most 6, and one whose requests all reach this process gets 3."""
    web = make_app(rate_limit_anonymous=5, rate_limit_client=100, workers=2)
    statuses = [web.get("/fhir/Organization/o1").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_a_bundle_larger_than_a_workers_share_is_refused_naming_the_share(make_app: Any) -> None:
    web = make_app(rate_limit_anonymous=8, rate_limit_client=100, workers=2)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Organization/o1"}} for _ in range(5)],
    }
    refused = web.post("/fhir", json=bundle, headers={"Content-Type": FHIR})
    _outcome(refused, 429)
    diagnostics = refused.get_json()["issue"][0]["diagnostics"]
    assert "at most 4 per minute in each of the 2 server processes" in diagnostics


def test_a_limit_is_shared_out_rounding_up_and_0_stays_no_limit() -> None:
    from fhirsrv.auth.hardening import share

    assert [share(600, n) for n in (1, 2, 3, 4)] == [600, 300, 200, 150]
    assert share(5, 2) == 3 and share(1, 4) == 1
    assert share(0, 4) == 0


def test_rate_limiter_refills_over_time() -> None:
    from fhirsrv.auth.hardening import RateLimiter

    limiter = RateLimiter()
    assert limiter.take("k", 60, now=0.0) == 0
    for _ in range(59):
        limiter.take("k", 60, now=0.0)
    assert limiter.take("k", 60, now=0.0) == pytest.approx(1.0)
    assert limiter.take("k", 60, now=1.0) == 0


def test_security_headers(make_app: Any) -> None:
    web = make_app()
    response = web.get("/fhir/Organization/o1")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in response.headers


def test_hsts_follows_the_public_base_and_only_a_trusted_proxy(make_app: Any) -> None:
    forged = {"X-Forwarded-Proto": "https"}
    untrusted = make_app()
    assert "Strict-Transport-Security" not in untrusted.get("/fhir/Organization/o1", headers=forged).headers
    trusted = make_app(trusted_proxies=1)
    secure = trusted.get("/fhir/Organization/o1", headers=forged)
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
    public_https = make_app(base_url="https://annuaire.example.org/fhir")
    answer = public_https.get("/fhir/Organization/o1")
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")


def _token_headers(web: FlaskClient, scopes: str = "system/*.cruds") -> dict[str, str]:
    from fhirsrv.auth.clients import add_client

    services = web.application.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        client, secret = add_client(conn, "dsrc", scopes, "regional-admin")
    token = web.post(
        "/fhir/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret)
    )
    return {"Authorization": f"Bearer {token.get_json()['access_token']}"}


def test_answers_to_a_request_with_a_token_are_not_stored(make_app: Any) -> None:
    web = make_app()
    headers = _token_headers(web)
    for response in (
        web.get("/fhir/Organization/o1", headers=headers),
        web.get("/fhir/Organization?name=Ligue", headers=headers),
        web.get("/fhir/metadata", headers=headers),
        web.get("/fhir/Organization/unknown", headers=headers),
        web.get("/fhir/Organization/o1", headers={"Authorization": "Bearer not-a-token"}),
    ):
        assert response.headers["Cache-Control"] == "no-store", response.status_code
    assert web.get("/fhir/Organization/o1").headers.get("Cache-Control") != "no-store"


def test_cors_for_the_public_api(make_app: Any) -> None:
    web = make_app(cors_origins="https://annuaire.example.org")
    allowed = web.get("/fhir/Organization/o1", headers={"Origin": "https://annuaire.example.org"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://annuaire.example.org"
    assert "ETag" in allowed.headers["Access-Control-Expose-Headers"]
    other = web.get("/fhir/Organization/o1", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = web.options(
        "/fhir/Organization",
        headers={"Origin": "https://annuaire.example.org", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code in (200, 204)
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


def test_cors_by_default_is_open_to_anonymous_reads_and_closed_to_tokens(make_app: Any) -> None:
    web = make_app()
    origin = {"Origin": "https://somewhere.example"}
    anonymous = web.get("/fhir/Organization/o1", headers=origin)
    assert anonymous.headers["Access-Control-Allow-Origin"] == "*"
    with_token = web.get("/fhir/Organization/o1", headers={**origin, **_token_headers(web)})
    assert with_token.status_code == 200
    assert "Access-Control-Allow-Origin" not in with_token.headers
    preflight = web.options(
        "/fhir/Organization",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert "Authorization" not in preflight.headers.get("Access-Control-Allow-Headers", "")


def test_cors_with_a_token_for_a_listed_origin_only(make_app: Any) -> None:
    web = make_app(cors_origins="*, https://annuaire.example.org")
    headers = _token_headers(web)
    listed = web.get("/fhir/Organization/o1", headers={"Origin": "https://annuaire.example.org", **headers})
    assert listed.headers["Access-Control-Allow-Origin"] == "https://annuaire.example.org"
    other = web.get("/fhir/Organization/o1", headers={"Origin": "https://evil.example", **headers})
    assert "Access-Control-Allow-Origin" not in other.headers
    anonymous_other = web.get("/fhir/Organization/o1", headers={"Origin": "https://evil.example"})
    assert anonymous_other.headers["Access-Control-Allow-Origin"] == "*"


def test_no_stack_trace_in_any_response(make_app: Any) -> None:
    web = make_app()

    def boom() -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    web.application.add_url_rule("/fhir/__boom", "boom", boom)
    response = web.get("/fhir/__boom")
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "secret internal detail" not in text and "Traceback" not in text
    assert response.get_json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("body", "path", "method"),
    [
        (b"{not json", "/fhir/Organization", "post"),
        (b'{"resourceType": "Patient", "id": "o1"}', "/fhir/Organization/o1", "put"),
        (b'{"resourceType": "Organization", "id": "other"}', "/fhir/Organization/o1", "put"),
        (b'{"resourceType": "Organization", "name": "\xff\xfe"}', "/fhir/Organization", "post"),
        (b"[" * 5000 + b"]" * 5000, "/fhir/Organization", "post"),
        (b'{"resourceType": "Organization", "name": {"nested": [[[[1]]]]}}', "/fhir/Organization", "post"),
        (b'"just a string"', "/fhir", "post"),
    ],
)
def test_malformed_writes_are_4xx_and_change_nothing(
    make_app: Any, body: bytes, path: str, method: str
) -> None:
    from fhirsrv.auth.clients import add_client

    web = make_app()
    services = web.application.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        client, secret = add_client(conn, "dsrc", "system/*.cruds", "regional-admin")
    token = web.post(
        "/fhir/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret)
    )
    headers = {"Authorization": f"Bearer {token.get_json()['access_token']}", "Content-Type": FHIR}
    before = count_rows(web)
    response = getattr(web, method)(path, data=body, headers=headers)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:300]
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert count_rows(web) == before
