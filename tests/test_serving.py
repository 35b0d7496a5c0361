"""`fhirsrv serve --workers N` (fhirsrv/serving.py): real worker processes under granian on
loopback. What one worker learns, every worker knows; the parent prepares once; the app's
ProxyFix alone reads forwarded headers and answers its own limits; the rate limit is shared out;
SIGTERM drains, SIGINT and a killed parent stop everything; a killed worker is replaced and
leaves the metrics; the log is the server's own.

Linux only (/proc tells which worker holds a connection: tests/worker_processes.py).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhirsrv.logformat import JsonFormatter
from fhirsrv.serving import (
    STALE_AFTER,
    ListenError,
    answer,
    is_same_socket,
    listening,
    remove_stale_metrics_directories,
    remove_stale_pool_directories,
)
from tests.api.helpers import ALIAS_SEARCH_PARAMETER as PARAM
from tests.conftest import BACKENDS, PG_URL
from tests.worker_processes import (
    Server,
    alive,
    children,
    copy_sqlite,
    first_start_database,
    free_port,
    listening_inodes,
    one_connection_per_worker,
    postgres_database,
    request,
    serving,
    worker_of,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

BASE = "https://sos.example.org/fhir"
CODES: dict[str, Any] = {
    "resourceType": "CodeSystem",
    "id": "test-colours",
    "url": f"{BASE}/CodeSystem/test-colours",
    "status": "active",
    "content": "complete",
    "concept": [{"code": "red"}, {"code": "blue"}, {"code": "green"}],
}


def _valueset(*codes: str) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "id": "test-colours",
        "url": f"{BASE}/ValueSet/test-colours",
        "status": "active",
        "compose": {"include": [{"system": CODES["url"], "concept": [{"code": c} for c in codes]}]},
    }


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first start's database, copied for each server that needs one."""
    return first_start_database(tmp_path_factory.mktemp("template"))


def _workers(server: Server, headers: dict[str, str] | None = None) -> list[http.client.HTTPConnection]:
    """A keep-alive connection to each worker of `server`."""
    return list(one_connection_per_worker(server, "/", headers).values())


@pytest.fixture(scope="module", params=BACKENDS)
def open_server(
    request: pytest.FixtureRequest, template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Two workers, authorization off (writes without tokens), no trusted proxy, no heavy pool:
    each worker answers every request (an `$expand` included), so what one learns, the other
    must know (the pool's own coherence: tests/test_heavy_pool.py)."""
    data = tmp_path_factory.mktemp("open")
    options = {"FHIRSRV_AUTH": "off", "FHIRSRV_HEAVY_WORKERS": "0"}
    if request.param == "postgres":
        schema = f"fhirsrv_test_serving_{free_port()}"
        with postgres_database(PG_URL, schema) as url, serving(data, database=url, **options) as server:
            yield server
        return
    with serving(data, database=copy_sqlite(template, data / "db.sqlite3"), **options) as server:
        yield server


def test_a_search_parameter_written_through_one_worker_works_on_every_worker(open_server: Server) -> None:
    first, second = _workers(open_server)
    for conn in (first, second):
        assert request(conn, "GET", "/fhir/Organization?alias=lcc")[0] == 400  # not known yet
    assert request(first, "PUT", f"/fhir/SearchParameter/{PARAM['id']}", PARAM)[0] in (200, 201)
    # Written through the other worker, which indexes it by the new parameter.
    structure = {"resourceType": "Organization", "id": "alias-1", "name": "Ligue 29", "alias": ["LCC 29"]}
    assert request(second, "PUT", "/fhir/Organization/alias-1", structure)[0] in (200, 201)
    for conn in (first, second):
        status, _, bundle = request(conn, "GET", "/fhir/Organization?alias=lcc")
        assert status == 200 and [e["resource"]["id"] for e in bundle.get("entry", [])] == ["alias-1"]
    for conn in (first, second):
        conn.close()


def test_a_value_set_changed_through_one_worker_expands_anew_on_every_worker(open_server: Server) -> None:
    first, second = _workers(open_server)
    assert request(first, "PUT", "/fhir/CodeSystem/test-colours", CODES)[0] in (200, 201)
    assert request(first, "PUT", "/fhir/ValueSet/test-colours", _valueset("red"))[0] in (200, 201)
    expand = f"/fhir/ValueSet/$expand?url={BASE}/ValueSet/test-colours"

    def codes(conn: http.client.HTTPConnection) -> list[str]:
        status, _, expanded = request(conn, "GET", expand)
        assert status == 200, expanded
        return sorted(c["code"] for c in expanded["expansion"].get("contains", []))

    assert codes(second) == codes(first) == ["red"]  # both have it in their caches now
    assert request(second, "PUT", "/fhir/ValueSet/test-colours", _valueset("red", "blue"))[0] == 200
    assert codes(first) == codes(second) == ["blue", "red"]
    for conn in (first, second):
        conn.close()


def test_forwarded_headers_are_not_believed_without_a_trusted_proxy(open_server: Server) -> None:
    """Nothing forwarded is believed unless FHIRSRV_TRUSTED_PROXIES says so (no HSTS for a
    forged https), whatever the HTTP server in front of the app would make of it."""
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on", "X-Forwarded-Host": "evil.test"}
    for conn in _workers(open_server):
        status, headers, bundle = request(conn, "GET", "/fhir/Organization?_count=1", headers=forged)
        assert status == 200
        assert "strict-transport-security" not in headers
        assert bundle["link"][0]["url"].startswith(f"http://127.0.0.1:{open_server.port}/fhir/")
        conn.close()


def test_answers_name_the_project_not_the_http_server(open_server: Server) -> None:
    """As waitress says it (`Server: fhirsrv`), not granian's own `server: granian`."""
    for conn in _workers(open_server):
        status, headers, _ = request(conn, "GET", "/fhir/Organization/never-written")
        assert status == 404 and headers["server"] == "fhirsrv"
        conn.close()


def test_the_app_answers_its_own_limits_not_the_http_server(open_server: Server) -> None:
    """A query just over FHIRSRV_MAX_QUERY_LENGTH (8192) gets the app's 414 OperationOutcome;
    a header as long (If-None-Exist holds a query) reaches the app."""
    long_value = "a" * 9000
    for conn in _workers(open_server):
        status, _, outcome = request(conn, "GET", f"/fhir/Organization?name={long_value}")
        assert status == 414 and outcome["resourceType"] == "OperationOutcome"
        status, _, bundle = request(conn, "GET", "/fhir/Organization?_count=1", headers={"X-Long": long_value})
        assert status == 200 and bundle["resourceType"] == "Bundle"
        conn.close()


def test_a_request_that_is_not_http_is_refused_and_its_connection_closed(open_server: Server) -> None:
    """A `Content-Length` that is not a number, or two that differ: nobody can tell where such a
    request ends, so the HTTP server answers 400 and closes the connection (RFC 9112, 6.3);
    nothing reaches the app, nothing is written, and the worker answers the next connection."""
    for head in (b"Content-Length: abc\r\n", b"Content-Length: 2\r\nContent-Length: 3\r\n"):
        with socket.create_connection(("127.0.0.1", open_server.port), timeout=10) as raw:
            raw.sendall(
                b"POST /fhir/Organization HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
                + head + b"\r\n" + b'{"resourceType": "Organization", "name": "Jamais lue"}'
            )  # fmt: skip
            answer = b""
            while chunk := raw.recv(4096):  # until the server closes
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
        assert b"connection: close" in answer.lower()
    conn = open_server.connect()
    status, _, bundle = request(conn, "GET", "/fhir/Organization?name:exact=Jamais%20lue")
    assert status == 200 and bundle.get("entry", []) == []
    conn.close()


@pytest.fixture(scope="module")
def guarded_server(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two workers, authorization on, one trusted proxy hop, 4 anonymous requests a minute, on
    a fresh data directory (no signing key yet). FHIRSRV_WORKERS says 3, the option 2."""
    data = tmp_path_factory.mktemp("guarded")
    assert not (data / "jwt-signing-key.pem").exists()
    with serving(
        data,
        database=copy_sqlite(template, data / "db.sqlite3"),
        FHIRSRV_TRUSTED_PROXIES="1",
        FHIRSRV_RATE_LIMIT_ANONYMOUS="4",
        FHIRSRV_WORKERS="3",  # --workers 2 wins: `serving` waits for exactly 2
    ) as server:
        yield server


def _as(address: str) -> dict[str, str]:
    """Headers of a client at `address` behind the trusted proxy (its own rate-limit bucket)."""
    return {"X-Forwarded-For": address}


def test_every_worker_signs_with_the_one_key_made_before_they_started(guarded_server: Server) -> None:
    kids = []
    for conn in _workers(guarded_server, _as("203.0.113.1")):
        status, _, jwks = request(conn, "GET", "/fhir/.well-known/jwks.json", headers=_as("203.0.113.2"))
        assert status == 200
        kids.append([key["kid"] for key in jwks["keys"]])
        conn.close()
    assert len(kids) == 2 and kids[0] == kids[1]
    key_files = list(Path(guarded_server.log.parent).glob("*.pem"))
    assert [p.name for p in key_files] == ["jwt-signing-key.pem"]  # and no draft left beside it


def test_a_trusted_proxy_hop_is_believed_by_the_app_alone(guarded_server: Server) -> None:
    for conn in _workers(guarded_server, _as("203.0.113.3")):
        headers = {**_as("203.0.113.4"), "X-Forwarded-Proto": "https"}
        status, answered, _ = request(conn, "GET", "/fhir/metadata", headers=headers)
        assert status == 200 and "strict-transport-security" in answered
        conn.close()


def test_a_caller_gets_the_rate_limit_across_workers_not_once_per_worker(guarded_server: Server) -> None:
    """4 a minute over 2 workers: 2 in each. A caller that reaches both gets 4 answers, then
    429 from each; without the sharing it would get 8. (The connections were found as another
    caller: the bucket is the request's client, not the connection's.)"""
    caller = _as("203.0.113.9")
    answers = []
    for conn in _workers(guarded_server, _as("203.0.113.8")):
        answers.append([request(conn, "GET", "/fhir/metadata", headers=caller)[0] for _ in range(3)])
        conn.close()
    assert answers == [[200, 200, 429], [200, 200, 429]]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_server_and_all_its_workers(template: Path, tmp_path: Path, sig: int) -> None:
    with serving(tmp_path, database=copy_sqlite(template, tmp_path / "db.sqlite3")) as server:
        workers = server.worker_pids()
        assert len(workers) == 2
        assert server.stop(sig) == 0
        assert not any(alive(pid) for pid in workers)
        assert "Traceback" not in server.output()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return True
    return False


def _begin_create(server: Server) -> tuple[http.client.HTTPConnection, bytes]:
    """A create whose body is partly sent: a request in flight until the rest follows."""
    body = json.dumps({"resourceType": "Organization", "name": "Sent during the stop"}).encode()
    conn = server.connect()
    conn.putrequest("POST", "/fhir/Organization")
    conn.putheader("Content-Type", "application/fhir+json")
    conn.putheader("Content-Length", str(len(body)))
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    # In flight once the app reads its body: then, not at the connection's accept (a worker
    # may take a connection and be stopped before it has read the request's head, which it
    # then drops as an idle connection), the server answers "100 Continue".
    assert conn.sock is not None
    conn.sock.settimeout(60)  # a bound on the wait, not a measure
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = conn.sock.recv(1)
        assert byte, f"the connection closed before 100 Continue: {head!r}"
        head += byte
    assert head.split(b" ", 2)[1] == b"100", head
    conn.send(body[:10])
    return conn, body[10:]


def _until_refused(server: Server) -> None:
    """Wait until the workers have taken the signal: they stop accepting connections."""
    deadline = time.monotonic() + 60  # a bound on the wait, not a measure
    while not _refused(server.port):
        assert time.monotonic() < deadline, "the server still accepts connections"
        time.sleep(0.05)


def test_sigterm_lets_a_request_in_flight_finish(template: Path, tmp_path: Path) -> None:
    with serving(tmp_path, database=copy_sqlite(template, tmp_path / "db.sqlite3"), FHIRSRV_AUTH="off") as server:
        conn, rest = _begin_create(server)
        server.process.send_signal(signal.SIGTERM)
        _until_refused(server)  # no new connection, but the one in flight is served
        conn.send(rest)
        try:
            response = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError) as exc:
            # Rare (about one CI run in ten, never reproduced alone): what the server said then.
            with contextlib.suppress(subprocess.TimeoutExpired):  # the log, whether it has ended or not
                server.process.wait(timeout=60)
            raise AssertionError(f"the request in flight was dropped: {exc!r}\n{server.output()}") from exc
        assert response.status == 201, response.read()
        assert server.stop() == 0
    assert "Traceback" not in server.output()


def test_sigint_does_not_wait_for_a_request_in_flight(template: Path, tmp_path: Path) -> None:
    with serving(tmp_path, database=copy_sqlite(template, tmp_path / "db.sqlite3"), FHIRSRV_AUTH="off") as server:
        conn, _ = _begin_create(server)  # and the rest never comes
        workers = server.worker_pids()
        server.process.send_signal(signal.SIGINT)
        assert server.stop() == 0
        assert not any(alive(pid) for pid in workers)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()


def test_workers_do_not_outlive_a_killed_parent(template: Path, tmp_path: Path) -> None:
    """kill -9 of the server: its workers and its heavy pool end, and the pool's private socket
    directory does not stay behind in the temporary directory."""
    with serving(tmp_path, database=copy_sqlite(template, tmp_path / "db.sqlite3")) as server:
        workers = server.worker_pids()
        pool = children(server.pid, heavy_pool=True) - workers
        [socket_path] = re.findall(r"unix:(\S+/heavy\.sock)", server.output())
        assert pool and Path(socket_path).exists()
        server.process.kill()  # SIGKILL: no handler, no goodbye to the workers
        server.process.wait(timeout=10)
        deadline = time.monotonic() + 60  # a bound on the wait, not a measure
        while (any(alive(pid) for pid in workers | pool) or Path(socket_path).parent.exists()) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert not any(alive(pid) for pid in workers | pool)
        assert not Path(socket_path).parent.exists()
    assert children(server.pid) == set()


def test_a_busy_port_stops_serve_with_workers_at_once_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "fhirsrv.cli", "serve", "--port", str(port), "--no-demo", "--workers", "2"],
            capture_output=True, text=True, env={"FHIRSRV_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
            timeout=600, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: cannot listen on 127.0.0.1:")


def test_a_stopped_database_stops_serve_with_workers_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fhirsrv.cli", "serve", "--port", str(free_port()), "--workers", "2",
         "--database", f"postgresql://fhirsrv:secret@127.0.0.1:{free_port()}/directory"],
        capture_output=True, text=True, env={"FHIRSRV_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert "unavailable: the database cannot be reached" in done.stderr and "secret" not in done.stderr


def test_the_workers_setting_alone_starts_that_many_workers_of_four_threads(template: Path, tmp_path: Path) -> None:
    with serving(tmp_path, database=copy_sqlite(template, tmp_path / "db.sqlite3"), workers=None, threads=None,
                 FHIRSRV_WORKERS="3") as server:  # fmt: skip
        assert len(server.worker_pids()) == 3
        assert "with 3 worker processes of 4 threads" in server.output()


def _organization_reads(conn: http.client.HTTPConnection, token: str) -> float:
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    text = response.read().decode()
    assert response.status == 200, text[:200]
    prefix = 'fhirsrv_http_requests_total{interaction="read",resource_type="Organization",status="404"}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def test_metrics_add_up_the_workers_whichever_answers_the_scrape(
    template: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`serve --workers 2` shares one prometheus-client directory between its workers (a
    private one when PROMETHEUS_MULTIPROC_DIR is not set): a scrape counts every worker's
    requests, not only those of the worker it lands on."""
    data = tmp_path_factory.mktemp("metrics")
    token = "metrics-token-0123456789"
    database = copy_sqlite(template, data / "db.sqlite3")
    with serving(data, database=database, FHIRSRV_AUTH="off", FHIRSRV_METRICS_TOKEN=token) as server:
        first, second = _workers(server)
        for conn, reads in ((first, 3), (second, 2)):
            for _ in range(reads):
                assert request(conn, "GET", "/fhir/Organization/never-written")[0] == 404
        assert _organization_reads(first, token) == _organization_reads(second, token) == 5
        for conn in (first, second):
            conn.close()


def _pool_size(conn: http.client.HTTPConnection, token: str) -> float:
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
    text = conn.getresponse().read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("fhirsrv_db_pool_size "))


def test_a_killed_worker_leaves_the_metrics_and_is_replaced(template: Path, tmp_path: Path) -> None:
    """kill -9 of a worker: its live gauges (its pool) are retired at the next scrape (granian
    has no hook on a worker's exit), its counts kept; granian starts another worker."""
    token = "metrics-token-0123456789"
    shared = tmp_path / "metrics"
    shared.mkdir()
    database = copy_sqlite(template, tmp_path / "db.sqlite3")
    with serving(
        tmp_path, database=database, FHIRSRV_AUTH="off", FHIRSRV_METRICS_TOKEN=token,
        PROMETHEUS_MULTIPROC_DIR=str(shared),
    ) as server:  # fmt: skip
        connections = one_connection_per_worker(server, "/")  # each has built its app: it answers
        killed, survivor = sorted(connections)
        pools = _pool_size(connections[survivor], token)
        assert pools > 0 and list(shared.glob(f"gauge_live*_{killed}.db"))
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60  # a bound on the wait, not a measure
        while alive(killed) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _pool_size(connections[survivor], token) < pools * 3 / 2  # not the dead one's too
        assert not list(shared.glob(f"gauge_live*_{killed}.db"))
        for conn in connections.values():
            conn.close()
        deadline = time.monotonic() + 300  # a bound on the wait, not a measure
        while (len(server.worker_pids()) != 2 or killed in server.worker_pids()) and time.monotonic() < deadline:
            time.sleep(0.2)
        after = server.worker_pids()
        assert len(after) == 2 and killed not in after and server.process.poll() is None
        for conn in _workers(server):  # the new worker too has built its app
            assert _pool_size(conn, token) == pools
            conn.close()


def test_every_line_of_the_log_is_in_the_servers_format_and_none_is_an_access_log(
    template: Path, tmp_path: Path
) -> None:
    """FHIRSRV_LOG_FORMAT=json (the default): the parent's lines, granian's own (workers started,
    stopped) and each worker's are JSON objects; no access log line (client addresses)."""
    with serving(tmp_path, database=copy_sqlite(template, tmp_path / "db.sqlite3"), FHIRSRV_AUTH="off") as server:
        for conn in _workers(server):
            assert request(conn, "GET", "/fhir/Organization/never-written")[0] == 404
            conn.close()
        assert server.stop() == 0
    lines = [json.loads(line) for line in server.output().splitlines() if line.strip()]
    loggers = {line["logger"] for line in lines}
    assert {"fhirsrv", "fhirsrv.request", "_granian"} <= loggers
    assert not any("access" in name for name in loggers)


# ----------------------------------------------------------------------------- the app as granian calls it

SECRET = "Le Bras <y.lebras@example.org>"


class _Lines(logging.Handler):
    """The server's JSON lines, kept."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(JsonFormatter().format(record)))


def _broken_app(where: str) -> Any:
    """A WSGI app whose exception escapes it (Flask answers its own): in the call, or while its
    body is made."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        if where == "call":
            raise ValueError(f"no such name: {SECRET}")
        headers = [("Content-Type", "text/plain")]
        if where == "sized body":  # handed to granian whole (`answer`): made before it is sent
            headers.append(("Content-Length", "100"))
        start_response("200 OK", headers)

        def body() -> Iterator[bytes]:
            yield b"first part"
            raise ValueError(f"no such name: {SECRET}")

        return body()

    return app


@pytest.mark.parametrize("where", ["call", "body", "sized body"])
def test_an_exception_escaping_the_app_is_logged_without_its_message(where: str) -> None:
    """granian would print the exception with its message (which may quote the request): it
    never sees one; the server logs its type and stack, and the answer is a 500 or cut short."""
    started: list[tuple[str, list[tuple[str, str]]]] = []
    handler = _Lines()
    logger = logging.getLogger("fhirsrv")
    logger.addHandler(handler)
    try:
        body = answer(_broken_app(where), {}, lambda status, headers, exc_info=None: started.append((status, headers)))
        chunks = list(body)
    finally:
        logger.removeHandler(handler)
    status, headers = started[-1]
    assert ("Server", "fhirsrv") in headers
    if where == "call":
        assert status.startswith("500") and chunks == []
    else:
        assert status.startswith("200") and chunks == [b"first part"]
    [line] = handler.lines
    assert line["level"] == "error" and line["exc_type"] == "ValueError"
    assert SECRET not in json.dumps(line) and "y.lebras" not in json.dumps(line)


def test_the_workers_socket_sends_each_answer_at_once_to_a_keep_alive_client():
    """The listening sockets the workers inherit pass TCP_NODELAY on to every connection they
    accept. Without it, a keep-alive client (a hospital system's, a platform's sync) waited
    about 40 ms for every answer: its head and body were two writes, and the second waited for
    the client's delayed acknowledgement of the first (bench/workers_bench.py: 36 fixed-bytes
    requests a second on one connection instead of about 1,900)."""
    fds = listening("127.0.0.1", 0, 2)
    listeners = [socket.socket(fileno=fd) for fd in fds]
    try:
        port = listeners[0].getsockname()[1]
        assert {sock.getsockname()[1] for sock in listeners} == {port}  # one port, two sockets
        for listener in listeners:
            listener.settimeout(0.2)
        accepted = 0
        deadline = time.monotonic() + 30  # a bound on the wait, not a measure
        while accepted < 8 and time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", port)) as client:
                for listener in listeners:  # the kernel chose one of them
                    try:
                        conn, _ = listener.accept()
                    except TimeoutError:
                        continue
                    with conn:
                        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                        accepted += 1
                client.close()
        assert accepted >= 8
    finally:
        for listener in listeners:
            listener.close()


def test_a_port_this_server_holds_is_not_shared_by_a_second_one_started_on_it():
    """The workers' sockets share their port with each other (SO_REUSEPORT), not with another
    server: a second `serve` on the same port must stop with its one line, not take a share of
    the first one's clients without a word."""
    fds = listening("127.0.0.1", 0, 2)
    try:
        with socket.socket(fileno=os.dup(fds[0])) as first:
            port = first.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}"):
            listening("127.0.0.1", port, 2)
    finally:
        for fd in fds:
            os.close(fd)


def test_connections_opened_together_are_spread_over_the_workers(template: Path, tmp_path: Path) -> None:
    """Clients that connect at once (a platform's sync starting its pool, a load balancer's
    connections) are spread over both workers. On one socket shared by the workers, the worker
    that woke first could take 15 of 16 and the other idle (bench/workers_bench.py: with 2
    workers, from 0.74x to 1.97x one worker's reads between runs). Each worker now has its own
    socket and the kernel spreads the connections over them by a hash of their addresses:
    over 4 rounds of 16, each worker holds at least a quarter of the 64 (an even spread gives
    32; fewer than 16 happens about once in 40,000 runs)."""
    with serving(tmp_path, database=copy_sqlite(template, tmp_path / "db.sqlite3"),
                 FHIRSRV_HEAVY_WORKERS="0") as server:  # fmt: skip
        one_connection_per_worker(server, "/")  # both have built their app
        assert len(listening_inodes(server.port)) == 2
        held: dict[int, int] = {}
        for _ in range(4):
            clients = [server.connect() for _ in range(16)]
            for conn in clients:
                conn.connect()
            for conn in clients:
                assert request(conn, "GET", "/fhir/metadata")[0] == 200
                pid = worker_of(server, conn)
                assert pid is not None
                held[pid] = held.get(pid, 0) + 1
            for conn in clients:
                conn.close()
        assert len(held) == 2 and min(held.values()) >= 16, held


def _aged(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_pool_directories_left_by_servers_killed_outright_are_removed_at_the_next_start(
    tmp_path: Path,
) -> None:
    """Every process of a server killed at once (the OOM killer, a stop timeout) leaves its heavy
    pool's socket directory behind; the next start removes those no pool listens in, and no
    other."""
    old = STALE_AFTER + 60
    empty = _aged(Path(tempfile.mkdtemp(prefix="fhirsrv-heavy-", dir=tmp_path)), old)
    dead = Path(tempfile.mkdtemp(prefix="fhirsrv-heavy-", dir=tmp_path))
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(str(dead / "heavy.sock"))  # bound, then closed: nobody listens any more
    _aged(dead, old)
    live = Path(tempfile.mkdtemp(prefix="fhirsrv-heavy-", dir=tmp_path))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(live / "heavy.sock"))
    listener.listen()
    _aged(live, old)
    starting = Path(tempfile.mkdtemp(prefix="fhirsrv-heavy-", dir=tmp_path))  # its pool binds soon
    other = _aged(Path(tempfile.mkdtemp(prefix="fhirsrv-heavy-", dir=tmp_path)), old)
    (other / "notes.txt").write_text("not a pool's")
    _aged(other, old)
    try:
        remove_stale_pool_directories(tmp_path)
        assert not empty.exists() and not dead.exists()
        assert live.exists() and starting.exists() and other.exists()
    finally:
        listener.close()


def test_metrics_directories_left_by_servers_killed_outright_are_removed_at_the_next_start(
    tmp_path: Path,
) -> None:
    """A server killed with -9 never removes its private metrics directory; the next start does,
    when no process that wrote in it still runs, and leaves any other."""
    old = STALE_AFTER + 60
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone_pid, live_pid = int(ended.stdout), os.getpid()

    def metrics_dir(*files: str, age: float = old) -> Path:
        made = Path(tempfile.mkdtemp(prefix="fhirsrv-metrics-", dir=tmp_path))
        for name in files:
            (made / name).write_bytes(b"")
        return _aged(made, age)

    dead = metrics_dir(f"counter_{gone_pid}.db", f"histogram_{gone_pid}.db")
    alive = metrics_dir(f"counter_{gone_pid}.db", f"gauge_livesum_{live_pid}.db")
    recent = metrics_dir(f"counter_{gone_pid}.db", age=0)
    empty = metrics_dir()  # a server just started may not have written yet
    other = metrics_dir("notes.txt")
    remove_stale_metrics_directories(tmp_path)
    assert not dead.exists()
    assert alive.exists() and recent.exists() and empty.exists() and other.exists()


def test_a_restarted_pool_closes_only_descriptors_that_are_still_the_workers_sockets() -> None:
    """The parent closes its listening sockets as it stops, and their numbers may be reused (a
    pipe, a file) by the time a pool is started again: it closes a number only if it is still
    the socket it was."""
    [fd] = listening("127.0.0.1", 0)
    inode = os.fstat(fd).st_ino
    assert is_same_socket(fd, inode)
    os.close(fd)
    read_end, write_end = os.pipe()
    try:
        assert not is_same_socket(read_end, inode) and not is_same_socket(write_end, inode)
    finally:
        os.close(read_end)
        os.close(write_end)
