"""`fhirsrv serve --workers N` as a real subprocess on a free loopback port, for the tests of
tests/test_serving.py and tests/test_serving_load.py, and which worker process holds a
connection.

Which worker answers is the kernel's choice; a test that must reach each worker opens
connections until each has one (`connection_to`), telling them apart by the worker that holds
the connection's server-side socket (Linux /proc): no header says it, none is needed.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from fhirsrv.storage.engine import make_engine, normalise_url

# Bounds on waits for processes to start or stop on a busy machine, not measures of speed.
START_DEADLINE = 180.0
# The heavy-request pool's processes' name (fhirsrv/serving.py, HEAVY_PROCESS_NAME).
HEAVY_NAME = "fhirsrv-heavy"
STOP_DEADLINE = 60.0


def first_start_database(directory: Path) -> Path:
    """A SQLite database with the first start's content (no demo), for tests to copy for each
    server that needs one (`copy_sqlite`): the first start's load costs seconds."""
    from fhirsrv.interactions.load import load_initial_content
    from fhirsrv.settings import Settings
    from fhirsrv.wiring import build_services

    path = directory / "fhirsrv.sqlite3"
    services = build_services(Settings.from_env(database_url=f"sqlite:///{path}", load_demo=False))
    load_initial_content(services, demo=False)
    services.engine.dispose()
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int, *, heavy_pool: bool = False) -> set[int]:
    """The live processes whose parent is `pid`: the heavy pool's manager (named
    fhirsrv-heavy, fhirsrv/serving.py) only if `heavy_pool`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
        comm, after = stat.split("(", 1)[1].rsplit(")", 1)
        fields = after.split()
        if int(fields[1]) == pid and fields[0] != "Z" and (heavy_pool or comm != HEAVY_NAME):
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    workers: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def worker_pids(self) -> set[int]:
        return children(self.pid)

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` to the server; its exit status once it and its workers have gone."""
        workers = self.worker_pids()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        status = self.process.wait(timeout=STOP_DEADLINE)
        deadline = time.monotonic() + STOP_DEADLINE
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        return status


def _ready(server: Server) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=2):
            pass
    except OSError:
        return False
    conn = server.connect()
    try:
        conn.request("GET", "/fhir/metadata")
        # Any answer of the app counts (a 429 included: a test may set a tiny rate limit).
        return conn.getresponse().status < 500 and len(server.worker_pids()) == server.workers
    except OSError:
        return False
    finally:
        conn.close()


@contextmanager
def serving(
    data_dir: Path,
    database: str | None = None,
    workers: int | None = 2,
    threads: int | None = 4,
    **variables: str,
) -> Iterator[Server]:
    """`fhirsrv serve --workers N --no-demo` until the block ends (then SIGTERM, and SIGKILL for
    what remains); without `workers`, no option: FHIRSRV_WORKERS (in `variables`) says how many;
    without `threads`, no option either (the command's default).
    FHIRSRV_* settings come from `variables`; the data directory (signing key, default SQLite
    file) is `data_dir`."""
    port = free_port()
    log = data_dir / f"serve-{port}.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "FHIRSRV_DATA_DIR": str(data_dir), **variables}
    command = [sys.executable, "-m", "fhirsrv.cli", "serve", "--port", str(port), "--no-demo"]
    command += (["--threads", str(threads)] if threads else []) + (["--workers", str(workers)] if workers else [])
    expected = workers or int(variables["FHIRSRV_WORKERS"])
    if database:
        command += ["--database", database]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, port, log, expected)
    try:
        deadline = time.monotonic() + START_DEADLINE
        while not _ready(server):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start:\n{server.output()}")
            time.sleep(0.3)
        yield server
    finally:
        left = server.worker_pids()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for pid in left:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def _inodes_of_server_sockets(port: int, client_port: int) -> set[str]:
    """Inodes of the server-side sockets of the connection 127.0.0.1:client_port -> port."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                found.add(inode)
    return found


def worker_of(server: Server, conn: http.client.HTTPConnection) -> int | None:
    """The worker process holding `conn` (which has had an answer, so was accepted)."""
    assert conn.sock is not None
    inodes = _inodes_of_server_sockets(server.port, conn.sock.getsockname()[1])
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid in server.worker_pids():
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            links = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        if targets & set(links):
            return pid
    return None


def listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on `port` (TCP, state 0A)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                found.add(fields[9])
    return found


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` holds."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:  # closed since the listing
            continue
        if link.startswith("socket:["):
            found.add(link[8:-1])
    return found


def request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body or None) of one request on a keep-alive connection."""
    data = None if body is None else json.dumps(body).encode()
    sent = {"Accept": "application/fhir+json", **(headers or {})}
    if data is not None:
        sent["Content-Type"] = "application/fhir+json"
    conn.request(method, path, body=data, headers=sent)
    response = conn.getresponse()
    raw = response.read()
    parsed = json.loads(raw) if raw and raw[:1] in (b"{", b"[") else None
    return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed


def one_connection_per_worker(
    server: Server, path: str = "/", headers: dict[str, str] | None = None
) -> dict[int, http.client.HTTPConnection]:
    """A keep-alive connection held by each worker: connections are opened a few at once (each
    sends `path` once, as whoever `headers` say) until every worker holds one."""
    found: dict[int, http.client.HTTPConnection] = {}
    for _ in range(100):
        batch = [server.connect() for _ in range(4)]
        for conn in batch:
            conn.connect()
        for conn in batch:
            request(conn, "GET", path, headers=headers)
            pid = worker_of(server, conn)
            if pid is not None and pid not in found:
                found[pid] = conn
            else:
                conn.close()
        if len(found) == server.workers:
            return found
    raise AssertionError(f"connections reached only workers {sorted(found)}")


@contextmanager
def postgres_database(base_url: str, schema: str) -> Iterator[str]:
    """A fresh schema of the test PostgreSQL server, dropped afterwards; yields its URL."""
    base = normalise_url(base_url)
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in base else "?"
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def copy_sqlite(template: Path, target: Path) -> str:
    """A copy of a prepared SQLite database (its WAL checkpointed by its server's stop)."""
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"
