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
