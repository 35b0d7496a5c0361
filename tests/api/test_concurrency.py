"""Racing writers on one resource, on SQLite and on PostgreSQL: exactly one wins each version,
and no update is ever lost silently."""

from __future__ import annotations

import threading
from collections.abc import Callable

from tests.api.helpers import FHIR, org, post


def race(app, writers: int, put: Callable) -> list:  # type: ignore[no-untyped-def]
    """Run `put(client, n)` in `writers` threads released together; return their responses."""
    barrier = threading.Barrier(writers)
    answers: list = []
    lock = threading.Lock()

    def write(n: int) -> None:
        own = app.test_client()
        barrier.wait()
        res = put(own, n)
        with lock:
            answers.append(res)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_concurrent_if_match_updates_never_both_succeed(app):
    client = app.test_client()
    created = post(client, org("Départ")).get_json()
    path = f"/fhir/Organization/{created['id']}"
    answers = race(
        app,
        6,
        lambda c, n: c.put(
            path,
            json={**created, "name": f"écrivain {n}"},
            headers={"Content-Type": FHIR, "If-Match": 'W/"1"'},
        ),
    )
    assert sorted(r.status_code for r in answers) == [200] + [412] * 5
    assert client.get(path).headers["ETag"] == 'W/"2"'
    assert client.get(f"{path}/_history").get_json()["total"] == 2


def test_concurrent_updates_without_if_match_lose_nothing_silently(app):
    """Every update answered 200 is a version of its own; a loser is told (409), never dropped."""
    client = app.test_client()
    created = post(client, org("Départ")).get_json()
    path = f"/fhir/Organization/{created['id']}"
    answers = race(
        app,
        6,
        lambda c, n: c.put(path, json={**created, "name": f"écrivain {n}"}, headers={"Content-Type": FHIR}),
    )
    assert {r.status_code for r in answers} <= {200, 409}
    won = [r.headers.get("ETag") for r in answers if r.status_code == 200]
    assert len(set(won)) == len(won)  # no two writers were given the same version
    assert client.get(path).headers["ETag"] == f'W/"{1 + len(won)}"'


def test_concurrent_create_on_update_of_one_id(app):
    answers = race(
        app,
        4,
        lambda c, n: c.put(
            "/fhir/Organization/same-id", json=org(f"n{n}", id="same-id"), headers={"Content-Type": FHIR}
        ),
    )
    statuses = [r.status_code for r in answers]
    assert statuses.count(201) == 1
    assert set(statuses) <= {200, 201, 409}
