"""A chained search's total counts each match once, exactly up to the bound
(FHIRSRV_EXACT_TOTAL_UP_TO) and as an estimate above it, however many ways an entry matches:
a structure whose name and alias both start with the value, an offer at two matching places.
And only what the caller may see: a hidden structure's offers, a hidden offer, are not counted
for an anonymous caller. PostgreSQL streams that count from the chain's innermost criterion
(search/streamed.py); SQLite counts as for any search: the totals are the same on both.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

import pytest
from flask import Flask
from sqlalchemy import func, select

from fhirsrv.access.policy import ScopedReads
from fhirsrv.access.principal import ANONYMOUS, Principal
from fhirsrv.canonical import Canonicals
from fhirsrv.search import streamed
from fhirsrv.search.scope import UNRESTRICTED, ReadScope
from fhirsrv.storage.bulk import refresh_statistics
from fhirsrv.storage.engine import read_transaction
from fhirsrv.storage.schema import live, resource
from tests.search.directory import load


def _referent(structure: str) -> ScopedReads:
    principal = Principal.client(
        role="structure-referent", client_id="referent", name="", scope="system/*.read", organization=structure
    )
    return ScopedReads(principal)


SCOPES = {
    "anonymous": ScopedReads(ANONYMOUS),
    "everything": UNRESTRICTED,
    # The referent of the structure not listed yet: its own two offers besides what is public.
    "own referent": _referent("maison-hidden"),
    # The referent of another structure: what is public, nothing of the others' drafts.
    "other referent": _referent("centre-1"),
}


def _org(org_id: str, name: str, alias: str | None = None, extension: Any = None) -> dict:
    org: dict[str, Any] = {"resourceType": "Organization", "id": org_id, "name": name}
    if alias:
        org["alias"] = [alias]
    if extension:
        org["extension"] = extension
    return org


def _offer(offer_id: str, org: str, places: list[str], extension: Any = None) -> dict:
    offer: dict[str, Any] = {
        "resourceType": "HealthcareService",
        "id": offer_id,
        "providedBy": {"reference": f"Organization/{org}"},
        "location": [{"reference": f"Location/{p}"} for p in places],
    }
    if extension:
        offer["extension"] = extension
    return offer


@pytest.fixture
def directory(app: Flask) -> Any:
    """Six listed `Maison` structures (three also with a `Maison` alias), three offers each; a
    `Maison` structure not listed yet, with two offers; one unlisted offer of a listed
    structure; two listed `Centre` structures. Two `Maison` places and a `Centre` one: offers at
    both `Maison` places, at one, or at the `Centre` one."""
    services = app.extensions["fhirsrv"]
    url = Canonicals(services.settings.canonical_base).entry_lifecycle

    def lifecycle(status: str) -> list[dict]:
        return [{"url": url, "extension": [{"url": "status", "valueCode": status}]}]

    published, draft = lifecycle("published"), lifecycle("draft")
    items: list[dict] = []
    for i in range(2):
        items.append(_org(f"centre-{i}", f"Centre {i}", extension=published))
    for place, name in (("place-a", "Maison A"), ("place-b", "Maison B"), ("place-c", "Centre C")):
        items.append(
            {
                "resourceType": "Location",
                "id": place,
                "name": name,
                "managingOrganization": {"reference": "Organization/centre-0"},
            }
        )
    for i in range(6):
        alias = f"Maison bis {i}" if i % 2 == 0 else None
        items.append(_org(f"maison-{i}", f"Maison {i}", alias, extension=published))
        places = [["place-a", "place-b"], ["place-a"], ["place-c"]]
        items += [_offer(f"hs-maison-{i}-{j}", f"maison-{i}", places[j]) for j in range(3)]
    items.append(_org("maison-hidden", "Maison cachée", "Maison encore", extension=draft))
    items += [_offer(f"hs-hidden-org-{j}", "maison-hidden", ["place-a"]) for j in range(2)]
    items.append(_offer("hs-hidden-offer", "maison-1", ["place-a", "place-b"], extension=draft))
    items += [_offer(f"hs-centre-{i}", f"centre-{i}", ["place-c"]) for i in range(2)]
    load(services, items)
    refresh_statistics(services.engine)
    return services


EXPECTED = {
    # 6 listed structures x 3 offers; for everything, + the unlisted structure's 2 and the unlisted offer
    ("organization.name=maison", "anonymous"): 18,
    ("organization.name=maison", "everything"): 21,
    # 6 listed structures x 2 offers at a Maison place (one at both); for everything, + the
    # unlisted structure's 2 and the unlisted offer (at both)
    ("location.name=maison", "anonymous"): 12,
    ("location.name=maison", "everything"): 15,
    ("organization.name=maison", "own referent"): 20,
    ("location.name=maison", "own referent"): 14,
    ("organization.name=maison", "other referent"): 18,
    ("location.name=maison", "other referent"): 12,
}


def _search(services: Any, query: str, scope: ReadScope) -> tuple[list[str], int | None]:
    ids, total, cursor = [], None, None
    while True:
        params = parse_qsl(query + "&_count=4") + ([("_cursor", cursor)] if cursor else [])
        request = services.search.prepare("HealthcareService", params, strict=True)
        with read_transaction(services.engine) as conn:
            page = services.search.execute(conn, request, scope)
        if total is None:
            total = page.total
        ids += [m.res_id for m in page.matches]
        cursor = page.next_cursor
        if cursor is None:
            return ids, total


@pytest.mark.parametrize(("query", "caller"), list(EXPECTED))
def test_each_match_counted_once_exactly_up_to_the_bound(directory, query, caller):
    expected = EXPECTED[(query, caller)]
    base = directory.search.settings
    for bound in (expected - 1, expected, expected + 1):
        directory.search.settings = replace(base, exact_total_up_to=bound)
        ids, total = _search(directory, query, SCOPES[caller])
        assert len(ids) == len(set(ids)) == expected, (bound, ids)
        if bound >= expected:
            assert total == expected, bound
        else:  # above the bound: an estimate, never below what the bounded count proved
            assert total is not None and total > bound, bound
    assert ("hs-hidden-offer" in ids) is (caller == "everything")


@pytest.mark.parametrize(("query", "caller"), list(EXPECTED))
def test_the_streamed_count_is_the_bounded_count(directory, query, caller):
    """On PostgreSQL the chain is counted streamed: for every bound, what counting its rows
    `LIMIT bound + 1` gives. SQLite keeps the plain count."""
    expected = EXPECTED[(query, caller)]
    with read_transaction(directory.engine) as conn:
        conditions = directory.search.conditions_for(conn, "HealthcareService", parse_qsl(query), SCOPES[caller])
        matches = select(resource.c.rid).where(
            live(resource), resource.c.res_type == "HealthcareService", *conditions
        )
        # A referent's scope (the public entries, or its own structure's) stays beside the chain.
        assert streamed.streamed(matches) is not None
        streams = conn.dialect.name == "postgresql"
        for up_to in range(expected + 2):
            plain = conn.execute(select(func.count()).select_from(matches.limit(up_to + 1).subquery()))
            counted = streamed.bounded_count(conn, matches, up_to)
            if streams:
                assert counted == plain.scalar_one() == min(expected, up_to + 1), up_to
            else:
                assert counted is None


def test_a_search_that_is_not_a_straight_chain_is_counted_as_before(directory):
    """Two criteria, or a chain through two target types: not streamed."""
    with read_transaction(directory.engine) as conn:
        for query in ("organization.name=maison&location.name=maison", "name=maison"):
            conditions = directory.search.conditions_for(conn, "HealthcareService", parse_qsl(query), UNRESTRICTED)
            matches = select(resource.c.rid).where(
                live(resource), resource.c.res_type == "HealthcareService", *conditions
            )
            assert streamed.streamed(matches) is None, query
