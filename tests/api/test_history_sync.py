"""Syncing a copy of the directory from `_history?_since=…` (IHE mCSD Update Consumer): replay
the pages in order, resume from the Bundle's `meta.lastUpdated`, and end on the server's state
exactly, whoever asks and whatever commits meanwhile (fhirsrv/interactions/history.py)."""

from __future__ import annotations

import json
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from fhirsrv.access.principal import SERVER
from fhirsrv.interactions import writes
from fhirsrv.storage.engine import read_transaction, write_transaction
from fhirsrv.storage.schema import live, resource
from tests.api.helpers import auth_app, post, put, token_headers
from tests.conftest import ONLY_POSTGRES
from tests.live_server import serving

FHIR = "application/fhir+json"
LIFECYCLE = "https://sos.example.org/fhir/StructureDefinition/sos-entry-lifecycle"
DIRECTORY = ("Organization", "HealthcareService", "Location", "PractitionerRole", "Practitioner")
EPOCH = "1970-01-01T00:00:00Z"
REPAIR = {"X-Lifecycle-Repair": "test of the sync"}


def lifecycle(status: str) -> list[dict[str, Any]]:
    return [{"url": LIFECYCLE, "extension": [{"url": "status", "valueCode": status}]}]


def structure(oid: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": oid,
        "extension": lifecycle(status),
        "name": f"Structure {oid}",
        "address": [{"city": "Brest", "postalCode": "29200"}],
    }


def entries_of(oid: str) -> list[dict[str, Any]]:
    """A structure's place, offer, role and person."""
    owner = {"reference": f"Organization/{oid}"}
    return [
        {"resourceType": "Location", "id": f"loc-{oid}", "name": f"Site {oid}", "managingOrganization": owner},
        {
            "resourceType": "HealthcareService",
            "id": f"hs-{oid}",
            "extension": lifecycle("published"),
            "name": f"Offre {oid}",
            "providedBy": owner,
            "location": [{"reference": f"Location/loc-{oid}"}],
        },
        {"resourceType": "Practitioner", "id": f"p-{oid}", "name": [{"family": f"Personne {oid}"}]},
        {
            "resourceType": "PractitionerRole",
            "id": f"role-{oid}",
            "organization": owner,
            "practitioner": {"reference": f"Practitioner/p-{oid}"},
        },
    ]


@dataclass
class Replica:
    """A client's copy of the directory: `Type/id` -> resource, kept by replaying `_history`."""

    get: Any  # (url) -> Bundle, following the server's absolute links
    query: dict[str, str]
    copy: dict[str, dict[str, Any]] = field(default_factory=dict)
    since: str = EPOCH
    seen: list[dict[str, Any]] = field(default_factory=list)

    def sync(self, path: str = "_history") -> None:
        url: str | None = f"{path}?{urlencode({**self.query, '_since': self.since})}"
        resume = self.since
        while url:
            bundle = self.get(url)
            for entry in bundle.get("entry", []):
                self.seen.append(entry)
                key = "/".join(entry["fullUrl"].rsplit("/", 2)[-2:])
                if "resource" in entry:
                    self.copy[key] = entry["resource"]
                else:
                    assert entry["request"] == {"method": "DELETE", "url": key}
                    self.copy.pop(key, None)
            resume = bundle["meta"]["lastUpdated"]
            url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        self.since = resume

    def versions(self) -> dict[str, str]:
        return {key: res["meta"]["versionId"] for key, res in self.copy.items()}

    def news(self, before: int) -> list[dict[str, Any]]:
        """The entries seen since `before`, less those seen again at the resume instant."""
        earlier = {_said(e) for e in self.seen[:before]}
        return [e for e in self.seen[before:] if _said(e) not in earlier]


def _said(entry: dict[str, Any]) -> str:
    return json.dumps([entry["fullUrl"], entry["request"], entry["response"]], sort_keys=True)


def searched(get: Any, types: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """What the caller's search finds of these types, now."""
    found = {}
    for res_type in types:
        bundle = get(f"{res_type}?_count=1000")
        assert "next" not in {link["relation"] for link in bundle["link"]}
        for entry in bundle.get("entry", []):
            found[f"{res_type}/{entry['resource']['id']}"] = entry["resource"]
    return found


# ------------------------------------------------------------------ order, resuming, paging
def _keys(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    return [("/".join(e["fullUrl"].rsplit("/", 2)[-2:]), e["response"]["etag"]) for e in bundle["entry"]]


def test_since_lists_oldest_first_and_says_where_to_resume(client: FlaskClient) -> None:
    a = post(client, {"resourceType": "Organization", "name": "A"}).get_json()
    b = post(client, {"resourceType": "Location", "name": "B"}).get_json()
    put(client, {**a, "name": "A2"})
    first = client.get("/fhir/_history", query_string={"_since": EPOCH}).get_json()
    assert _keys(first) == [
        (f"Organization/{a['id']}", 'W/"1"'),
        (f"Location/{b['id']}", 'W/"1"'),
        (f"Organization/{a['id']}", 'W/"2"'),
    ]
    assert "total" not in first
    resume = first["meta"]["lastUpdated"]
    assert resume >= first["entry"][-1]["response"]["lastModified"]
    # Newest first without _since (R4's order), or when _sort says so.
    assert _keys(client.get("/fhir/_history").get_json()) == first_reversed(first)
    newest = client.get("/fhir/_history", query_string={"_since": EPOCH, "_sort": "-_lastUpdated"}).get_json()
    assert _keys(newest) == first_reversed(first)
    oldest = client.get("/fhir/Organization/_history", query_string={"_sort": "_lastUpdated"}).get_json()
    assert [etag for _, etag in _keys(oldest)] == ['W/"1"', 'W/"2"']
    # Resuming: the change(s) of the resume instant again at most, then what came after.
    c = post(client, {"resourceType": "Location", "name": "C"}).get_json()
    again = client.get("/fhir/_history", query_string={"_since": resume}).get_json()
    keys = _keys(again)
    assert keys[-1] == (f"Location/{c['id']}", 'W/"1"')
    assert set(keys[:-1]) <= set(_keys(first))
    # Nothing since: an empty page that still says where to resume.
    later = client.get("/fhir/Location/_history", query_string={"_since": again["meta"]["lastUpdated"]}).get_json()
    assert later["meta"]["lastUpdated"] >= again["meta"]["lastUpdated"]


def first_reversed(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    return list(reversed(_keys(bundle)))


def test_history_parameters_are_checked(client: FlaskClient) -> None:
    oid = post(client, {"resourceType": "Organization", "name": "A"}).get_json()["id"]
    assert client.get("/fhir/_history?_sort=name").status_code == 400
    assert client.get(f"/fhir/Organization/{oid}/_history?_sort=_lastUpdated").status_code == 400
    assert client.get(f"/fhir/Organization/{oid}/_history?_sort=-_lastUpdated").status_code == 200
    assert client.get("/fhir/Organization/_history?_type=Location").status_code == 400
    assert client.get("/fhir/_history?_type=Nothing").status_code == 404
    only = client.get("/fhir/_history", query_string={"_type": "Location", "_since": EPOCH}).get_json()
    assert only["entry"] == []
    # A cursor of one order is refused with the other (start again from the first page).
    post(client, {"resourceType": "Organization", "name": "B"})
    page = client.get("/fhir/Organization/_history", query_string={"_since": EPOCH, "_count": 1}).get_json()
    cursor = next(link["url"] for link in page["link"] if link["relation"] == "next").split("_cursor=")[1]
    assert client.get(f"/fhir/Organization/_history?_cursor={cursor}").status_code == 400
    assert client.get(f"/fhir/Organization/{oid}/_history?_cursor={cursor}").status_code == 400


def test_pages_never_repeat_nor_skip_a_change_while_others_write(client: FlaskClient) -> None:
    made = [post(client, {"resourceType": "Location", "name": f"L{i}"}).get_json() for i in range(5)]
    url: str | None = f"/fhir/Location/_history?{urlencode({'_since': EPOCH, '_count': 2})}"
    seen: list[tuple[str, str]] = []
    pages = 0
    while url and pages < 50:
        bundle = client.get(url.replace("http://fhir.test", "")).get_json()
        seen += _keys(bundle)
        pages += 1
        if pages <= 3:  # writes between pages come on later pages, oldest first
            made.append(post(client, {"resourceType": "Location", "name": f"during {pages}"}).get_json())
            put(client, {**made[0], "name": f"L0 v{pages + 1}"})
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert len(seen) == len(set(seen)) == 5 + 3 + 3
    assert seen[:5] == [(f"Location/{m['id']}", 'W/"1"') for m in made[:5]]
    # Newest first: the pages stay on the log as the first page saw it.
    url = "/fhir/Location/_history?_count=4"
    newest: list[tuple[str, str]] = []
    while url:
        bundle = client.get(url.replace("http://fhir.test", "")).get_json()
        newest += _keys(bundle)
        post(client, {"resourceType": "Location", "name": "meanwhile"})
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert newest == list(reversed(seen))


@pytest.mark.parametrize("db_url", ONLY_POSTGRES, indirect=True)
def test_a_change_that_commits_late_is_not_skipped(app: Flask, client: FlaskClient) -> None:
    """A transaction stamps its version, then commits after another one: a client that synced
    in between resumes from an instant later than that version's `lastUpdated`, and still gets
    it, because `_since` is the commit instant (change_log.at), not the version's stamp."""
    services = app.extensions["fhirsrv"]
    stamped, proceed = threading.Event(), threading.Event()

    def early() -> None:
        with write_transaction(services.engine) as conn:
            writes.create(services, conn, {"resourceType": "Location", "name": "early"}, "early", actor=SERVER)
            stamped.set()
            proceed.wait(30)

    writer = threading.Thread(target=early)
    writer.start()
    try:
        assert stamped.wait(30)
        late = post(client, {"resourceType": "Location", "name": "late"}).get_json()
        first = client.get("/fhir/Location/_history", query_string={"_since": EPOCH}).get_json()
        assert _keys(first) == [(f"Location/{late['id']}", 'W/"1"')]
        resume = first["meta"]["lastUpdated"]
    finally:
        proceed.set()
        writer.join(30)
    early_version = client.get("/fhir/Location/early").get_json()
    assert early_version["meta"]["lastUpdated"] < late["meta"]["lastUpdated"] <= resume
    second = client.get("/fhir/Location/_history", query_string={"_since": resume}).get_json()
    assert ("Location/early", 'W/"1"') in _keys(second)


# -------------------------------------------------------------- who sees which changes
@pytest.fixture
def directory_app(db_url: str) -> Iterator[Flask]:
    app = auth_app(db_url)
    services = app.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        for oid, status in (("pub", "published"), ("draft", "draft")):
            for res in (structure(oid, status), *entries_of(oid)):
                writes.create(services, conn, dict(res), res["id"], actor=SERVER)
    yield app
    services.engine.dispose()


def _getter(web: FlaskClient, headers: dict[str, str]) -> Any:
    def get(url: str) -> dict[str, Any]:
        answer = web.get("/fhir/" + url.replace("http://fhir.test/fhir/", "").lstrip("/"), headers=headers)
        assert answer.status_code == 200, (url, answer.get_json())
        return answer.get_json()

    return get


def test_each_caller_replays_to_what_its_search_finds(directory_app: Flask) -> None:
    """The public client is told when an entry leaves the public directory (a removal: DELETE
    without a resource), never left with a silent gap; a partner reader, who may see delisted
    entries, gets the delisting as the structure's new version; nobody learns an id it never saw."""
    web = directory_app.test_client()
    admin = token_headers(directory_app, "regional-admin") | {"Content-Type": FHIR}
    callers = {
        "anonymous": {},
        "partner": token_headers(directory_app, "partner-reader", "system/*.rs"),
        "regional": token_headers(directory_app, "regional-admin", "system/*.rs"),
    }
    query = {"_type": ",".join(DIRECTORY), "_count": "3"}
    replicas = {name: Replica(_getter(web, h), query) for name, h in callers.items()}

    def check() -> None:
        for name, replica in replicas.items():
            replica.sync()
            fresh = Replica(_getter(web, callers[name]), query)
            fresh.sync()
            expected = searched(_getter(web, callers[name]), DIRECTORY)
            assert replica.copy == expected, name
            assert fresh.copy == expected, name

    check()
    public = {f"{t}/{i}" for t, i in zip(DIRECTORY, ("pub", "hs-pub", "loc-pub", "role-pub", "p-pub"), strict=True)}
    assert set(replicas["anonymous"].copy) == public
    assert len(replicas["regional"].copy) == 10

    # Delisted: the public client is told each entry left; the partner gets the new version.
    delisted = web.put("/fhir/Organization/pub", json=structure("pub", "delisted"), headers=admin | REPAIR)
    assert delisted.status_code == 200
    before = len(replicas["anonymous"].seen)
    check()
    told = replicas["anonymous"].news(before)
    assert {e["request"]["method"] for e in told} == {"DELETE"} and not any("resource" in e for e in told)
    assert {e["request"]["url"] for e in told} == public
    assert replicas["anonymous"].copy == {}
    assert replicas["partner"].copy["Organization/pub"]["meta"]["versionId"] == "2"
    # Still citeable by id: a care plan's reference does not break.
    assert web.get("/fhir/HealthcareService/hs-pub").status_code == 200

    # Published: the structure's entries appear, though only the structure has a new version.
    published = web.put("/fhir/Organization/draft", json=structure("draft", "published"), headers=admin | REPAIR)
    assert published.status_code == 200
    before = len(replicas["anonymous"].seen)
    check()
    appeared = replicas["anonymous"].news(before)
    assert replicas["anonymous"].copy["HealthcareService/hs-draft"]["meta"]["versionId"] == "1"
    assert {"/".join(e["fullUrl"].rsplit("/", 2)[-2:]) for e in appeared} == {
        p.replace("pub", "draft") for p in public
    }
    assert all("resource" in e for e in appeared)

    # Deleted, and a hidden entry created then deleted: one DELETE, and no trace of the other.
    assert web.delete("/fhir/HealthcareService/hs-draft", headers=admin).status_code == 204
    secret = {**entries_of("draft")[1], "id": "hs-never-shown", "extension": lifecycle("draft"), "name": "Jamais"}
    assert web.put("/fhir/HealthcareService/hs-never-shown", json=secret, headers=admin | REPAIR).status_code == 201
    assert web.delete("/fhir/HealthcareService/hs-never-shown", headers=admin).status_code == 204
    check()
    for name in ("anonymous", "partner"):
        fresh = Replica(_getter(web, callers[name]), query)
        fresh.sync()
        assert not any("hs-never-shown" in e["fullUrl"] for e in fresh.seen), name
    assert "HealthcareService/hs-draft" not in replicas["anonymous"].copy
    assert any("hs-never-shown" in e["fullUrl"] for e in replicas["regional"].seen)


def test_a_history_does_not_tell_a_caller_when_a_write_it_may_not_see_happened(directory_app: Flask) -> None:
    """The page's resume instant (`meta.lastUpdated`) is that of the last change the caller
    was shown: a draft offer written by an administrator moves the administrator's, not the
    public's, and the public's resume still misses nothing once the offer is published."""
    web = directory_app.test_client()
    admin = token_headers(directory_app, "regional-admin") | {"Content-Type": FHIR}
    regional = token_headers(directory_app, "regional-admin", "system/*.rs")
    query = {"_since": EPOCH, "_type": ",".join(DIRECTORY)}

    def page(headers: dict[str, str], since: str = EPOCH) -> dict[str, Any]:
        return web.get("/fhir/_history", query_string={**query, "_since": since}, headers=headers).get_json()

    public_before, regional_before = page({}), page(regional)
    assert public_before["meta"]["lastUpdated"] >= public_before["entry"][-1]["response"]["lastModified"]
    hidden = {**entries_of("pub")[1], "id": "hs-hidden", "extension": lifecycle("draft"), "name": "Brouillon"}
    assert web.put("/fhir/HealthcareService/hs-hidden", json=hidden, headers=admin | REPAIR).status_code == 201

    public_after, regional_after = page({}), page(regional)
    assert regional_after["meta"]["lastUpdated"] > regional_before["meta"]["lastUpdated"]
    assert public_after["meta"]["lastUpdated"] == public_before["meta"]["lastUpdated"]
    resume = page({}, public_after["meta"]["lastUpdated"])
    assert resume["meta"]["lastUpdated"] == public_before["meta"]["lastUpdated"]
    assert not any("hs-hidden" in e["fullUrl"] for e in resume["entry"])
    # Published later: the public client resuming from its instant gets it.
    shown = {**hidden, "extension": lifecycle("published")}
    assert web.put("/fhir/HealthcareService/hs-hidden", json=shown, headers=admin | REPAIR).status_code == 200
    later = page({}, public_after["meta"]["lastUpdated"])
    assert any(e["fullUrl"].endswith("HealthcareService/hs-hidden") for e in later["entry"])
    assert later["meta"]["lastUpdated"] > public_after["meta"]["lastUpdated"]


# ---------------------------------------------------- replay under concurrent writers
def _http(method: str, url: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Accept": FHIR, **headers})
    if data is not None:
        request.add_header("Content-Type", FHIR)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def _writer(base: str, headers: dict[str, str], number: int, rounds: int, failures: list[str]) -> None:
    """Creates structures with their entries, updates offers, delists, republishes, hides
    and deletes, each step its own request."""
    draw = random.Random(number)
    for n in range(rounds):
        oid = f"w{number}-{n}"
        steps: list[tuple[str, str, Any]] = [("PUT", f"Organization/{oid}", structure(oid, "published"))]
        steps += [("PUT", f"{r['resourceType']}/{r['id']}", r) for r in entries_of(oid)]
        steps.append(("PUT", f"HealthcareService/hs-{oid}", {**entries_of(oid)[1], "name": f"Offre {oid} bis"}))
        statuses = draw.sample(["delisted", "draft", "withdrawn", "verification-pending"], 3)
        for status in statuses + (["published"] if n % 2 == 0 else []):
            steps.append(("PUT", f"Organization/{oid}", structure(oid, status)))
        if draw.random() < 0.5:
            steps.append(("DELETE", f"HealthcareService/hs-{oid}", None))
        if n % 2 and draw.random() < 0.5:
            steps.append(("DELETE", f"Organization/{oid}", None))
        for method, path, body in steps:
            status, answer = _http(method, f"{base}/{path}", headers | REPAIR, body)
            if status >= 300:
                failures.append(f"{method} {path}: {status} {answer}")


def test_replaying_history_pages_under_concurrent_writes_reproduces_the_server(db_url: str) -> None:
    """Three writers change the directory over HTTP while three clients (anonymous, a partner
    reader, a regional administrator) sync by pages of `_history?_since=…`; at the end each
    copy is, resource for resource and version for version, what that caller's search finds
    (for the administrator: every live resource of the database)."""
    app = auth_app(db_url, base_url=None)
    services = app.extensions["fhirsrv"]
    try:
        with serving(app, threads=6) as base:
            admin = token_headers(app, "regional-admin", base=base)
            callers = {
                "anonymous": {},
                "partner": token_headers(app, "partner-reader", "system/*.rs", base=base),
                "regional": token_headers(app, "regional-admin", "system/*.rs", base=base),
            }

            def getter(headers: dict[str, str]) -> Any:
                def get(url: str) -> dict[str, Any]:
                    status, answer = _http("GET", url if url.startswith("http") else f"{base}/{url}", headers)
                    assert status == 200, (url, answer)
                    return answer

                return get

            query = {"_type": ",".join(DIRECTORY), "_count": "7"}
            replicas = {name: Replica(getter(h), query) for name, h in callers.items()}
            failures: list[str] = []
            writers = [threading.Thread(target=_writer, args=(base, admin, i, 4, failures)) for i in range(3)]
            for w in writers:
                w.start()
            syncs = 0
            while any(w.is_alive() for w in writers) and syncs < 500:
                for replica in replicas.values():
                    replica.sync()
                syncs += 1
            for w in writers:
                w.join(120)
            assert not failures, failures[:5]
            assert syncs >= 2
            for name, replica in replicas.items():
                replica.sync()
                expected = searched(getter(callers[name]), DIRECTORY)
                assert replica.versions() == {k: r["meta"]["versionId"] for k, r in expected.items()}, name
                assert replica.copy == expected, name
    finally:
        with read_transaction(services.engine) as conn:
            stored = conn.execute(
                select(resource.c.res_type, resource.c.res_id, resource.c.version_id).where(
                    resource.c.res_type.in_(DIRECTORY), live(resource)
                )
            ).all()
        services.engine.dispose()
    assert replicas["regional"].versions() == {f"{t}/{i}": str(v) for t, i, v in stored}
    assert replicas["anonymous"].versions() and len(replicas["anonymous"].copy) < len(stored)


def test_a_fhirpy_client_syncs_by_following_next_links(db_url: str) -> None:
    """fhirpy's SyncFHIRClient, as a platform would use it: `_history?_since` then `next`."""
    from fhirpy import SyncFHIRClient

    app = auth_app(db_url, base_url=None)
    services = app.extensions["fhirsrv"]
    with services.engine.begin() as conn:
        for res in (structure("pub", "published"), *entries_of("pub")):
            writes.create(services, conn, dict(res), res["id"], actor=SERVER)
    try:
        with serving(app) as base:
            admin = token_headers(app, "regional-admin", base=base)
            writer = SyncFHIRClient(base, authorization=admin["Authorization"], extra_headers=REPAIR)
            reader = SyncFHIRClient(base)
            copy: dict[str, dict[str, Any]] = {}
            since = EPOCH
            for step in range(3):
                params = {"_since": since, "_count": 1}
                bundle = reader.execute("HealthcareService/_history", method="get", params=params)
                while True:
                    for entry in bundle.get("entry", []):
                        key = "/".join(entry["fullUrl"].rsplit("/", 2)[-2:])
                        if "resource" in entry:
                            copy[key] = dict(entry["resource"])
                        else:
                            copy.pop(key, None)
                    since = bundle["meta"]["lastUpdated"]
                    following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
                    if not following:
                        break
                    bundle = reader.execute(following[0], method="get")
                found = reader.resources("HealthcareService").fetch_all()
                listed = {f"HealthcareService/{r['id']}": r.serialize() for r in found}
                assert {k: v["meta"]["versionId"] for k, v in copy.items()} == {
                    k: v["meta"]["versionId"] for k, v in listed.items()
                }, step
                # The platform's next round of changes: one more offer, then the structure delisted.
                if step == 0:
                    for n in range(3):
                        offer = {**entries_of("pub")[1], "id": f"hs-more-{n}", "name": f"Offre {n}"}
                        writer.resource("HealthcareService", **offer).save()
                elif step == 1:
                    writer.resource("Organization", **structure("pub", "delisted")).save()
            assert copy == {}  # delisted: gone from the public copy, as from public search
    finally:
        services.engine.dispose()
