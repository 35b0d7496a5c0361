"""The heavy-request pool (fhirsrv/heavy_pool.py, its processes in fhirsrv/serving.py): which
requests go there; that the pool answers them as a worker would, with each client's own address
and never one a client names; that it knows what the workers wrote; that the workers answer
heavy requests themselves when the pool is gone; that it stops with the server.

Real `fhirsrv serve --workers 2` processes on loopback (tests/worker_processes.py); which
process answered a request is read from its log line (`"pool": "heavy"`).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fhirsrv.heavy_pool import HEAVY_PAGE_SIZE, is_heavy
from fhirsrv.serving import HeavyPool, Routing, answers_connection, routed
from tests.conftest import BACKENDS, PG_URL
from tests.worker_processes import (
    STOP_DEADLINE,
    Server,
    alive,
    children,
    copy_sqlite,
    first_start_database,
    free_port,
    listening_inodes,
    postgres_database,
    request,
    serving,
    socket_inodes,
    worker_of,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

BASE = "https://sos.example.org/fhir"
BATCH = {
    "resourceType": "Bundle",
    "type": "batch",
    "entry": [{"request": {"method": "GET", "url": "CodeSystem?_count=1"}}],
}

# (method, path, query, whether the pool answers it)
ROUTES = [
    ("POST", "/fhir", "", True),
    ("POST", "/fhir/", "", True),
    ("GET", "/fhir/ValueSet/$expand", "url=x", True),
    ("POST", "/fhir/ValueSet/$expand", "", True),
    ("GET", "/fhir/Organization/o1/$validate", "", True),
    ("POST", "/fhir/HealthcareService/_search", "", True),
    ("GET", "/fhir/HealthcareService", "_sort=name", True),
    ("GET", "/fhir/HealthcareService", "name=a&_include=HealthcareService:organization", True),
    ("GET", "/fhir/Organization", "_revinclude:iterate=HealthcareService:organization", True),
    ("GET", "/fhir/Organization", "_has:HealthcareService:organization:name=a", True),
    ("GET", "/fhir/Organization", "organization.name=a", True),
    ("GET", "/fhir/HealthcareService", "organization:Organization.name=a", True),
    ("GET", "/fhir/Organization", "%5Fsort=name", True),
    ("GET", "/fhir/Organization", "_filter=name%20eq%20a", True),
    ("GET", "/fhir/Organization", "_total=accurate", True),
    ("GET", "/fhir/Organization", f"_count={HEAVY_PAGE_SIZE + 1}", True),
    ("GET", "/fhir/Organization", f"_count={HEAVY_PAGE_SIZE}", False),
    ("HEAD", "/fhir/HealthcareService", "_sort=name", True),
    ("GET", "/fhir/Organization", "_count:x=1000", True),
    ("GET", "/fhir/Organization", "_total:x=accurate", True),
    ("GET", "/fhir/Organization", "_summary=count", True),
    ("GET", "/fhir/HealthcareService", "service-category:in=https://sos.example.org/fhir/ValueSet/x", True),
    ("GET", "/fhir/HealthcareService", "service-category:below=x", True),
    ("GET", "/fhir/HealthcareService", "service-category:not=x", False),
    ("DELETE", "/fhir/HealthcareService", "organization.name=a", True),
    ("PUT", "/fhir/HealthcareService", "identifier=a", False),
    ("GET", "/fhir/$export", "_type=Organization", True),
    ("GET", "/fhir/$export-status/j1", "", False),
    ("GET", "/fhir/$export-file/j1/Organization-1.ndjson", "", False),
    ("GET", "/fhir/Organization", "name=Le.Bras&_elements=name&_total=none", False),
    ("GET", "/fhir/Organization", "", False),
    ("GET", "/fhir/Organization/o1", "", False),
    ("GET", "/fhir/Organization/o1/_history", "", False),
    ("PUT", "/fhir/Organization/o1", "", False),
    ("POST", "/fhir/Organization", "", False),
    ("GET", "/fhir/metadata", "", False),
    ("GET", "/", "_sort=name", False),
    ("GET", "/healthz", "", False),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "heavy"), ROUTES, ids=[f"{m} {p}?{q}" for m, p, q, _ in ROUTES]
)
def test_which_requests_the_pool_answers(method: str, path: str, query: str, heavy: bool) -> None:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query}
    assert is_heavy(environ) is heavy


def test_a_create_whose_condition_is_costly_goes_to_the_pool() -> None:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/fhir/HealthcareService", "QUERY_STRING": ""}
    assert not is_heavy({**environ, "HTTP_IF_NONE_EXIST": "identifier=a"})
    assert is_heavy({**environ, "HTTP_IF_NONE_EXIST": "_has:PractitionerRole:service:role=x"})


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first start's database, copied for each server that needs one."""
    return first_start_database(tmp_path_factory.mktemp("template"))


# 8 anonymous requests a minute: 4 in each of the two workers, 4 in the pool's one process.
LIMIT_PER_PROCESS = 4
# Bodies larger than a Unix socket's buffer fit under it: the pool may refuse one before reading it.
MAX_BODY = 2_000_000


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Two workers and the default pool of one, authorization on (its rate limits), one trusted
    proxy hop (each test is a client of its own addresses), a small body limit."""
    data = tmp_path_factory.mktemp("pool")
    options = {
        "FHIRSRV_TRUSTED_PROXIES": "1",
        "FHIRSRV_RATE_LIMIT_ANONYMOUS": str(2 * LIMIT_PER_PROCESS),
        "FHIRSRV_MAX_BODY_BYTES": str(MAX_BODY),
    }
    if request.param == "postgres":
        with (
            postgres_database(PG_URL, f"fhirsrv_test_pool_{free_port()}") as url,
            serving(data, database=url, **options) as srv,
        ):
            yield srv
        return
    with serving(data, database=copy_sqlite(template, data / "db.sqlite3"), **options) as srv:
        yield srv


def _client(address: str) -> dict[str, str]:
    """The headers of a client at `address` behind the trusted proxy, and a request id to find
    the request's log line by."""
    return {"X-Forwarded-For": address, "X-Request-ID": uuid.uuid4().hex}


def _line(server: Server, request_id: str) -> dict[str, Any]:
    """The request's log line (written once its answer is made: waited for, boundedly)."""
    deadline = time.monotonic() + STOP_DEADLINE
    while True:
        for text in server.output().splitlines():
            if request_id in text:
                line = json.loads(text)
                if line.get("message") == "request" and line.get("request_id") == request_id:
                    return line
        assert time.monotonic() < deadline, f"no log line for {request_id}"
        time.sleep(0.1)


def _named_pool(pid: int) -> set[int]:
    """The children of `pid` named as the pool's processes are (fhirsrv-heavy)."""
    return children(pid, heavy_pool=True) - children(pid)


def _pool_processes(server: Server, expected: int = 2) -> set[int]:
    """The pool's manager and workers, once there are `expected` of them (its workers start after
    the server answers: waited for, boundedly)."""
    deadline = time.monotonic() + STOP_DEADLINE
    while True:
        managers = _named_pool(server.pid)
        found = managers | {worker for manager in managers for worker in _named_pool(manager)}
        if len(found) == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_heavy_requests_are_answered_by_the_pool_and_the_others_by_the_workers(server: Server) -> None:
    assert len(_pool_processes(server)) == 2  # its manager and its one worker
    conn = server.connect()
    sent = {
        "batch": ("POST", "/fhir", BATCH, 200),
        "sort": ("GET", "/fhir/CodeSystem?_sort=-url&_count=2", None, 200),
        "metadata": ("GET", "/fhir/metadata", None, 200),
        "read": ("GET", "/fhir/CodeSystem/never-written", None, 404),
    }
    pools = {}
    for name, (method, path, body, expected) in sent.items():
        headers = _client("198.51.100.1")
        status, answered, answer = request(conn, method, path, body, headers)
        assert status == expected, answer
        assert answered["x-request-id"] == headers["X-Request-ID"]
        pools[name] = _line(server, headers["X-Request-ID"]).get("pool")
    assert pools == {"batch": "heavy", "sort": "heavy", "metadata": None, "read": None}
    conn.close()


def test_the_pools_answer_is_the_answer_a_worker_gives(server: Server) -> None:
    conn = server.connect()
    path = "/fhir/CodeSystem?_sort=url&_count=3&_elements=url"
    conn.request("GET", path, headers={**_client("198.51.100.2"), "Accept": "application/fhir+json"})
    response = conn.getresponse()
    pooled = json.loads(response.read())
    assert response.status == 200
    assert [value for name, value in response.getheaders() if name.lower() == "server"] == ["fhirsrv"]
    urls = [e["resource"]["url"] for e in pooled["entry"]]
    assert urls == sorted(urls) and len(urls) == 3
    # The same search without the sort, which a worker answers, then sorted here: the same entries.
    status, _, plain = request(
        conn, "GET", "/fhir/CodeSystem?_count=100&_elements=url", headers=_client("198.51.100.2")
    )
    assert status == 200
    assert sorted(e["resource"]["url"] for e in plain["entry"])[:3] == urls
    assert pooled["link"][0]["url"] == f"http://127.0.0.1:{server.port}{path}"
    conn.close()


def test_the_pool_counts_each_client_by_its_own_address(server: Server) -> None:
    conn = server.connect()
    statuses = [
        request(conn, "POST", "/fhir", BATCH, _client("198.51.100.3"))[0]
        for _ in range(LIMIT_PER_PROCESS + 1)
    ]
    assert statuses == [200] * LIMIT_PER_PROCESS + [429]
    assert request(conn, "POST", "/fhir", BATCH, _client("198.51.100.4"))[0] == 200  # another client
    assert (
        request(conn, "GET", "/fhir/metadata", headers=_client("198.51.100.3"))[0] == 200
    )  # a worker's budget
    conn.close()


def test_an_address_a_client_names_itself_is_not_believed(server: Server) -> None:
    """The header that carries the client's address from a worker to the pool, sent by the client
    (with a new address each time, and in its underscore spelling): one budget all the same."""
    conn = server.connect()
    statuses = []
    for number in range(LIMIT_PER_PROCESS + 1):
        headers = {
            **_client("198.51.100.5"),
            "X-Fhirsrv-Peer": f"192.0.2.{number}",
            "X_Fhirsrv_Peer": f"192.0.2.{number}",
        }
        statuses.append(request(conn, "POST", "/fhir", BATCH, headers)[0])
    assert statuses == [200] * LIMIT_PER_PROCESS + [429]
    conn.close()


def _chunked(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    conn.request(
        "POST",
        "/fhir",
        body=iter([body[: len(body) // 2], body[len(body) // 2 :]]),
        headers={**headers, "Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_a_body_sent_in_chunks_reaches_the_pool_whole_or_is_refused_over_the_limit(server: Server) -> None:
    conn = server.connect()
    headers = _client("198.51.100.6")
    status, bundle = _chunked(conn, json.dumps(BATCH).encode(), headers)
    assert status == 200 and bundle["type"] == "batch-response"
    assert _line(server, headers["X-Request-ID"]).get("pool") == "heavy"
    padded = {**BATCH, "id": "x" * (MAX_BODY + 1)}  # over FHIRSRV_MAX_BODY_BYTES
    status, outcome = _chunked(conn, json.dumps(padded).encode(), _client("198.51.100.6"))
    assert status == 413 and outcome["resourceType"] == "OperationOutcome"
    conn.close()


def test_a_large_body_the_pool_refuses_from_its_head_gets_the_pools_answer(server: Server) -> None:
    """A body larger than the socket's buffer, refused by the pool before it read it (a bad
    token: 401; a wrong content type: 415): the client gets that answer, not a 502."""
    large = json.dumps({**BATCH, "id": "x" * 1_500_000}).encode()
    conn = server.connect()
    for headers, expected in (
        ({"Authorization": "Bearer not-a-token", "Content-Type": "application/fhir+json"}, 401),
        ({"Content-Type": "text/plain"}, 415),
    ):
        conn.request("POST", "/fhir", body=large, headers={**_client("198.51.100.12"), **headers})
        response = conn.getresponse()
        answer = json.loads(response.read())
        assert (response.status, answer["resourceType"]) == (expected, "OperationOutcome"), answer
        if expected == 401:
            assert response.getheader("WWW-Authenticate")
        conn.close()
        conn = server.connect()
    conn.close()


def test_a_raw_byte_beyond_ascii_in_a_heavy_query_is_passed_on(server: Server) -> None:
    """hyper lets raw UTF-8 through in a query; the pool gets it escaped, and answers as a worker
    would (it was a 500 and a stack in the log)."""
    request_id = uuid.uuid4().hex
    head = (
        b"GET /fhir/CodeSystem?_sort=url&name=\xc3\xa9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"X-Forwarded-For: 198.51.100.13\r\nX-Request-ID: " + request_id.encode() + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as raw:
        raw.sendall(head)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert _line(server, request_id).get("pool") == "heavy"
    assert "Traceback" not in server.output() and '"exc_type"' not in server.output()


def _connections_by_worker(server: Server, each: int) -> dict[int, list[http.client.HTTPConnection]]:
    """`each` keep-alive connections held by every worker (opened until each has them)."""
    found: dict[int, list[http.client.HTTPConnection]] = {}
    for _ in range(200):
        conn = server.connect()
        request(conn, "GET", "/fhir/metadata", headers=_client("198.51.100.14"))
        pid = worker_of(server, conn)
        if pid is not None and len(found.setdefault(pid, [])) < each:
            found[pid].append(conn)
        else:
            conn.close()
        if len(found) == server.workers and all(len(c) == each for c in found.values()):
            return found
    raise AssertionError(f"connections reached {[(pid, len(c)) for pid, c in found.items()]}")


def _sockets(pid: int) -> int:
    """How many sockets process `pid` holds open."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:  # closed since the listing
            continue
    return count


def test_a_worker_keeps_threads_for_cheap_requests_when_the_pool_hangs(
    template: Path, tmp_path: Path
) -> None:
    """With its pool stopped (SIGSTOP), a worker of 4 threads lets 2 wait on it; a third heavy
    request is answered 503 with Retry-After at once, and cheap requests are still answered.
    Once the pool runs again, the waiting requests get their answers."""
    with serving(tmp_path, database=copy_sqlite(template, tmp_path / "db.sqlite3"), threads=4) as srv:
        pool = _pool_processes(srv)
        by_worker = _connections_by_worker(srv, each=3)
        for pid in pool:
            os.kill(pid, signal.SIGSTOP)
        try:
            waiting = [conn for conns in by_worker.values() for conn in conns[:2]]
            before = {pid: _sockets(pid) for pid in by_worker}
            for conn in waiting:
                conn.request("POST", "/fhir", body=json.dumps(BATCH).encode(),
                             headers={"Content-Type": "application/fhir+json", **_client("198.51.100.15")})  # fmt: skip
            # Each of those now holds a thread of its worker, waiting on the pool (a socket to it).
            deadline = time.monotonic() + STOP_DEADLINE
            while any(_sockets(pid) < before[pid] + 2 for pid in by_worker):
                assert time.monotonic() < deadline, "the heavy requests did not reach the pool's socket"
                time.sleep(0.05)
            for conns in by_worker.values():
                third = conns[2]
                status, headers, outcome = request(third, "POST", "/fhir", BATCH, _client("198.51.100.16"))
                assert status == 503 and headers["retry-after"] == "1", outcome
                assert outcome["resourceType"] == "OperationOutcome" and headers["x-request-id"]
                assert request(third, "GET", "/fhir/metadata", headers=_client("198.51.100.16"))[0] == 200
        finally:
            for pid in pool:
                os.kill(pid, signal.SIGCONT)
        for conn in waiting:
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read())["type"] == "batch-response"
        for conns in by_worker.values():
            for conn in conns:
                conn.close()


@pytest.fixture(scope="module")
def open_server(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two workers and the pool, authorization off: writes without tokens."""
    data = tmp_path_factory.mktemp("open-pool")
    with serving(data, database=copy_sqlite(template, data / "db.sqlite3"), FHIRSRV_AUTH="off") as srv:
        yield srv


def test_the_pool_expands_what_a_worker_just_wrote(open_server: Server) -> None:
    """A ValueSet changed through a worker: the pool's next `$expand` has the change."""
    server = open_server
    conn = server.connect()
    codes = {
        "resourceType": "CodeSystem",
        "id": "pool-colours",
        "url": f"{BASE}/CodeSystem/pool-colours",
        "status": "active",
        "content": "complete",
        "concept": [{"code": "red"}, {"code": "blue"}],
    }

    def value_set(*chosen: str) -> dict[str, Any]:
        include = {"system": codes["url"], "concept": [{"code": c} for c in chosen]}
        return {"resourceType": "ValueSet", "id": "pool-colours", "url": f"{BASE}/ValueSet/pool-colours",
                "status": "active", "compose": {"include": [include]}}  # fmt: skip

    def expanded() -> list[str]:
        headers = _client("198.51.100.7")
        status, _, answer = request(
            conn, "GET", f"/fhir/ValueSet/$expand?url={BASE}/ValueSet/pool-colours", None, headers
        )
        assert status == 200, answer
        assert _line(server, headers["X-Request-ID"]).get("pool") == "heavy"
        return sorted(c["code"] for c in answer["expansion"].get("contains", []))

    assert request(conn, "PUT", "/fhir/CodeSystem/pool-colours", codes, _client("198.51.100.8"))[0] in (
        200,
        201,
    )
    assert request(conn, "PUT", "/fhir/ValueSet/pool-colours", value_set("red"), _client("198.51.100.8"))[
        0
    ] in (200, 201)
    assert expanded() == ["red"]
    assert (
        request(
            conn, "PUT", "/fhir/ValueSet/pool-colours", value_set("red", "blue"), _client("198.51.100.9")
        )[0]
        == 200
    )
    assert expanded() == ["blue", "red"]
    conn.close()


def _wait_gone(pids: set[int]) -> None:
    deadline = time.monotonic() + STOP_DEADLINE
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.1)


def _note_status(started: list[str], status: str, headers: Any, exc_info: Any = None) -> None:
    started.append(status)


def test_a_worker_answers_a_heavy_request_itself_when_no_pool_takes_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No pool on the socket: the worker's own app answers, with the body as sent, and says so
    once in the log; the thread's slot is given back."""
    slots = threading.BoundedSemaphore(1)
    pool = HeavyPool(str(tmp_path / "no-pool.sock"), slots)
    received = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        received.append(environ["wsgi.input"].read())
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    body = json.dumps(BATCH).encode()
    for _ in range(2):
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/fhir", "QUERY_STRING": "", "CONTENT_LENGTH": str(len(body)),
                   "CONTENT_TYPE": "application/fhir+json", "wsgi.input": io.BytesIO(body), "REMOTE_ADDR": "192.0.2.1"}  # fmt: skip
        started: list[str] = []
        answer = routed(
            Routing(MAX_BODY, pool),
            app,
            environ,
            partial(_note_status, started),
        )
        assert list(answer) == [b"ok"] and started == ["200 OK"]
    assert received == [body, body]
    assert slots.acquire(blocking=False)  # given back each time
    assert [r.getMessage() for r in caplog.records].count(
        "the heavy-request pool takes no request: this worker answers them itself"
    ) == 1


def test_a_killed_pool_is_started_again_and_meanwhile_the_workers_answer(
    template: Path, tmp_path: Path
) -> None:
    with serving(
        tmp_path, database=copy_sqlite(template, tmp_path / "db.sqlite3"), FHIRSRV_AUTH="off"
    ) as srv:
        pool = _pool_processes(srv)
        assert len(pool) == 2
        (manager,) = _named_pool(srv.pid)
        socket_path = re.findall(r"unix:(\S+/heavy\.sock)", srv.output())[0]
        os.kill(manager, signal.SIGKILL)
        _wait_gone(pool)  # its worker dies with it
        # A process being torn down holds its sockets a little longer than /proc shows it: until
        # the pool's socket refuses, a request may still be taken by the dying pool (then 502).
        deadline = time.monotonic() + STOP_DEADLINE
        while "starting it again" not in srv.output() and answers_connection(Path(socket_path)):
            assert time.monotonic() < deadline, "the killed pool's socket still accepts"
            time.sleep(0.05)
        restarted_first = "starting it again" in srv.output()
        conn = srv.connect()
        answered_by = []
        deadline = time.monotonic() + STOP_DEADLINE
        while "heavy" not in answered_by:
            assert time.monotonic() < deadline, f"the pool did not come back: {answered_by}"
            headers = _client("198.51.100.10")
            status, _, bundle = request(conn, "POST", "/fhir", BATCH, headers)
            assert status == 200 and bundle["type"] == "batch-response"  # none lost meanwhile
            answered_by.append(_line(srv, headers["X-Request-ID"]).get("pool"))
            time.sleep(0.2)
        if not restarted_first:
            assert answered_by[0] is None  # the first, at once, by the worker itself
            assert "the heavy-request pool answers again" in srv.output()
        assert _named_pool(srv.pid) and manager not in _named_pool(srv.pid)  # a new manager
        assert "starting it again" in srv.output()
        # Forked after the port was bound, the new pool does not hold the workers' socket (the
        # port would take connections nobody answers once the workers stop).
        listening = listening_inodes(srv.port)
        assert listening and all(not (socket_inodes(pid) & listening) for pid in _pool_processes(srv))
        conn.close()
        assert srv.stop() == 0


def test_a_pool_started_again_ends_with_a_killed_server_and_leaves_no_directory(
    template: Path, tmp_path: Path
) -> None:
    """A pool started again (forked by the server's watching thread, not at start) ends too when
    the server is killed with -9, and removes its socket directory: it is told as that thread
    ends, which may be while the server's other threads are still ending (see below)."""
    with serving(tmp_path, database=copy_sqlite(template, tmp_path / "db.sqlite3")) as srv:
        pool = _pool_processes(srv)
        (manager,) = _named_pool(srv.pid)
        socket_path = Path(re.findall(r"unix:(\S+/heavy\.sock)", srv.output())[0])
        os.kill(manager, signal.SIGKILL)
        _wait_gone(pool)
        deadline = time.monotonic() + STOP_DEADLINE
        while "starting it again" not in srv.output() or not answers_connection(socket_path):
            assert time.monotonic() < deadline, "the pool was not started again"
            time.sleep(0.1)
        again = _pool_processes(srv)
        assert manager not in again
        srv.process.kill()
        srv.process.wait(timeout=10)
        _wait_gone(again)
        assert not socket_path.parent.exists()


POOL_FORKED_BY_A_THREAD = """
import sys, threading, time
from pathlib import Path
from fhirsrv.serving import _HeavyProcess, heavy_worker
from fhirsrv.settings import Settings

settings = Settings.from_env()
directory = Path(sys.argv[1])
made = []


def fork_then_end():
    made.append(_HeavyProcess(settings, 2, directory / "heavy.sock", heavy_worker(settings)))
    made[0].wait_ready()  # the thread ends once the pool answers, as the server's ends


forker = threading.Thread(target=fork_then_end)
forker.start()
forker.join()
print(made[0].process.pid, flush=True)
time.sleep(120)
"""


def test_a_pool_whose_forking_thread_ends_stops_and_removes_its_directory(template: Path, tmp_path: Path) -> None:
    """The kernel tells the pool's manager when the thread that forked it ends, not the process:
    as a server killed with -9 ends thread by thread, the pool may be told while `getppid()`
    still names the server. Here the thread ends and the process stays: the manager stops and
    removes its directory all the same (it kept it, before, in one CI run of four)."""
    directory = tmp_path / "pool"
    directory.mkdir(mode=0o700)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "FHIRSRV_DATA_DIR": str(tmp_path),
        "FHIRSRV_DATABASE_URL": copy_sqlite(template, tmp_path / "db.sqlite3"),
        "FHIRSRV_HEAVY_WORKERS": "1",
    }
    holder = subprocess.Popen(
        [sys.executable, "-c", POOL_FORKED_BY_A_THREAD, str(directory)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        manager = int(holder.stdout.readline())
        _wait_gone({manager} | _named_pool(manager))
        assert holder.poll() is None  # the process that forked it still runs
        assert not directory.exists()
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_the_pool_stops_with_the_server_and_can_be_turned_off(template: Path, tmp_path: Path) -> None:
    with serving(tmp_path, database=copy_sqlite(template, tmp_path / "db.sqlite3")) as srv:
        pool = _pool_processes(srv)
        assert len(pool) == 2
        assert srv.stop(signal.SIGTERM) == 0
        _wait_gone(pool)
    off = tmp_path / "off"
    off.mkdir()
    with serving(off, database=copy_sqlite(template, off / "db.sqlite3"), FHIRSRV_HEAVY_WORKERS="0") as srv:
        assert _pool_processes(srv, expected=0) == set()
        headers = _client("198.51.100.11")
        conn = srv.connect()
        assert request(conn, "POST", "/fhir", BATCH, headers)[0] == 200
        assert "pool" not in _line(srv, headers["X-Request-ID"])
        conn.close()
