"""Every read path, for every principal, against every lifecycle state: what each may see.

The table is READ_PATHS (one row a path) × PRINCIPALS × the fixture's entries, and the
expectation comes from the oracle in directory.py. `test_every_read_path_has_a_row` lists
the server's URL rules and operations: a new route or operation that can return stored data,
added without a row here, fails it.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import orjson
import pytest

from fhirsrv.interactions.operations import OperationRegistry
from fhirsrv.wiring import OPERATION_MODULES
from tests.access.directory import ENTRIES, FHIR, GOVERNED, OFFER_KIND, PRINCIPALS, Directory, Entry, Who
from tests.sync import exports

ReadPath = Callable[[Directory, Who], None]
READ_PATHS: dict[str, ReadPath] = {}
# (URL rule endpoint, HTTP method) -> the rows that cover it.
COVERS: dict[tuple[str, str], list[str]] = {}


def row(name: str, *covers: tuple[str, str]) -> Callable[[ReadPath], ReadPath]:
    def register(func: ReadPath) -> ReadPath:
        READ_PATHS[name] = func
        for key in covers:
            COVERS.setdefault(key, []).append(name)
        return func

    return register


def of_type(res_type: str) -> list[Entry]:
    return [e for e in ENTRIES.values() if e.res_type == res_type]


def ids(bundle: dict[str, Any], mode: str | None = "match", res_type: str | None = None) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if "resource" in e
        and e["resource"]["resourceType"] != "OperationOutcome"
        and (mode is None or e.get("search", {}).get("mode") == mode)
        and (res_type is None or e["resource"]["resourceType"] == res_type)
    }


def expected_read_status(who: Who, entry: Entry) -> int:
    if not who.may(entry.res_type, "r"):
        return 403
    return 200 if who.reads(entry) else 404


def searched(who: Who, res_type: str) -> set[str]:
    return {e.key for e in of_type(res_type) if who.searches(e)}


def read_by_id(who: Who, res_type: str) -> set[str]:
    return {e.key for e in of_type(res_type) if who.reads(e)}


def assert_no_hidden_content(text: str, who: Who) -> None:
    """No name or e-mail of an entry the principal may not read appears in the answer."""
    for entry in ENTRIES.values():
        if who.may(entry.res_type, "r") and who.reads(entry):
            continue
        for secret in _identifying_strings(entry):
            assert secret not in text, (who.name, entry.key, secret)


def _identifying_strings(entry: Entry) -> list[str]:
    body = entry.body
    found = []
    if isinstance(body.get("name"), str):
        found.append(body["name"])
    for name in body.get("name") or [] if isinstance(body.get("name"), list) else []:
        found.append(name.get("family", ""))
    for telecom in body.get("telecom") or []:
        found.append(telecom["value"])
    if entry.res_type == "Endpoint":
        found.append(body["address"])
    return [f for f in found if f]


# ----------------------------------------------------------------------------------- reads
@row("read", ("fhir.instance", "GET"))
def read(d: Directory, who: Who) -> None:
    for entry in ENTRIES.values():
        response = d.web.get(f"/fhir/{entry.key}", headers=d.headers(who))
        expected = expected_read_status(who, entry)
        assert response.status_code == expected, (who.name, entry.key, response.get_json())
        if expected != 200:
            assert_no_hidden_content(response.get_data(as_text=True), who)


@row("vread", ("fhir.instance_vread", "GET"))
def vread(d: Directory, who: Who) -> None:
    for entry in ENTRIES.values():
        response = d.web.get(f"/fhir/{entry.key}/_history/1", headers=d.headers(who))
        assert response.status_code == expected_read_status(who, entry), (who.name, entry.key)


@row("instance history", ("fhir.instance_history", "GET"))
def instance_history(d: Directory, who: Who) -> None:
    for entry in ENTRIES.values():
        response = d.web.get(f"/fhir/{entry.key}/_history", headers=d.headers(who))
        expected = expected_read_status(who, entry)
        assert response.status_code == expected, (who.name, entry.key)
        if expected == 200:
            bundle = response.get_json()
            assert bundle["total"] == len(bundle["entry"]) >= 1


@row("type history", ("fhir.type_history", "GET"))
def type_history(d: Directory, who: Who) -> None:
    for res_type in GOVERNED:
        response = d.web.get(f"/fhir/{res_type}/_history?_count=500", headers=d.headers(who))
        if not who.may(res_type, "r"):
            assert response.status_code == 403
            continue
        shown = ids(response.get_json(), mode=None)
        # A listing, like a search: a delisted entry is read by id, never listed to the public.
        assert shown == searched(who, res_type), (who.name, res_type)


@row("system history", ("fhir.system_history", "GET"))
def system_history(d: Directory, who: Who) -> None:
    response = d.web.get("/fhir/_history?_count=1000", headers=d.headers(who))
    assert response.status_code == 200
    bundle = response.get_json()
    for res_type in GOVERNED:
        expected = searched(who, res_type) if who.may(res_type, "r") else set()
        assert ids(bundle, mode=None, res_type=res_type) == expected, (who.name, res_type)
    audit = ids(bundle, mode=None, res_type="AuditEvent")
    assert bool(audit) == (who.role == "regional-admin" and who.may("AuditEvent", "r")), who.name


def _replay(d: Directory, who: Who, url: str) -> tuple[set[str], str]:
    """Follow a `_history?_since=` walk to its end, applying each entry as a syncing client does:
    the ids it ends with, and every page's text."""
    copy: set[str] = set()
    text = ""
    next_url: str | None = url
    while next_url:
        response = d.web.get(next_url.replace("http://fhir.test", ""), headers=d.headers(who))
        assert response.status_code == 200, (who.name, next_url, response.get_json())
        text += response.get_data(as_text=True)
        bundle = response.get_json()
        assert bundle["meta"]["lastUpdated"], who.name
        for entry in bundle["entry"]:
            key = "/".join(entry["fullUrl"].rsplit("/", 2)[-2:])
            if "resource" in entry:
                copy.add(key)
            else:
                copy.discard(key)
        next_url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return copy, text


@row("type history replayed from _since (sync)", ("fhir.type_history", "GET"))
def type_history_sync(d: Directory, who: Who) -> None:
    for res_type in GOVERNED:
        url = f"/fhir/{res_type}/_history?_since=2000-01-01&_count=4"
        if not who.may(res_type, "r"):
            assert d.web.get(url, headers=d.headers(who)).status_code == 403
            continue
        copy, text = _replay(d, who, url)
        assert copy == searched(who, res_type), (who.name, res_type)
        assert_no_hidden_content(text, who)


@row("system history replayed from _since, with _type (sync)", ("fhir.system_history", "GET"))
def system_history_sync(d: Directory, who: Who) -> None:
    allowed = [t for t in GOVERNED if who.may(t, "r")]
    refused = [t for t in GOVERNED if t not in allowed]
    if refused:
        answer = d.web.get(f"/fhir/_history?_type={refused[0]}&_since=2000-01-01", headers=d.headers(who))
        assert answer.status_code == 403, who.name
    copy, text = _replay(d, who, f"/fhir/_history?_type={','.join(allowed)}&_since=2000-01-01&_count=9")
    assert copy == set().union(*(searched(who, t) for t in allowed)), who.name
    assert_no_hidden_content(text, who)


# -------------------------------------------------------------------------------- searches
def _search(d: Directory, who: Who, url: str, res_type: str) -> dict[str, Any] | None:
    response = d.web.get(url, headers=d.headers(who))
    if not who.may(res_type, "s"):
        assert response.status_code == 403, (who.name, url)
        return None
    assert response.status_code == 200, (who.name, url, response.get_json())
    return response.get_json()


@row("search", ("fhir.type_level", "GET"))
def search(d: Directory, who: Who) -> None:
    for res_type in GOVERNED:
        bundle = _search(d, who, f"/fhir/{res_type}?_count=500&_total=accurate", res_type)
        if bundle is None:
            continue
        expected = searched(who, res_type)
        assert ids(bundle) == expected, (who.name, res_type)
        assert bundle["total"] == len(expected)
        # The policy is never echoed: links carry the client's own query only.
        assert all("entry-status" not in link["url"] for link in bundle["link"])
        assert_no_hidden_content(orjson.dumps(bundle).decode(), who)


@row("search total (_summary=count, estimate)", ("fhir.type_level", "GET"))
def search_totals(d: Directory, who: Who) -> None:
    for res_type in GOVERNED:
        for query in ("_summary=count", "_total=estimate&_count=1"):
            bundle = _search(d, who, f"/fhir/{res_type}?{query}", res_type)
            if bundle is not None:
                assert bundle["total"] == len(searched(who, res_type)), (who.name, res_type, query)


@row("search on one system|code (the token index's path), page by page", ("fhir.type_level", "GET"))
def search_one_code(d: Directory, who: Who) -> None:
    url: str | None = f"/fhir/HealthcareService?service-type={OFFER_KIND}|offer&_count=2"
    seen: set[str] = set()
    totals = []
    while url:
        bundle = _search(d, who, url, "HealthcareService")
        if bundle is None:
            return
        seen |= ids(bundle)
        totals.append(bundle.get("total"))
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        url = url.replace("http://fhir.test", "") if url else None
    assert seen == searched(who, "HealthcareService"), who.name
    assert totals[0] == len(seen), who.name


@row("search by POST", ("fhir.type_search_post", "POST"))
def search_post(d: Directory, who: Who) -> None:
    headers = d.headers(who) | {"Content-Type": "application/x-www-form-urlencoded"}
    for res_type in GOVERNED:
        response = d.web.post(f"/fhir/{res_type}/_search", data="_count=500", headers=headers)
        if not who.may(res_type, "s"):
            assert response.status_code == 403
            continue
        assert ids(response.get_json()) == searched(who, res_type), (who.name, res_type)


@row("system search", ("fhir.system", "GET"))
def system_search(d: Directory, who: Who) -> None:
    allowed = [t for t in GOVERNED if who.may(t, "s")]
    if allowed:
        bundle = _search(d, who, f"/fhir?_type={','.join(allowed)}&_count=1000", allowed[0])
        assert bundle is not None
        assert ids(bundle) == set().union(*(searched(who, t) for t in allowed)), who.name
    # Without _type: every type the caller may search, nothing of the others.
    bundle = d.web.get("/fhir?_count=1000", headers=d.headers(who)).get_json()
    for res_type in GOVERNED:
        expected = searched(who, res_type) if who.may(res_type, "s") else set()
        assert ids(bundle, res_type=res_type) == expected, (who.name, res_type)
    assert bool(ids(bundle, res_type="AuditEvent")) == (who.role == "regional-admin" and who.may("AuditEvent", "s"))


@row("_include", ("fhir.type_level", "GET"))
def include(d: Directory, who: Who) -> None:
    url = (
        "/fhir/HealthcareService?_count=500&_include=HealthcareService:organization"
        "&_include=HealthcareService:location"
    )
    bundle = _search(d, who, url, "HealthcareService")
    if bundle is None:
        return
    matches = ids(bundle)
    assert matches == searched(who, "HealthcareService")
    expected = set()
    for key in matches:
        service = ENTRIES[key]
        for ref in [service.body["providedBy"], *service.body.get("location", [])]:
            target = ENTRIES[ref["reference"]]
            if who.may(target.res_type, "r") and who.reads(target):
                expected.add(target.key)
    assert ids(bundle, mode="include") == expected, who.name
    assert_no_hidden_content(orjson.dumps(bundle).decode(), who)


@row("_include:iterate", ("fhir.type_level", "GET"))
def include_iterate(d: Directory, who: Who) -> None:
    url = "/fhir/PractitionerRole?_count=500&_include=PractitionerRole:practitioner&_include:iterate=PractitionerRole:organization"
    bundle = _search(d, who, url, "PractitionerRole")
    if bundle is None:
        return
    assert ids(bundle) == searched(who, "PractitionerRole")
    assert_no_hidden_content(orjson.dumps(bundle).decode(), who)


@row("_revinclude", ("fhir.type_level", "GET"))
def revinclude(d: Directory, who: Who) -> None:
    url = (
        "/fhir/Organization?_count=500&_revinclude=HealthcareService:organization"
        "&_revinclude=PractitionerRole:organization"
    )
    bundle = _search(d, who, url, "Organization")
    if bundle is None:
        return
    matches = ids(bundle)
    assert matches == searched(who, "Organization")
    expected = {
        e.key
        for e in ENTRIES.values()
        if e.res_type in ("HealthcareService", "PractitionerRole")
        and f"Organization/{e.structure}" in matches
        and who.may(e.res_type, "r")
        and who.searches(e)
    }
    assert ids(bundle, mode="include") == expected, who.name


@row("chain", ("fhir.type_level", "GET"))
def chain(d: Directory, who: Who) -> None:
    """A chain never looks through what the caller may not see: no guessing a hidden name."""
    if not who.may("HealthcareService", "s"):
        return
    for service in of_type("HealthcareService"):
        org = ENTRIES[f"Organization/{service.structure}"]
        url = f"/fhir/HealthcareService?_id={service.res_id}&organization.name:exact={org.body['name']}"
        found = ids(d.web.get(url, headers=d.headers(who)).get_json())
        visible = who.searches(service) and who.searches(org) and who.may("Organization", "s")
        assert found == ({service.key} if visible else set()), (who.name, service.key)


@row("_has", ("fhir.type_level", "GET"))
def has(d: Directory, who: Who) -> None:
    if not who.may("Organization", "s"):
        return
    for service in of_type("HealthcareService"):
        org = ENTRIES[f"Organization/{service.structure}"]
        url = f"/fhir/Organization?_id={org.res_id}&_has:HealthcareService:organization:_id={service.res_id}"
        found = ids(d.web.get(url, headers=d.headers(who)).get_json())
        visible = who.searches(service) and who.searches(org) and who.may("HealthcareService", "s")
        assert found == ({org.key} if visible else set()), (who.name, service.key)
    # The audit log is no oracle either.
    response = d.web.get("/fhir/Practitioner?_has:AuditEvent:entity:_id=x", headers=d.headers(who))
    if who.may("Practitioner", "s"):
        assert response.status_code == 200 and not response.get_json().get("entry")


@row("_filter", ("fhir.type_level", "GET"))
def filter_(d: Directory, who: Who) -> None:
    if not who.may("HealthcareService", "s"):
        return
    for service in of_type("HealthcareService")[:6]:
        org = ENTRIES[f"Organization/{service.structure}"]
        query = f'organization.name eq "{org.body["name"]}"'
        url = f"/fhir/HealthcareService?_filter={query}&_id={service.res_id}"
        found = ids(d.web.get(url, headers=d.headers(who)).get_json())
        visible = who.searches(service) and who.searches(org) and who.may("Organization", "s")
        assert found == ({service.key} if visible else set()), (who.name, service.key)


# ------------------------------------------------------------------------- Bundles, operations
def _bundle(kind: str, requests: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [{"request": {"method": "GET", "url": url}} for url in requests],
    }


@row("batch read entries", ("fhir.system", "POST"))
def batch_reads(d: Directory, who: Who) -> None:
    entries = list(ENTRIES.values())
    answer = d.web.post("/fhir", json=_bundle("batch", [e.key for e in entries]), headers=d.headers(who))
    assert answer.status_code == 200
    for entry, result in zip(entries, answer.get_json()["entry"], strict=True):
        assert result["response"]["status"].startswith(str(expected_read_status(who, entry))), (who.name, entry.key)
    assert_no_hidden_content(answer.get_data(as_text=True), who)


@row("batch search entries", ("fhir.system", "POST"))
def batch_searches(d: Directory, who: Who) -> None:
    urls = [f"{t}?_count=500" for t in GOVERNED] + ["AuditEvent?_count=5"]
    answer = d.web.post("/fhir", json=_bundle("batch", urls), headers=d.headers(who)).get_json()
    for res_type, result in zip([*GOVERNED, "AuditEvent"], answer["entry"], strict=True):
        status = result["response"]["status"]
        if res_type == "AuditEvent" and who.role != "regional-admin":
            assert status.startswith("401" if who.role is None else "403"), who.name
        elif not who.may(res_type, "s"):
            assert status.startswith("403"), (who.name, res_type)
        elif res_type == "AuditEvent":
            assert ids(result["resource"]), "the regional administrator reads the audit log"
        else:
            assert ids(result["resource"]) == searched(who, res_type), (who.name, res_type)


@row("transaction read entries", ("fhir.system", "POST"))
def transaction_reads(d: Directory, who: Who) -> None:
    readable = [e for e in ENTRIES.values() if who.may(e.res_type, "r") and who.reads(e)]
    hidden = [e for e in ENTRIES.values() if e not in readable and who.may(e.res_type, "r")]
    answer = d.web.post("/fhir", json=_bundle("transaction", [e.key for e in readable]), headers=d.headers(who))
    assert answer.status_code == 200, (who.name, answer.get_json())
    for entry in hidden[:5]:
        refused = d.web.post("/fhir", json=_bundle("transaction", [entry.key]), headers=d.headers(who))
        assert refused.status_code == 404, (who.name, entry.key)
        assert_no_hidden_content(refused.get_data(as_text=True), who)


@row("$validate on an instance", ("fhir.instance_operation", "POST"), ("fhir.instance", "POST"))
def validate_instance(d: Directory, who: Who) -> None:
    for entry in ENTRIES.values():
        response = d.web.post(
            f"/fhir/{entry.key}/$validate",
            json={"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]},
            headers=d.headers(who),
        )
        assert response.status_code == expected_read_status(who, entry), (who.name, entry.key)


@row("$validate on an instance (GET)", ("fhir.instance_operation", "GET"))
def validate_instance_get(d: Directory, who: Who) -> None:
    for entry in list(ENTRIES.values())[:12]:
        response = d.web.get(f"/fhir/{entry.key}/$validate", headers=d.headers(who))
        assert response.status_code == expected_read_status(who, entry), (who.name, entry.key)


@row("conditional create's match", ("fhir.type_level", "POST"))
def conditional_create(d: Directory, who: Who) -> None:
    """If-None-Exist never hands back what the caller may not see: anonymous callers are refused
    before any match, writers only match what they may read."""
    for entry in of_type("HealthcareService"):
        response = d.web.post(
            "/fhir/HealthcareService",
            json={"resourceType": "HealthcareService", "name": "x"},
            headers=d.headers(who) | {"If-None-Exist": f"_id={entry.res_id}"},
        )
        if who.role is None:
            assert response.status_code == 401
        elif who.role == "partner-reader" or not who.may("HealthcareService", "c"):
            assert response.status_code == 403
        if response.status_code == 200:
            assert who.searches(entry), (who.name, entry.key)
        assert_no_hidden_content(response.get_data(as_text=True), who)


@row("procedure operations on an instance", ("fhir.instance_operation", "POST"))
def procedure_operations(d: Directory, who: Who) -> None:
    """$submit (an empty grid) and $attest change nothing here whoever asks, but they say who
    may ask: a token first (401), then an entry the caller may see (404, as unknown), then the
    role and status (403, 409, 422) — never the content of what it may not see."""
    for entry in of_type("Organization"):
        for op in ("$submit", "$attest"):
            response = d.web.post(
                f"/fhir/{entry.key}/{op}", json={"resourceType": "Parameters"}, headers=d.headers(who)
            )
            if who.role is None:
                assert response.status_code == 401, (who.name, entry.key, op)
            elif not (who.may("Organization", "r") and who.reads(entry)):
                assert response.status_code in (403, 404), (who.name, entry.key, op)
            else:
                assert response.status_code in (403, 409, 422), (who.name, entry.key, op, response.get_json())
            assert_no_hidden_content(response.get_data(as_text=True), who)
    # An offer's own steps (withdrawn alone; added to a listed structure, validated alone):
    # callers who may not write never learn what is there.
    if who.role in (None, "partner-reader") or not who.may("HealthcareService", "u"):
        for entry in of_type("HealthcareService"):
            for op in ("$withdraw", "$submit", "$validate-territory", "$publish"):
                response = d.web.post(
                    f"/fhir/{entry.key}/{op}", json={"resourceType": "Parameters"}, headers=d.headers(who)
                )
                expected = (401,) if who.role is None else (403, 404)
                assert response.status_code in expected, (who.name, entry.key, op, response.status_code)
                if not who.reads(entry):
                    assert response.status_code in (401, 404), (who.name, entry.key, op)
                assert_no_hidden_content(response.get_data(as_text=True), who)


@row("procedure application and confirmation", ("fhir.type_level", "POST"), ("fhir.instance_operation", "GET"))
def procedure_links(d: Directory, who: Who) -> None:
    """$apply answers a malformed application with its field errors only; a confirmation link
    with a wrong token is unknown, whatever entry it names."""
    bad = d.web.post("/fhir/Organization/$apply", json={"resourceType": "Parameters"}, headers=d.headers(who))
    assert bad.status_code == (422 if who.may("Organization", "r") else 403), (who.name, bad.get_json())
    assert_no_hidden_content(bad.get_data(as_text=True), who)
    for entry in of_type("Organization"):
        response = d.web.get(f"/fhir/{entry.key}/$confirm?token=forged", headers=d.headers(who))
        assert response.status_code == 404, (who.name, entry.key)
        assert_no_hidden_content(response.get_data(as_text=True), who)


# --------------------------------------------------------------------------- Subscriptions
def _every_page(d: Directory, who: Who, url: str) -> dict[str, Any]:
    """The entries of every page, following `next` (the audit trail of the other rows' writes
    and refusals makes the system history longer than one page)."""
    entries: list[dict[str, Any]] = []
    following: str | None = url
    while following:
        response = d.web.get(following, headers=d.headers(who))
        assert response.status_code == 200, (who.name, following)
        page = response.get_json()
        entries += page.get("entry", [])
        following = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        following = following.replace("http://fhir.test", "") if following else None
    return {"entry": entries}


def _subscription_ids(bundle: dict[str, Any]) -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e.get("resource", {}).get("resourceType") == "Subscription"
    }


@row(
    "Subscription: its owner's only",
    ("fhir.instance", "GET"),
    ("fhir.instance_vread", "GET"),
    ("fhir.instance_history", "GET"),
    ("fhir.type_history", "GET"),
    ("fhir.type_level", "GET"),
    ("fhir.type_search_post", "POST"),
    ("fhir.system", "GET"),
    ("fhir.system_history", "GET"),
    ("fhir.system", "POST"),
)
def subscriptions(d: Directory, who: Who) -> None:
    """A Subscription (its endpoint, the headers sent there) is its owner's: anonymous callers
    are asked for a token, a client reads and lists its own only, a regional administrator
    included, and another's answers as an unknown id."""
    headers = d.headers(who)
    owned = d.subscriptions()
    mine = {owned[who.name]} if who.name in owned else set()
    for name, sid in owned.items():
        expected = 401 if who.role is None else 403 if not who.may("Subscription", "r") else 200 if name == who.name else 404
        for url in (f"/fhir/Subscription/{sid}", f"/fhir/Subscription/{sid}/_history/1", f"/fhir/Subscription/{sid}/_history"):
            answer = d.web.get(url, headers=headers)
            assert answer.status_code == expected, (who.name, name, url)
            if expected != 200:
                assert "receiver.example.org" not in answer.get_data(as_text=True)
        batch = _bundle("batch", [f"Subscription/{sid}"])
        entry = d.web.post("/fhir", json=batch, headers=headers).get_json()["entry"][0]
        assert entry["response"]["status"].startswith(str(expected)), (who.name, name)
    searches = ("/fhir/Subscription?_count=100", "/fhir/Subscription/_history?_count=100")
    for url in searches:
        answer = d.web.get(url, headers=headers)
        expected = 401 if who.role is None else 403 if not who.may("Subscription", "s" if "_history" not in url else "r") else 200
        assert answer.status_code == expected, (who.name, url)
        if expected == 200:
            assert _subscription_ids(answer.get_json()) == mine, (who.name, url)
    if who.role is not None and who.may("Subscription", "s"):
        form = headers | {"Content-Type": "application/x-www-form-urlencoded"}
        posted = d.web.post("/fhir/Subscription/_search", data="_count=100", headers=form).get_json()
        assert _subscription_ids(posted) == mine, who.name
    # Listings of every type never show another's (nor, without a token, any).
    everything = d.web.get("/fhir?_count=1000", headers=headers).get_json()
    assert _subscription_ids(everything) == (mine if who.may("Subscription", "s") else set()), who.name
    history = _every_page(d, who, "/fhir/_history?_count=1000")
    assert _subscription_ids(history) == (mine if who.may("Subscription", "r") else set()), who.name


# ---------------------------------------------------------------------------------- $export
_EXPORT_ROUTES = (
    ("bulk.system_export", "GET"),
    ("bulk.system_export", "POST"),
    ("bulk.type_export", "GET"),
    ("bulk.type_export", "POST"),
    ("bulk.export_status", "GET"),
    ("bulk.export_status", "DELETE"),
    ("bulk.export_file", "GET"),
)


def _exported(web: Any, found: dict[str, Any], headers: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for item in found["output"]:
        response = web.get(exports.local(item["url"]), headers=headers)
        assert response.status_code == 200
        out.setdefault(item["type"], []).extend(orjson.loads(line) for line in response.get_data().splitlines())
    return out


@row("bulk $export, its status and files", *_EXPORT_ROUTES)
def bulk_export(d: Directory, who: Who) -> None:
    """An export holds what the caller's search shows, no more; its status and files are its
    caller's only (another client: 404, no token: 401)."""
    headers = d.headers(who)
    if who.role is None:
        refused = d.web.get("/fhir/$export", headers=exports.ASYNC)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        web = d.app_with(export_anonymous=True).test_client()  # FHIRSRV_EXPORT_ANONYMOUS=on
        headers = {}
    else:
        web = d.web
    allowed = [t for t in GOVERNED if who.may(t, "s")]
    status = exports.kick_off(web, f"/fhir/$export?_type={','.join(allowed)}", headers)
    found = exports.manifest(web, status, headers)
    assert found["requiresAccessToken"] is (who.role is not None)
    exported = _exported(web, found, headers)
    for res_type in GOVERNED:
        expected = searched(who, res_type) if res_type in allowed else set()
        assert exports.ids(exported, res_type) == expected, (who.name, res_type)
    assert_no_hidden_content(orjson.dumps(exported).decode(), who)
    # At type level, and by POST, the same.
    if who.may("HealthcareService", "s"):
        by_type = exports.export(web, "/fhir/HealthcareService/$export", headers)
        assert exports.ids(_exported(web, by_type, headers)) == searched(who, "HealthcareService"), who.name
        body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "HealthcareService"}]}
        posted = exports.export(
            web, "/fhir/$export", {**headers, "Content-Type": FHIR}, method="POST", json=body
        )
        assert exports.ids(_exported(web, posted, headers)) == searched(who, "HealthcareService"), who.name
    # Nobody else reads the job; a token-less caller is asked for one. An anonymous job's URLs
    # are its only key (requiresAccessToken: false).
    if who.role is not None:
        other = d.headers(next(p for p in PRINCIPALS if p.name != who.name and p.role is not None))
        files = [exports.local(o["url"]) for o in found["output"]]
        for url in [status, *files]:
            assert d.web.get(url, headers=other).status_code == 404, (who.name, url)
            assert d.web.get(url).status_code == 401, (who.name, url)
        assert d.web.delete(status, headers=other).status_code == 404
    assert web.delete(status, headers=headers).status_code == 202
    assert web.get(status, headers=headers).status_code == 404


# ------------------------------------------------------------------------ public web pages
# The pages read as the anonymous caller whoever visits (fhirsrv/web/reading.py): a token sent
# by a browser extension or a proxy never widens what a page shows.
ANONYMOUS_VIEW = next(p for p in PRINCIPALS if p.role is None)
OFFER_ON_PAGE = re.compile(r'data-offer="([^"]+)"')
NEXT_PAGE = re.compile(r'<a href="([^"]+)" rel="next">')
PLACES_ON_PAGE = re.compile(r'<ul class="places">(.*?)</ul>', re.S)
PLACE_NAME = re.compile(r"<li><address>([^<]*)")


@row("web search page, every page followed", ("web.search_page", "GET"))
def web_search_page(d: Directory, who: Who) -> None:
    shown: list[str] = []
    text = ""
    url: str | None = "/?tri=nom"
    while url:
        response = d.web.get(html.unescape(url), headers=d.headers(who))
        assert response.status_code == 200, (who.name, url)
        page = response.get_data(as_text=True)
        text += page
        shown += [f"HealthcareService/{i}" for i in OFFER_ON_PAGE.findall(page)]
        found = NEXT_PAGE.search(page)
        url = found.group(1) if found else None
    assert len(shown) == len(set(shown)), who.name
    assert set(shown) == searched(ANONYMOUS_VIEW, "HealthcareService"), who.name
    assert_no_hidden_content(text, ANONYMOUS_VIEW)


@row("web offer page", ("web.offer_page", "GET"))
def web_offer_page(d: Directory, who: Who) -> None:
    for entry in of_type("HealthcareService"):
        response = d.web.get(f"/offre/{entry.res_id}", headers=d.headers(who))
        page = response.get_data(as_text=True)
        expected = 200 if ANONYMOUS_VIEW.reads(entry) else 404
        assert response.status_code == expected, (who.name, entry.key)
        assert ("no longer listed" in page or "plus référencée" in page) == (
            expected == 200 and not ANONYMOUS_VIEW.searches(entry)
        ), (who.name, entry.key)
        assert_no_hidden_content(page, ANONYMOUS_VIEW)


@row("web structure page, with its offers and places", ("web.structure_page", "GET"))
def web_structure_page(d: Directory, who: Who) -> None:
    for entry in of_type("Organization"):
        response = d.web.get(f"/structure/{entry.res_id}", headers=d.headers(who))
        page = response.get_data(as_text=True)
        expected = 200 if ANONYMOUS_VIEW.reads(entry) else 404
        assert response.status_code == expected, (who.name, entry.key)
        if expected == 200:
            offers = {f"HealthcareService/{i}" for i in OFFER_ON_PAGE.findall(page)}
            mine = {e.key for e in of_type("HealthcareService") if e.structure == entry.res_id}
            assert offers == mine & searched(ANONYMOUS_VIEW, "HealthcareService"), (who.name, entry.key)
            listed = PLACES_ON_PAGE.search(page)
            places = set(PLACE_NAME.findall(listed.group(1))) if listed else set()
            theirs = {
                e.body["name"]
                for e in of_type("Location")
                if e.structure == entry.res_id and ANONYMOUS_VIEW.searches(e)
            }
            assert places == theirs, (who.name, entry.key)
        assert_no_hidden_content(page, ANONYMOUS_VIEW)


@row("web search page, paged by the principal's own FHIR cursors", ("web.search_page", "GET"))
def web_search_page_with_a_principals_cursor(d: Directory, who: Who) -> None:
    """A paging cursor is a position, never a permission: one the principal's own search issued
    (where its hidden offers are), given to the page, pages the public's search."""
    if not who.may("HealthcareService", "s"):
        return
    cursors: list[str] = []
    url: str | None = "/fhir/HealthcareService?_sort=name&_count=2&_elements=id"
    while url:
        bundle = d.web.get(url, headers=d.headers(who)).get_json()
        following = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        url = following.replace("http://fhir.test", "") if following else None
        if following:
            cursors.append(parse_qs(urlsplit(following).query)["_cursor"][0])
    assert cursors, who.name
    public = searched(ANONYMOUS_VIEW, "HealthcareService")
    for cursor in cursors:
        response = d.web.get(f"/?tri=nom&page={quote(cursor)}", headers=d.headers(who))
        page = response.get_data(as_text=True)
        assert response.status_code == 200, (who.name, cursor)
        assert {f"HealthcareService/{i}" for i in OFFER_ON_PAGE.findall(page)} <= public, who.name
        assert_no_hidden_content(page, ANONYMOUS_VIEW)


# Every registered operation, and how it is covered: by a row, or why it returns no stored
# entry of the directory (terminology content is public conformance data; the registry's
# invoke() checks read access on its type and instance for all of them alike).
OPERATIONS = {
    "validate": "$validate on an instance",
    "lookup": "terminology: public content, read access checked by OperationRegistry.invoke",
    "validate-code": "terminology: public content, read access checked by OperationRegistry.invoke",
    "subsumes": "terminology: public content, read access checked by OperationRegistry.invoke",
    "expand": "terminology: public content, read access checked by OperationRegistry.invoke",
    "translate": "terminology: public content, read access checked by OperationRegistry.invoke",
    "closure": "per-client closure tables: a client's own data only (tests/terminology/test_closure_op.py)",
    "submit": "procedure operations on an instance",
    "validate-territory": "procedure operations on an instance",
    "publish": "procedure operations on an instance",
    "reject": "procedure operations on an instance",
    "withdraw": "procedure operations on an instance",
    "attest": "procedure operations on an instance",
    "apply": "procedure application and confirmation",
    "confirm": "procedure application and confirmation",
    "export": "bulk $export, its status and files",
}
# URL rules that return no stored resource.
NOT_READS = {
    ("fhir.metadata", "GET"): "the CapabilityStatement",
    ("web.commune_suggestions", "GET"): "the public page's town suggestions: shipped communes, no directory data",
    ("web.departement_outlines", "GET"): "the map's département outlines: shipped communes, no directory data",
    ("web.apply_page", "GET"): "the application form: an empty form and the CodeSystems' labels, no directory entry",
    ("web.apply_page", "POST"): "write: the application form, through Organization/$apply (tests/web/test_application_form.py)",
    ("web.apply_sent", "GET"): "the page after an application: fixed text, no directory data",
    ("web.static", "GET"): "the public page's style, script and map library",
    ("auth_token", "POST"): "token endpoint",
    ("auth_token_alias", "POST"): "token endpoint",
    ("auth_jwks", "GET"): "public keys",
    ("auth_smart", "GET"): "SMART configuration",
    ("static", "GET"): "static files",
    ("healthz", "GET"): "liveness probe: a fixed answer, no database (tests/api/test_health.py)",
    ("readyz", "GET"): "readiness probe: the schema revision only (tests/api/test_health.py)",
    ("metrics", "GET"): "counts by interaction, type and status, no FHIR data (tests/api/test_metrics.py)",
    ("fhir.type_level", "PUT"): "write (test_write_paths.py)",
    ("fhir.type_level", "PATCH"): "write (test_write_paths.py)",
    ("fhir.type_level", "DELETE"): "write (test_write_paths.py)",
    ("fhir.instance", "PUT"): "write (test_write_paths.py)",
    ("fhir.instance", "PATCH"): "write (test_write_paths.py)",
    ("fhir.instance", "DELETE"): "write (test_write_paths.py)",
    ("bulk.group_export", "GET"): "refused whoever asks: no Group in the directory (tests/api/test_bulk_export.py)",
    ("bulk.group_export", "POST"): "refused whoever asks: no Group in the directory (tests/api/test_bulk_export.py)",
}


def test_every_read_path_has_a_row(directory: Directory) -> None:
    routes = {
        (rule.endpoint, method)
        for rule in directory.app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    uncovered = sorted(r for r in routes if r not in COVERS and r not in NOT_READS)
    assert not uncovered, f"read paths without a row in the visibility table: {uncovered}"
    registered = {op.name for op in OperationRegistry(OPERATION_MODULES).registered()}
    assert registered == set(OPERATIONS), f"operations without a row: {registered ^ set(OPERATIONS)}"
    assert all(name in READ_PATHS for name in OPERATIONS.values() if not name.startswith(("terminology", "per-client")))


@pytest.mark.parametrize("path", READ_PATHS)
@pytest.mark.parametrize("who", PRINCIPALS, ids=[p.name for p in PRINCIPALS])
def test_read_path(directory: Directory, path: str, who: Who) -> None:
    READ_PATHS[path](directory, who)


def test_a_patch_entry_in_a_batch_is_refused_before_it_is_applied(directory: Directory) -> None:
    """PATCH entries read nothing back to a refused caller (the Binary carries the patch)."""
    patch = base64.b64encode(orjson.dumps([{"op": "test", "path": "", "value": 0}])).decode()
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
                "request": {"method": "PATCH", "url": "HealthcareService/hs-o29-draft"},
            }
        ],
    }
    answer = directory.web.post("/fhir", json=bundle, headers={"Content-Type": "application/fhir+json"})
    assert answer.get_json()["entry"][0]["response"]["status"].startswith("401")
    assert "Offre o29-draft" not in answer.get_data(as_text=True)
