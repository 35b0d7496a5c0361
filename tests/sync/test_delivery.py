"""rest-hook Subscriptions end to end: a real receiver on loopback gets exactly the changes that
match (or stop matching) the criteria, as the owner may see them, numbered without a gap, across
a receiver that fails and recovers and a restart of the server in between.

The server is the app with its delivery loop in this process; the receiver is an http.server
of the test. Both back-ends."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from fhirsrv.sync import endpoints
from fhirsrv.sync.tables import subscription_state
from tests.sync.site import (
    CATEGORY,
    Receiver,
    Site,
    eventually,
    lifecycle,
    organization,
    service,
    subscription,
)

SECRET = "Bearer receiver-s3cret-7f3a9"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def site(db_url: str, receiver: Receiver) -> Iterator[Site]:
    found = Site(db_url, receiver.origin)
    yield found
    found.close()


def subscribe(site: Site, receiver: Receiver, headers: dict[str, str], **channel: Any) -> str:
    answer = site.web.post("/fhir/Subscription", json=subscription(receiver.url, **channel), headers=headers)
    assert answer.status_code == 201, answer.get_json()
    created = answer.get_json()
    assert created["status"] == "requested"
    sid = created["id"]
    eventually(lambda: site.status(sid, headers)["status"] == "active", "the handshake makes it active")
    return sid


def renamed(site: Site, res_id: str, name: str, admin: dict[str, str]) -> None:
    res = site.current("HealthcareService", res_id)
    site.put({k: v for k, v in res.items() if k != "meta"} | {"name": name}, admin)


def recoded(site: Site, res_id: str, code: str, admin: dict[str, str]) -> None:
    res = site.current("HealthcareService", res_id)
    specialty = [{"coding": [{"system": CATEGORY, "code": code}]}]
    site.put({k: v for k, v in res.items() if k != "meta"} | {"specialty": specialty}, admin)


def delist(site: Site, org: str, admin: dict[str, str]) -> None:
    res = site.current("Organization", org)
    delisted = {k: v for k, v in res.items() if k != "meta"} | {"extension": lifecycle("delisted")}
    site.put(delisted, admin, **{"X-Lifecycle-Repair": "test: the structure left the directory"})


def summary(event: dict[str, Any]) -> tuple[int, str, str, str]:
    entry = event["entry"]
    return (
        event["number"],
        event["focus"].rsplit("/", 1)[1],
        entry["request"]["method"],
        entry["response"]["status"],
    )


def test_a_receiver_gets_exactly_the_matching_changes_through_failures_and_a_restart(
    db_url: str, site: Site, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = site.client("DSRC", role="regional-admin", scopes="system/*.cruds")
    partner = site.client("Plateforme", role="partner-reader")
    sid = subscribe(site, receiver, partner, header=[f"Authorization: {SECRET}"])
    [handshake] = receiver.handshakes()
    assert (
        handshake.parameter("status") == "requested"
        and handshake.parameter("events-since-subscription-start") == "0"
    )
    assert handshake.headers["Authorization"] == SECRET

    # -- receiver accepting: each change that matches now, or matched before, and nothing else.
    # (The loop reads an entry as it is when it looks: two changes of one entry it has not seen
    # yet are one event. So each entry's next change waits for the event of its last one.)
    # hs-b's rename comes first, and its recode after event 1: the loop takes changes in the
    # log's order, so it has looked at the rename by then (else it may read hs-b recoded while
    # it looks at the rename, and notify it twice).
    renamed(site, "hs-b", "Diététique, nouveau nom", admin)  # not in the criteria: nothing
    renamed(site, "hs-a", "Équipe mobile douleur (nouveau nom)", admin)  # 1: matches
    eventually(lambda: len(receiver.events()) >= 1, "event 1")
    recoded(site, "hs-b", "douleur-consultation-douleur-chronique", admin)  # 2: enters them
    eventually(lambda: len(receiver.events()) >= 2, "event 2")
    recoded(site, "hs-a", "dietetique-consultation", admin)  # 3: leaves them
    created = site.web.post(
        "/fhir/HealthcareService",
        json={k: v for k, v in service("x", "org29", "loc29", "douleur-hypnoanalgesie").items() if k != "id"},
        headers=admin | {"X-Lifecycle-Repair": "test: an offer published with its structure"},
    )
    assert created.status_code == 201
    hs_e = created.get_json()["id"]  # 4: a new one in the criteria
    renamed(site, "hs-c", "Hypnose (35)", admin)  # in 35: nothing
    renamed(site, "hs-d", "Douleur (brouillon)", admin)  # a draft structure's: hidden to the owner
    eventually(lambda: len(receiver.events()) >= 4, "events 3 and 4")
    events = receiver.events()
    assert [summary(events[n]) for n in sorted(events)] == [
        (1, "hs-a", "PUT", "200"),
        (2, "hs-b", "PUT", "200"),
        (3, "hs-a", "DELETE", "200"),  # left the criteria, still readable
        (4, hs_e, "POST", "201"),
    ]
    assert events[1]["entry"]["resource"]["name"] == "Équipe mobile douleur (nouveau nom)"
    assert "resource" not in events[3]["entry"]
    assert all(r.headers["Authorization"] == SECRET for r in receiver.received)
    assert receiver.notifications()[-1].parameter("status") == "active"

    # -- receiver failing: the Subscription goes to error, with the reason.
    receiver.mode = "fail"
    assert site.web.delete("/fhir/HealthcareService/hs-b", headers=admin).status_code == 204  # 5
    failed = eventually(
        lambda: (s := site.status(sid, partner))["status"] == "error" and s,
        "status error after repeated failures",
    )
    assert (
        "the receiver answered 500" in failed["error"] and "3 deliveries failed in a row" in failed["error"]
    )

    # -- the server stops; changes are written while no loop runs; it starts again.
    site.close()
    site2 = Site(db_url, receiver.origin, fresh=False, loop=False)
    try:
        renamed(site2, hs_e, "Hypnoanalgésie, nouveau nom", admin)  # 6
        created = site2.web.post(
            "/fhir/HealthcareService",
            json={
                k: v
                for k, v in service("x", "org29", "loc29", "douleur-neurostimulation").items()
                if k != "id"
            },
            headers=admin | {"X-Lifecycle-Repair": "test: an offer published with its structure"},
        )
        hs_f = created.get_json()["id"]  # 7
        site2.start()
        # A receiver that hangs past the timeout is one more failure, not a stuck loop.
        receiver.mode = "hang"
        receiver.hang_seconds = 3.0
        eventually(lambda: "did not answer within 1 s" in _last_error(site2, sid), "a delivery timing out")
        receiver.release.set()
        receiver.mode = "ok"
        eventually(lambda: len(receiver.events()) >= 7, "events 5 to 7 after the restart")
        back = eventually(
            lambda: (s := site2.status(sid, partner))["status"] == "active" and s, "active again"
        )
        assert "error" not in back
        # A delisting changes what its offers show without a new version of them: both notify
        # (a partner searches delisted entries too: they still match), in one notification.
        delist(site2, "org29", admin)  # 8, 9
        eventually(lambda: len(receiver.events()) >= 9, "events 8 and 9")
    finally:
        site2.close()
    events = receiver.events()
    assert sorted(events) == list(range(1, 10)), "every event once, numbered without a gap"
    assert [summary(events[n]) for n in range(5, 10)] == [
        (5, "hs-b", "DELETE", "410"),
        (6, hs_e, "PUT", "200"),
        (7, hs_f, "POST", "201"),
        (8, hs_e, "PUT", "200"),
        (9, hs_f, "PUT", "200"),
    ]
    assert events[6]["entry"]["resource"]["name"] == "Hypnoanalgésie, nouveau nom"
    assert any(len(n.events) == 2 for n in receiver.notifications()), "events 8 and 9 in one notification"
    # Each notification says how many events there were since the start: its last one's number.
    for notification in receiver.notifications():
        numbers = [e["number"] for e in notification.events]
        assert notification.parameter("events-since-subscription-start") == str(max(numbers))
    assert SECRET.split()[1] not in caplog.text, "a header value of a Subscription never reaches the log"


def _criteria(site: Site, sid: str) -> str | None:
    with site.services.engine.connect() as conn:
        return conn.execute(
            select(subscription_state.c.criteria).where(subscription_state.c.res_id == sid)
        ).scalar()


def _last_error(site: Site, sid: str) -> str:
    with site.services.engine.connect() as conn:
        state = conn.execute(
            select(subscription_state.c.last_error).where(subscription_state.c.res_id == sid)
        ).scalar()
    return state or ""


def test_criteria_are_searched_with_the_owner_s_access(site: Site, receiver: Receiver) -> None:
    """A structure referent searches public entries only: a delisted structure's offer leaves
    its criteria (and it is told so), where a partner, which searches delisted entries too,
    keeps it. A draft structure's offer never reaches either."""
    admin = site.client("DSRC", role="regional-admin", scopes="system/*.cruds")
    referent = site.client(
        "Référent 35", role="structure-referent", scopes="system/*.cruds", organization="Organization/org35"
    )
    sid = subscribe(site, receiver, referent)
    renamed(site, "hs-d", "Brouillon renommé", admin)
    renamed(site, "hs-a", "Douleur, nouveau nom", admin)  # 1
    eventually(lambda: receiver.events(), "event 1")
    delist(site, "org29", admin)  # 2: hs-a is no longer in a public search
    eventually(lambda: len(receiver.events()) >= 2, "two events")
    events = receiver.events()
    assert [summary(events[n]) for n in sorted(events)] == [
        (1, "hs-a", "PUT", "200"),
        (2, "hs-a", "DELETE", "200"),
    ]
    assert "resource" not in events[2]["entry"]
    assert site.status(sid, referent)["status"] == "active"


def test_an_empty_payload_carries_event_numbers_only(site: Site, receiver: Receiver) -> None:
    admin = site.client("DSRC", role="regional-admin", scopes="system/*.cruds")
    partner = site.client("Plateforme", role="partner-reader")
    answer = site.web.post(
        "/fhir/Subscription",
        json={**subscription(receiver.url), "channel": {"type": "rest-hook", "endpoint": receiver.url}},
        headers=partner,
    )
    sid = answer.get_json()["id"]
    eventually(lambda: site.status(sid, partner)["status"] == "active", "active")
    renamed(site, "hs-a", "Encore un nom", admin)
    eventually(lambda: receiver.notifications(), "a notification")
    [notification] = receiver.notifications()
    assert len(notification.body["entry"]) == 1, "the status alone"
    assert [e["number"] for e in notification.events] == [1] and notification.events[0]["focus"] is None


def test_writes_never_wait_for_a_receiver(site: Site, receiver: Receiver) -> None:
    """While the loop waits on a receiver that does not answer, writes go on and commit."""
    admin = site.client("DSRC", role="regional-admin", scopes="system/*.cruds")
    partner = site.client("Plateforme", role="partner-reader")
    subscribe(site, receiver, partner)
    receiver.mode = "hang"
    renamed(site, "hs-a", "Premier", admin)
    eventually(receiver.holding.is_set, "the receiver holding the notification")
    for n in range(5):
        renamed(site, "hs-a", f"Pendant l'attente {n}", admin)
    assert receiver.holding.is_set(), "the writes above committed while the delivery was held"
    receiver.release.set()
    receiver.mode = "ok"
    last = "Pendant l'attente 4"
    eventually(
        lambda: any(e["entry"]["resource"]["name"] == last for e in receiver.events().values()), "the last"
    )
    events = receiver.events()
    # The changes the loop had not looked at yet are one event: the entry as it is.
    assert sorted(events) == list(range(1, len(events) + 1)) and len(events) >= 2


def test_a_redirect_is_not_followed(db_url: str, receiver: Receiver) -> None:
    elsewhere = Receiver()
    receiver.mode = "redirect"
    receiver.redirect_to = elsewhere.url
    site = Site(db_url, f"{receiver.origin},{elsewhere.origin}")
    try:
        partner = site.client("Plateforme", role="partner-reader")
        answer = site.web.post("/fhir/Subscription", json=subscription(receiver.url), headers=partner)
        sid = answer.get_json()["id"]
        failed = eventually(lambda: (s := site.status(sid, partner))["status"] == "error" and s, "error")
        assert "307, a redirect, which is not followed" in failed["error"]
        assert elsewhere.answered == [] and receiver.answered[:3] == [307, 307, 307]
    finally:
        site.close()
        elsewhere.close()


def test_a_name_that_resolves_to_loopback_at_delivery_is_refused(
    db_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name resolved to a public address when the Subscription was written,
    and to 127.0.0.1 at delivery. The delivery checks again and connects nowhere."""
    monkeypatch.setattr(endpoints, "system_resolver", lambda host, port: ["93.184.216.34"])
    site = Site(db_url, receiver.origin, loop=False)
    try:
        partner = site.client("Plateforme", role="partner-reader")
        port = receiver.origin.rsplit(":", 1)[1]
        answer = site.web.post(
            "/fhir/Subscription",
            json=subscription(f"https://rebound.example.org:{port}/notify"),
            headers=partner,
        )
        assert answer.status_code == 201, answer.get_json()
        sid = answer.get_json()["id"]
        site.start(resolve=lambda host, port: ["127.0.0.1"])
        error = eventually(
            lambda: (s := site.status(sid, partner))["status"] == "error" and s["error"], "error"
        )
        assert "loopback address (127.0.0.1) (its host rebound.example.org resolves to it)" in error
        assert receiver.answered == []
    finally:
        site.close()


def test_off_stops_notifications_and_requested_starts_again(site: Site, receiver: Receiver) -> None:
    admin = site.client("DSRC", role="regional-admin", scopes="system/*.cruds")
    partner = site.client("Plateforme", role="partner-reader")
    sid = subscribe(site, receiver, partner)
    current = site.status(sid, partner)
    site.put({k: v for k, v in current.items() if k != "meta"} | {"status": "off"}, partner)
    eventually(lambda: _criteria(site, sid) == "", "the loop pausing it")
    renamed(site, "hs-a", "Pendant l'arrêt", admin)  # never notified
    current = site.status(sid, partner)
    assert current["status"] == "off"
    site.put({k: v for k, v in current.items() if k != "meta"} | {"status": "requested"}, partner)
    eventually(lambda: len(receiver.handshakes()) == 2, "a second handshake")
    eventually(lambda: site.status(sid, partner)["status"] == "active", "active again")
    renamed(site, "hs-a", "Après la reprise", admin)
    eventually(lambda: receiver.events(), "an event")
    events = receiver.events()
    assert [summary(events[n]) for n in sorted(events)] == [(1, "hs-a", "PUT", "200")]
    assert events[1]["entry"]["resource"]["name"] == "Après la reprise"


def test_organization_criteria_and_end(site: Site, receiver: Receiver) -> None:
    """Any type of the directory; past its `end`, the server turns the Subscription off."""
    admin = site.client("DSRC", role="regional-admin", scopes="system/*.cruds")
    partner = site.client("Plateforme", role="partner-reader")
    answer = site.web.post(
        "/fhir/Subscription",
        json=subscription(receiver.url, criteria="Organization?address-postalcode=35000"),
        headers=partner,
    )
    sid = answer.get_json()["id"]
    eventually(lambda: site.status(sid, partner)["status"] == "active", "active")
    org = site.current("Organization", "org35")
    site.put({k: v for k, v in org.items() if k != "meta"} | {"name": "Structure 35 renommée"}, admin)
    eventually(lambda: receiver.events(), "an event")
    assert summary(receiver.events()[1]) == (1, "org35", "PUT", "200")
    current = site.status(sid, partner)
    site.put({k: v for k, v in current.items() if k != "meta"} | {"end": "2020-01-01T00:00:00Z"}, partner)
    eventually(lambda: site.status(sid, partner)["status"] == "off", "off past its end")


def test_a_new_structure_in_the_criteria(site: Site, receiver: Receiver) -> None:
    """Entries published with their structure (one transaction) all notify."""
    admin = site.client("DSRC", role="regional-admin", scopes="system/*.cruds")
    partner = site.client("Plateforme", role="partner-reader")
    subscribe(site, receiver, partner)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": organization("org29-new", "29"),
                "request": {"method": "PUT", "url": "Organization/org29-new"},
            },
            {
                "resource": {**service("hs-new", "org29-new", "loc29", "douleur")},
                "request": {"method": "PUT", "url": "HealthcareService/hs-new"},
            },
        ],
    }
    answer = site.web.post(
        "/fhir", json=bundle, headers=admin | {"X-Lifecycle-Repair": "test: published at once"}
    )
    assert answer.status_code == 200, answer.get_json()
    eventually(lambda: receiver.events(), "an event")
    assert [summary(e) for e in receiver.events().values()] == [(1, "hs-new", "POST", "201")]


def test_a_change_a_chain_reads_through_notifies(site: Site, receiver: Receiver) -> None:
    """`departement` on an offer is read from its Location: the Location moving out of
    Finistère takes the offer out of the criteria, without the offer changing."""
    admin = site.client("DSRC", role="regional-admin", scopes="system/*.cruds")
    partner = site.client("Plateforme", role="partner-reader")
    subscribe(site, receiver, partner)
    place = {k: v for k, v in site.current("Location", "loc29").items() if k != "meta"}
    site.put(place | {"address": {"city": "Rennes", "postalCode": "35200"}}, admin)  # 1: hs-a leaves
    eventually(lambda: receiver.events(), "event 1")
    site.put(place, admin)  # 2: back in Finistère
    eventually(lambda: len(receiver.events()) >= 2, "event 2")
    events = receiver.events()
    assert [summary(events[n]) for n in sorted(events)] == [(1, "hs-a", "DELETE", "200"), (2, "hs-a", "PUT", "200")]
    assert site.current("HealthcareService", "hs-a")["meta"]["versionId"] == "1", "the offer itself never changed"


def test_a_deleted_subscription_is_forgotten(site: Site, receiver: Receiver) -> None:
    admin = site.client("DSRC", role="regional-admin", scopes="system/*.cruds")
    partner = site.client("Plateforme", role="partner-reader")
    sid = subscribe(site, receiver, partner)
    assert site.web.delete(f"/fhir/Subscription/{sid}", headers=partner).status_code == 204
    eventually(lambda: _criteria(site, sid) is None, "its state gone")
    renamed(site, "hs-a", "Après la suppression", admin)  # matched by nothing any more
    with site.services.engine.connect() as conn:
        assert conn.execute(select(subscription_state)).all() == []
    assert receiver.notifications() == []


def test_a_write_wakes_the_loop_of_its_process(db_url: str, receiver: Receiver) -> None:
    """With a poll interval longer than the test's patience, only the wake-up of a commit that
    wrote changes can bring the handshake and the notification."""
    site = Site(db_url, receiver.origin, subscription_poll_seconds=3600.0)
    try:
        admin = site.client("DSRC", role="regional-admin", scopes="system/*.cruds")
        partner = site.client("Plateforme", role="partner-reader")
        subscribe(site, receiver, partner)
        renamed(site, "hs-a", "Réveil", admin)
        eventually(lambda: receiver.events(), "the event")
    finally:
        site.close()
