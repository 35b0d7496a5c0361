"""Writing Subscriptions: what the server accepts, what it keeps for itself (status, error,
owner), and who may see and change one. Both back-ends; no delivery loop runs here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fhirsrv.interactions import writes
from fhirsrv.storage import repository
from fhirsrv.sync import subscriptions
from tests.sync.site import CRITERIA, FHIR, PARTNER_SCOPES, Site, subscription

RECEIVER = "https://receiver.example.org"
ENDPOINT = f"{RECEIVER}/notify"


@pytest.fixture
def site(db_url: str) -> Iterator[Site]:
    found = Site(db_url, RECEIVER, loop=False)
    yield found
    found.close()


def post(site: Site, headers: dict[str, str], body: dict[str, Any] | None = None, **changes: Any) -> Any:
    res = body or subscription(ENDPOINT)
    if changes:
        res = {**res, **changes}
    return site.web.post("/fhir/Subscription", json=res, headers=headers)


def channel(**fields: Any) -> dict[str, Any]:
    return {"type": "rest-hook", "endpoint": ENDPOINT, "payload": FHIR, **fields}


def subscription_ids(bundle: dict[str, Any]) -> set[str]:
    """The Subscriptions a Bundle shows (an AuditEvent, which a regional administrator reads,
    names what was written by its id only)."""
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e.get("resource", {}).get("resourceType") == "Subscription"
    }


def diagnostics(answer: Any) -> str:
    return answer.get_json()["issue"][0]["diagnostics"]


# ------------------------------------------------------------------------- what is accepted
def test_a_new_subscription_is_requested_whatever_the_client_says(site: Site) -> None:
    partner = site.client("Plateforme")
    answer = post(site, partner, status="active", error="nothing")
    assert answer.status_code == 201, answer.get_json()
    created = answer.get_json()
    assert created["status"] == "requested" and "error" not in created
    assert created["criteria"] == CRITERIA
    assert post(site, partner, status="off").get_json()["status"] == "off"


@pytest.mark.parametrize(
    ("criteria", "status", "said"),
    [
        ("HealthcareService?nom=douleur", 400, "Unknown search parameter 'nom'"),
        (
            "HealthcareService?_lastUpdated=gt2024-13-45",
            400,
            "'gt2024-13-45' is not a valid date search value",
        ),
        ("HealthcareService?specialty:below=http://unknown.example.org|x", 400, "Subscription.criteria"),
        ("HealthcareService?name=x&_sort=name", 400, "_sort shape a search's answer"),
        ("HealthcareService?_include=HealthcareService:location", 400, "_include"),
        ("Patient?name=x", 400, "'Patient', which is not a resource type of this server"),
        ("  ", 400, "criteria is empty"),
        ("AuditEvent?action=C", 422, "AuditEvent resources cannot be subscribed to"),
        ("Subscription?status=active", 422, "Subscription resources cannot be subscribed to"),
    ],
)
def test_criteria_are_a_search_the_engine_accepts(site: Site, criteria: str, status: int, said: str) -> None:
    answer = post(site, site.client("Plateforme"), criteria=criteria)
    assert answer.status_code == status, answer.get_json()
    issue = answer.get_json()["issue"][0]
    assert said in issue["diagnostics"] and issue["expression"] == ["Subscription.criteria"]
    assert "handling=lenient" not in issue["diagnostics"]


def test_criteria_the_owner_may_not_search_are_refused(site: Site) -> None:
    client = site.client("Offres", scopes="system/HealthcareService.rs system/Subscription.cruds")
    assert post(site, client, criteria="HealthcareService?name=x").status_code == 201
    answer = post(site, client, criteria="Organization?name=x")
    assert answer.status_code == 403 and "search on Organization" in diagnostics(answer)


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        (
            {"type": "websocket"},
            "websocket' is not delivered by this server: it sends rest-hook notifications only",
        ),
        ({"type": "email", "endpoint": "mailto:x@example.org"}, "rest-hook notifications only"),
        ({"payload": "application/fhir+xml"}, "payload 'application/fhir+xml' is not sent"),
        ({"endpoint": "http://receiver.example.org:8080/notify"}, "must be https"),
        ({"endpoint": "https://127.0.0.1/notify"}, "loopback address (127.0.0.1)"),
        ({"endpoint": "https://[::1]:8443/notify"}, "loopback address (::1)"),
        ({"endpoint": "https://10.0.0.12/notify"}, "private address (10.0.0.12)"),
        ({"endpoint": "https://192.168.1.20/notify"}, "private address"),
        ({"endpoint": "https://169.254.169.254/latest"}, "link-local address (169.254.169.254)"),
        ({"endpoint": "https://0.0.0.0/notify"}, "unspecified address"),
        ({"endpoint": "https://localhost/notify"}, "(its host localhost resolves to it)"),
        ({"endpoint": "https://user:pw@receiver.example.org/notify"}, "credentials"),
        ({"header": ["Authorization: Bearer abc\r\nX-Injected: 1"]}, "one HTTP header"),
        ({"header": ["Host: elsewhere.example.org"]}, "Host is set by the server itself"),
        ({"header": ["no colon here"]}, "'Name: value'"),
    ],
)
def test_the_channel_is_a_rest_hook_the_server_may_reach(
    site: Site, fields: dict[str, Any], said: str
) -> None:
    answer = post(site, site.client("Plateforme"), channel=channel(**fields))
    assert answer.status_code == 422, answer.get_json()
    assert said in diagnostics(answer)
    assert "abc" not in answer.get_data(as_text=True), "a header value is never quoted back"


def test_a_public_https_endpoint_and_payload_choices(site: Site) -> None:
    partner = site.client("Plateforme")
    public = channel(endpoint="https://93.184.216.34/fhir/notify", header=["Authorization: Bearer abc"])
    assert post(site, partner, channel=public).status_code == 201
    empty = {"type": "rest-hook", "endpoint": ENDPOINT}
    assert post(site, partner, channel=empty).status_code == 201
    id_only = channel(
        _payload={"extension": [{"url": subscriptions.PAYLOAD_CONTENT_URL, "valueCode": "id-only"}]}
    )
    assert post(site, partner, channel=id_only).status_code == 201
    wrong = channel(_payload={"extension": [{"url": subscriptions.PAYLOAD_CONTENT_URL, "valueCode": "all"}]})
    assert post(site, partner, channel=wrong).status_code == 422


def test_status_is_the_server_s(site: Site) -> None:
    """A client turns a Subscription off, and asks again; the server's `active`/`error` stay
    through an update that changes neither what nor where it notifies."""
    partner = site.client("Plateforme")
    created = post(site, partner).get_json()
    sid = created["id"]
    active = {k: v for k, v in created.items() if k != "meta"} | {"status": "active", "error": "made up"}
    with site.services.engine.begin() as conn:  # as the delivery loop writes it
        current = repository.get_current(conn, "Subscription", sid)
        assert current is not None
        writes.replace(site.services, conn, current, active, actor=subscriptions.DELIVERY, validated=True)
    mine = site.status(sid, partner)
    assert (mine["status"], mine["error"]) == ("active", "made up")
    body = {k: v for k, v in mine.items() if k != "meta"}
    kept = site.put(body | {"reason": "Autre raison", "status": "requested", "error": "mine"}, partner)
    assert (kept["status"], kept["error"], kept["meta"]["versionId"]) == ("active", "made up", "3")
    # Sending back what it read changes nothing: no new version.
    assert site.put(body | {"reason": "Autre raison"}, partner)["meta"]["versionId"] == "3"
    moved = site.put(body | {"channel": channel(endpoint=f"{RECEIVER}/elsewhere")}, partner)
    assert moved["status"] == "requested" and "error" not in moved
    off = site.put({k: v for k, v in moved.items() if k != "meta"} | {"status": "off"}, partner)
    assert off["status"] == "off"
    again = site.put({k: v for k, v in off.items() if k != "meta"} | {"status": "active"}, partner)
    assert again["status"] == "requested"


# ------------------------------------------------------------------------------ who may
def test_anonymous_callers_are_asked_for_a_token(site: Site) -> None:
    partner = site.client("Plateforme")
    sid = post(site, partner).get_json()["id"]
    anonymous = {"Content-Type": FHIR}
    for answer in (
        post(site, anonymous),
        site.web.get("/fhir/Subscription", headers=anonymous),
        site.web.get(f"/fhir/Subscription/{sid}", headers=anonymous),
        site.web.get(f"/fhir/Subscription/{sid}/_history", headers=anonymous),
        site.web.delete(f"/fhir/Subscription/{sid}", headers=anonymous),
    ):
        assert answer.status_code == 401, answer.get_json()
    assert site.web.get("/fhir?_type=Subscription", headers=anonymous).status_code == 401
    # A system search or history without _type lists nothing of them either.
    assert sid not in site.web.get("/fhir?_count=1000", headers=anonymous).get_data(as_text=True)
    assert sid not in site.web.get("/fhir/_history?_count=1000", headers=anonymous).get_data(as_text=True)


def test_scopes_decide_who_creates(site: Site) -> None:
    reader = site.client("Lecteur", scopes="system/*.rs")
    assert post(site, reader).status_code == 403
    referent = site.client(
        "Référent", role="structure-referent", scopes="system/*.cruds", organization="Organization/org35"
    )
    assert post(site, referent).status_code == 201


def test_each_client_sees_and_changes_its_own_only(site: Site) -> None:
    """Another client's Subscription, a regional administrator's included, is one that does
    not exist: 404 to read, patch and its history, absent from searches and histories, the
    same 403 as an unknown id to PUT, and a DELETE that deletes nothing."""
    mine = site.client("Plateforme A")
    theirs = site.client("Plateforme B")
    admin = site.client("DSRC", role="regional-admin", scopes="system/*.cruds")
    a = post(site, mine).get_json()
    b = post(site, theirs).get_json()
    c = post(site, admin).get_json()
    for who, own, others in ((mine, a, (b, c)), (theirs, b, (a, c)), (admin, c, (a, b))):
        assert site.web.get(f"/fhir/Subscription/{own['id']}", headers=who).status_code == 200
        listed = site.web.get("/fhir/Subscription?_count=100&_total=accurate", headers=who).get_json()
        assert subscription_ids(listed) == {own["id"]} and listed["total"] == 1
        for url in (
            "/fhir/Subscription/_history",
            "/fhir/Subscription/_history?_since=1970-01-01T00:00:00Z",
            "/fhir?_type=Subscription,HealthcareService&_count=500",
            "/fhir/_history?_count=1000",
            "/fhir/_history?_since=1970-01-01T00:00:00Z&_count=1000",
            "/fhir?_count=1000",
        ):
            assert subscription_ids(site.web.get(url, headers=who).get_json()) == {own["id"]}, url
        for other in others:
            oid = other["id"]
            assert site.web.get(f"/fhir/Subscription/{oid}", headers=who).status_code == 404
            assert site.web.get(f"/fhir/Subscription/{oid}/_history/1", headers=who).status_code == 404
            assert site.web.get(f"/fhir/Subscription/{oid}/_history", headers=who).status_code == 404
            patched = site.web.patch(
                f"/fhir/Subscription/{oid}",
                json=[{"op": "replace", "path": "/reason", "value": "x"}],
                headers=who | {"Content-Type": "application/json-patch+json"},
            )
            assert patched.status_code == 404
            body = {k: v for k, v in other.items() if k != "meta"}
            put = site.web.put(f"/fhir/Subscription/{oid}", json=body, headers=who)
            unknown = site.web.put(
                "/fhir/Subscription/unknown-id", json=body | {"id": "unknown-id"}, headers=who
            )
            assert put.status_code == unknown.status_code == 403
            assert diagnostics(put).replace(oid, "ID") == diagnostics(unknown).replace("unknown-id", "ID")
            batch = {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"request": {"method": "GET", "url": f"Subscription/{oid}"}}],
            }
            assert (
                site.web.post("/fhir", json=batch, headers=who)
                .get_json()["entry"][0]["response"]["status"]
                .startswith("404")
            )
            conditional = site.web.get(f"/fhir/Subscription?_id={oid}", headers=who).get_json()
            assert not conditional.get("entry")
    assert site.web.delete(f"/fhir/Subscription/{b['id']}", headers=mine).status_code == 204
    assert site.web.get(f"/fhir/Subscription/{b['id']}", headers=theirs).status_code == 200, "not deleted"
    assert site.web.delete(f"/fhir/Subscription/{a['id']}", headers=mine).status_code == 204
    assert site.web.get(f"/fhir/Subscription/{a['id']}", headers=mine).status_code == 410


def test_a_partner_reader_may_own_subscriptions_and_nothing_else(site: Site) -> None:
    from fhirsrv.auth.clients import add_client

    with site.services.engine.begin() as conn:
        add_client(conn, "Plateforme", PARTNER_SCOPES, "partner-reader")
        with pytest.raises(ValueError, match="partner reader reads"):
            add_client(conn, "Plateforme", "system/*.rs system/HealthcareService.cruds", "partner-reader")
    partner = site.client("Plateforme")
    offer = site.current("HealthcareService", "hs-a")
    answer = site.web.put(
        "/fhir/HealthcareService/hs-a", json={k: v for k, v in offer.items() if k != "meta"}, headers=partner
    )
    assert answer.status_code == 403


def test_subscriptions_written_with_authorization_off_are_the_server_s(db_url: str) -> None:
    site = Site(db_url, RECEIVER, loop=False, auth=False)
    try:
        anyone = {"Content-Type": FHIR}
        created = site.web.post("/fhir/Subscription", json=subscription(ENDPOINT), headers=anyone)
        assert created.status_code == 201
        assert (
            site.web.get(f"/fhir/Subscription/{created.get_json()['id']}", headers=anyone).status_code == 200
        )
    finally:
        site.close()


def test_the_capability_statement_describes_subscriptions(site: Site) -> None:
    statement = site.web.get("/fhir/metadata").get_json()
    [entry] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    assert {i["code"] for i in entry["interaction"]} >= {"create", "read", "update", "delete", "search-type"}
    assert entry["updateCreate"] is False
    assert "rest-hook" in entry["documentation"] and "Backport" in entry["documentation"]
    assert {p["name"] for p in entry["searchParam"]} >= {"status", "criteria", "url", "type"}


def test_a_subscription_can_be_loaded_from_a_file(db_url: str, tmp_path: Any) -> None:
    """The server's own: through the same rules (a bad one stops the file), owned by no client."""
    import json

    from fhirsrv.interactions.load import LoadError, load_paths

    site = Site(db_url, RECEIVER, loop=False)
    try:
        good = tmp_path / "good.ndjson"
        good.write_text(json.dumps({**subscription(ENDPOINT), "id": "from-file", "status": "active"}) + "\n")
        load_paths(site.services, [good])
        stored = site.current("Subscription", "from-file")
        assert stored["status"] == "requested"
        partner = site.client("Plateforme")
        assert site.web.get("/fhir/Subscription/from-file", headers=partner).status_code == 404
        bad = tmp_path / "bad.ndjson"
        bad.write_text(json.dumps({**subscription("https://127.0.0.1/x"), "id": "bad"}) + "\n")
        with pytest.raises(LoadError, match="loopback"):
            load_paths(site.services, [bad])
    finally:
        site.close()


def test_a_regional_administrator_still_sees_every_entry_beside_subscriptions(site: Site) -> None:
    """Its histories mix entries it sees whatever their status with Subscriptions it sees only
    when its own: one page judged for both."""
    admin = site.client("DSRC", role="regional-admin", scopes="system/*.cruds")
    partner = site.client("Plateforme")
    own = post(site, admin).get_json()["id"]
    other = post(site, partner).get_json()["id"]
    history = site.web.get("/fhir/_history?_count=1000", headers=admin).get_json()
    shown = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in history["entry"] if "resource" in e}
    assert {"Organization/org29-draft", "HealthcareService/hs-d", f"Subscription/{own}"} <= shown
    assert f"Subscription/{other}" not in shown
    version = site.web.get("/fhir/HealthcareService/hs-d/_history/1", headers=admin)
    assert version.status_code == 200
