"""Two writers with the same If-Match: exactly one wins, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading

from tests.api.helpers import FHIR, org, post


def test_concurrent_if_match_updates_never_both_succeed(app):
    client = app.test_client()
    created = post(client, org("Départ")).get_json()
    writers = 6
    barrier = threading.Barrier(writers)
    statuses: list[int] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        own = app.test_client()
        barrier.wait()
        res = own.put(
            f"/fhir/Organization/{created['id']}",
            json={**created, "name": f"écrivain {n}"},
            headers={"Content-Type": FHIR, "If-Match": 'W/"1"'},
        )
        with lock:
            statuses.append(res.status_code)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [412] * (writers - 1)
    final = client.get(f"/fhir/Organization/{created['id']}")
    assert final.headers["ETag"] == 'W/"2"'
    history = client.get(f"/fhir/Organization/{created['id']}/_history").get_json()
    assert history["total"] == 2


def test_concurrent_updates_without_if_match_lose_nothing_silently(app):
    """Every update answered 200 is a version of its own; a loser is told (409), never dropped."""
    client = app.test_client()
    created = post(client, org("Départ")).get_json()
    writers = 6
    barrier = threading.Barrier(writers)
    answers: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        own = app.test_client()
        barrier.wait()
        res = own.put(
            f"/fhir/Organization/{created['id']}",
            json={**created, "name": f"écrivain {n}"},
            headers={"Content-Type": FHIR},
        )
        with lock:
            answers.append((res.status_code, res.headers.get("ETag")))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {status for status, _ in answers} <= {200, 409}
    won = [etag for status, etag in answers if status == 200]
    assert len(set(won)) == len(won)  # no two writers were given the same version
    final = client.get(f"/fhir/Organization/{created['id']}")
    assert final.headers["ETag"] == f'W/"{1 + len(won)}"'


def test_concurrent_create_on_update_of_one_id(app):
    barrier = threading.Barrier(4)
    statuses: list[int] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        own = app.test_client()
        barrier.wait()
        res = own.put(
            "/fhir/Organization/same-id", json=org(f"n{n}", id="same-id"), headers={"Content-Type": FHIR}
        )
        with lock:
            statuses.append(res.status_code)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(201) == 1
    assert set(statuses) <= {200, 201, 409}
