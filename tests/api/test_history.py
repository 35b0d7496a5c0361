"""_history at instance, type and system level: order, _since, _at, _count and paging."""

from __future__ import annotations

import time

from tests.api.helpers import org, post, put


def _ids(bundle):  # type: ignore[no-untyped-def]
    return [
        (e["resource"]["id"] if "resource" in e else e["fullUrl"].rsplit("/", 1)[1], e["response"]["etag"])
        for e in bundle["entry"]
    ]


def test_history_newest_first_across_levels(client):
    a = post(client, org("A")).get_json()
    time.sleep(0.005)
    loc = post(client, {"resourceType": "Location", "name": "Site"}).get_json()
    time.sleep(0.005)
    put(client, {**a, "name": "A2"})
    instance = client.get(f"/fhir/Organization/{a['id']}/_history").get_json()
    assert instance["type"] == "history" and instance["total"] == 2
    assert [e["resource"]["name"] for e in instance["entry"]] == ["A2", "A"]
    type_level = client.get("/fhir/Organization/_history").get_json()
    assert [e["response"]["etag"] for e in type_level["entry"]] == ['W/"2"', 'W/"1"']
    system = client.get("/fhir/_history").get_json()
    assert [e["fullUrl"].split("/fhir/")[1] for e in system["entry"]] == [
        f"Organization/{a['id']}",
        f"Location/{loc['id']}",
        f"Organization/{a['id']}",
    ]
    assert system["entry"][0]["request"] == {"method": "PUT", "url": f"Organization/{a['id']}"}
    assert system["entry"][2]["request"] == {"method": "POST", "url": "Organization"}


def test_since_and_at(client):
    first = post(client, org("Un")).get_json()
    time.sleep(0.01)
    second = post(client, org("Deux")).get_json()
    since = client.get("/fhir/Organization/_history", query_string={"_since": second["meta"]["lastUpdated"]})
    assert [e["resource"]["name"] for e in since.get_json()["entry"]] == ["Deux"]
    time.sleep(0.01)
    put(client, {**first, "name": "Un bis"})
    at = client.get(
        f"/fhir/Organization/{first['id']}/_history", query_string={"_at": second["meta"]["lastUpdated"]}
    ).get_json()
    assert [e["resource"]["name"] for e in at["entry"]] == ["Un"]
    assert client.get("/fhir/_history?_since=yesterday").status_code == 400


def test_count_and_next_links_walk_every_version_once(client):
    oid = post(client, org("v1")).get_json()["id"]
    current = client.get(f"/fhir/Organization/{oid}").get_json()
    for n in range(2, 8):
        current = put(client, {**current, "name": f"v{n}"}).get_json()
    seen = []
    url = f"/fhir/Organization/{oid}/_history?_count=3"
    pages = 0
    while url:
        bundle = client.get(url).get_json()
        pages += 1
        seen += [e["resource"]["name"] for e in bundle["entry"]]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0].replace("http://fhir.test", "") if nxt else None
        if pages == 2:
            put(client, {**current, "name": "during paging"})  # must not shift the pages
    assert seen == [f"v{n}" for n in range(7, 0, -1)]
    assert pages == 3


def test_history_of_unknown_resource_is_404(client):
    assert client.get("/fhir/Organization/none/_history").status_code == 404


def test_an_early_since_comes_back_as_an_instant_a_client_can_pass_again(client):
    post(client, org("Un"))
    page = client.get("/fhir/_history?_since=0001-01-01T00:00:00Z&_count=0").get_json()
    assert page["meta"]["lastUpdated"] == "0001-01-01T00:00:00.000+00:00"
    again = client.get("/fhir/Organization/_history", query_string={"_since": page["meta"]["lastUpdated"]})
    assert again.status_code == 200 and [e["resource"]["name"] for e in again.get_json()["entry"]] == ["Un"]


def test_a_since_pasted_unencoded_is_read_as_its_offset(client):
    """`_history?_since=…+00:00` typed into a URL: the '+' arrives as a space."""
    first = post(client, org("Un")).get_json()
    stamp = first["meta"]["lastUpdated"]
    assert "+" in stamp
    pasted = client.get("/fhir/Organization/_history?_since=" + stamp.replace("+", "%20"))
    assert pasted.status_code == 200, pasted.get_json()
    assert [e["resource"]["name"] for e in pasted.get_json()["entry"]] == ["Un"]
