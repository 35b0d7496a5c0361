"""A bounded load on `fhirsrv serve --workers 2` (fhirsrv/serving.py), on SQLite (a WAL file)
and PostgreSQL: client threads create resources and update the same few with If-Match, each
request on a new connection, so both workers write the same rows at once.

Nothing acknowledged is lost (every 201 and 200 is in the final state and the history, versions
contiguous), If-Match is exact (a stale version gets 412, never overwrites; a success makes
exactly the next version), and no read is stale (a read after a successful update returns that
version or a later one, whichever worker answers). A few hundred requests: well under a minute.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fhirsrv.interactions.load import load_initial_content
from fhirsrv.settings import Settings
from fhirsrv.wiring import build_services
from tests.conftest import BACKENDS, PG_URL
from tests.worker_processes import (
    Server,
    copy_sqlite,
    free_port,
    postgres_database,
    request,
    serving,
    worker_of,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

SHARED = ["shared-0", "shared-1", "shared-2"]
THREADS = 6
ROUNDS = 15


def _version(etag: str | None) -> int:
    assert etag is not None and etag.startswith('W/"'), etag
    return int(etag[3:-1])


@dataclass
class Observed:
    """What the clients were told, and what went wrong, across threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    created: dict[str, str] = field(default_factory=dict)  # id -> name
    updates: dict[str, dict[int, str]] = field(default_factory=dict)  # id -> version -> name
    confirmed: dict[str, int] = field(default_factory=dict)  # id -> highest version acknowledged
    served_by: Counter[int] = field(default_factory=Counter)  # worker pid -> writes answered
    errors: list[str] = field(default_factory=list)

    def floor(self, res_id: str) -> int:
        with self.lock:
            return self.confirmed.get(res_id, 1)

    def updated(self, res_id: str, version: int, name: str) -> None:
        with self.lock:
            if version in self.updates.setdefault(res_id, {}):
                self.errors.append(f"{res_id}: version {version} acknowledged twice")
            self.updates[res_id][version] = name
            self.confirmed[res_id] = max(self.confirmed.get(res_id, 1), version)


def _client(server: Server, number: int, seen: Observed) -> None:
    def call(method: str, path: str, body: Any = None, **headers: str) -> tuple[int, dict[str, str], Any]:
        conn = server.connect()  # a new connection: the kernel picks the worker
        try:
            answer = request(conn, method, path, body, headers)
            pid = worker_of(server, conn) if method != "GET" else None
            if pid is not None:  # None: the worker had already closed the connection
                with seen.lock:
                    seen.served_by[pid] += 1
            return answer
        finally:
            conn.close()

    for round_ in range(ROUNDS):
        name = f"client {number} round {round_}"
        status, _, created = call("POST", "/fhir/Organization", {"resourceType": "Organization", "name": name})
        if status != 201:
            seen.errors.append(f"create: {status} {created}")
        else:
            with seen.lock:
                seen.created[created["id"]] = name
        res_id = SHARED[(number + round_) % len(SHARED)]
        floor = seen.floor(res_id)
        status, headers, current = call("GET", f"/fhir/Organization/{res_id}")
        read = _version(headers.get("etag"))
        if status != 200 or read < floor or current["meta"]["versionId"] != str(read):
            seen.errors.append(f"read {res_id}: {status}, version {read} after {floor} was acknowledged")
            continue
        body = {"resourceType": "Organization", "id": res_id, "name": name}
        status, headers, answer = call("PUT", f"/fhir/Organization/{res_id}", body, **{"If-Match": f'W/"{read}"'})
        if status == 200:
            written = _version(headers.get("etag"))
            if written != read + 1:
                seen.errors.append(f"update {res_id} of version {read} made version {written}")
            seen.updated(res_id, written, name)
            stale = {**body, "name": f"{name} (stale)"}
            status, _, answer = call("PUT", f"/fhir/Organization/{res_id}", stale, **{"If-Match": f'W/"{read}"'})
            if status != 412:
                seen.errors.append(f"a stale If-Match on {res_id} was answered {status}: {answer}")
        elif status != 412:  # 412: another client updated it since the read
            seen.errors.append(f"update {res_id}: {status} {answer}")


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "postgres":
        with postgres_database(PG_URL, f"fhirsrv_test_load_{free_port()}") as url:
            yield url
        return
    template = tmp_path / "template.sqlite3"
    services = build_services(Settings.from_env(database_url=f"sqlite:///{template}", load_demo=False))
    load_initial_content(services, demo=False)
    services.engine.dispose()
    yield copy_sqlite(template, tmp_path / "db.sqlite3")


def test_concurrent_creates_and_updates_through_two_workers_lose_nothing(database: str, tmp_path: Path) -> None:
    with serving(tmp_path, database=database, FHIRSRV_AUTH="off") as server:
        conn = server.connect()
        for res_id in SHARED:
            body = {"resourceType": "Organization", "id": res_id, "name": "shared"}
            assert request(conn, "PUT", f"/fhir/Organization/{res_id}", body)[0] == 201
        conn.close()
        seen = Observed()
        clients = [threading.Thread(target=_client, args=(server, n, seen)) for n in range(THREADS)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        assert seen.errors == []
        assert set(seen.served_by) == server.worker_pids(), seen.served_by  # both workers wrote
        assert len(seen.created) == THREADS * ROUNDS
        conn = server.connect()
        for res_id, name in seen.created.items():
            status, headers, stored = request(conn, "GET", f"/fhir/Organization/{res_id}")
            assert (status, headers.get("etag"), stored["name"]) == (200, 'W/"1"', name)
        for res_id in SHARED:
            status, _, history = request(conn, "GET", f"/fhir/Organization/{res_id}/_history?_count=1000")
            assert status == 200
            names = {int(e["resource"]["meta"]["versionId"]): e["resource"]["name"] for e in history["entry"]}
            acknowledged = seen.updates.get(res_id, {})
            # Contiguous, and every version past the first is an acknowledged update, as sent.
            assert sorted(names) == list(range(1, len(names) + 1))
            assert {v: n for v, n in names.items() if v > 1} == acknowledged
            status, headers, current = request(conn, "GET", f"/fhir/Organization/{res_id}")
            assert _version(headers.get("etag")) == len(names) and current["name"] == names[len(names)]
        assert sum(len(v) for v in seen.updates.values()) >= len(SHARED)  # updates did succeed
        conn.close()
