"""Matching the change log to a Subscription's events: what a chain reads through, and what is
kept while a receiver is down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from fhirsrv.resource_types import SUPPORTED_TYPES
from fhirsrv.search.registry import build_registry
from fhirsrv.settings import Settings
from fhirsrv.sync.matching import Link, links
from fhirsrv.sync.subscriptions import parse_criteria
from fhirsrv.sync.tables import subscription_state
from tests.sync.site import CRITERIA, Receiver, Site, eventually, subscription


def test_the_types_a_chain_reads_through(settings: Settings) -> None:
    registry = build_registry(settings, SUPPORTED_TYPES)

    def reached(criteria: str) -> list[Link]:
        return links(registry, parse_criteria(criteria))

    assert reached(CRITERIA) == [Link("Location", "location")]  # departement is location.departement
    assert reached("HealthcareService?organization.name=ligue") == [Link("Organization", "organization")]
    assert reached("HealthcareService?organization:Organization.name=ligue&name=x") == [
        Link("Organization", "organization")
    ]
    assert reached("PractitionerRole?practitioner.name=martin&organization.name=x") == [
        Link("Practitioner", "practitioner"),
        Link("Organization", "organization"),
    ]
    assert reached("HealthcareService?name=douleur&_id=a,b") == []


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def test_a_receiver_down_too_long_sees_a_gap(db_url: str, receiver: Receiver) -> None:
    """Past FHIRSRV_SUBSCRIPTION_MAX_QUEUED undelivered events, the oldest are dropped: the
    numbers the receiver gets then skip, which tells it to catch up from `_history`."""
    site = Site(db_url, receiver.origin, subscription_max_queued=2)
    try:
        admin = site.client("DSRC", role="regional-admin", scopes="system/*.cruds")
        partner = site.client("Plateforme")
        sid = site.web.post(
            "/fhir/Subscription", json=subscription(receiver.url), headers=partner
        ).get_json()["id"]
        eventually(lambda: site.status(sid, partner)["status"] == "active", "active")
        receiver.mode = "fail"
        for n in range(1, 5):
            offer = {k: v for k, v in site.current("HealthcareService", "hs-a").items() if k != "meta"}
            site.put(offer | {"name": f"Nom {n}"}, admin)
            eventually(lambda n=n: _numbered(site, sid) == n, f"event {n} numbered")
        receiver.mode = "ok"
        eventually(lambda: 4 in receiver.events(), "event 4")
        assert sorted(receiver.events()) == [3, 4]
        assert receiver.events()[4]["entry"]["resource"]["name"] == "Nom 4"
    finally:
        site.close()


def _numbered(site: Site, sid: str) -> int:
    with site.services.engine.connect() as conn:
        found = conn.execute(
            select(subscription_state.c.events).where(subscription_state.c.res_id == sid)
        ).scalar()
    return int(found or 0)
