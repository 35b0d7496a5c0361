"""`fhirsrv serve --workers N` with N >= 2: N worker processes under granian (its WSGI interface).

One process runs Python one thread at a time (the interpreter's lock): a client sending requests
back to back keeps that process's core busy and the others wait (README, "Limits against
abuse"). Several processes share the cores. granian parses HTTP and does the sockets' I/O on
its Rust threads, outside the interpreter's lock, and hands each request to one of a few Python
threads of its worker, for requests that wait on the database: about the same CPU a request as
gunicorn's gthread workers, but more requests a second out of a worker (README, "Worker
processes: gunicorn or granian"). The app is built in each worker after the fork (no preload),
so each worker owns its database engine and pool, its search registry, its runner.

What the parent does once, before forking, so that N workers starting at once never race:
- the database: migrated, its first-start content loaded (`cli.serve`, as with one process),
  the access facts, identifiers and paging-cursor key made (`build_services`);
- the token signing key: read, or created in the data directory (auth/keys.py), so that every
  worker signs with the same one;
- the metrics directory the workers share (`with_shared_metrics`);
- the listening sockets, one a worker in one SO_REUSEPORT group (`listening`): bound here, so
  a port in use is one line at once; each worker inherits its own, and the kernel spreads the
  connections over them.
It then closes its database connections (a connection used by two processes after a fork mixes
their conversations) and granian starts the workers. SIGTERM stops them gracefully (requests in
flight finish, for GRACEFUL_TIMEOUT at most), SIGINT at once (INTERRUPT_TIMEOUT); either way the
parent exits after its workers. A worker whose parent has gone (kill -9) is killed by the kernel
(PR_SET_PDEATHSIG, set as it starts). A worker that dies is replaced (twice in a few seconds:
the server stops, with status 1).
"""

from __future__ import annotations

import atexit
import ctypes
import io
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from granian._granian import SocketHolder
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import MPServer

from fhirsrv.heavy_pool import BUSY, Unreachable, answers, canned, forward, is_heavy, trust_forwarded_peer
from fhirsrv.interactions.context import Services
from fhirsrv.orphans import die_with_parent
from fhirsrv.settings import Settings, export_to_environment

log = logging.getLogger("fhirsrv")

# A WSGI application, built in each worker.
AppFactory = Callable[[], Any]
StartResponse = Callable[..., Any]
# Seconds SIGTERM leaves requests in flight to finish before the workers are killed.
GRACEFUL_TIMEOUT = 30
# Seconds SIGINT leaves the workers to stop (an idle worker stops at once) before they are killed.
INTERRUPT_TIMEOUT = 1
# Connections waiting to be accepted (the listen queue), as gunicorn's default.
BACKLOG = 2048
# The Server header of every answer, as waitress sends it (`app.make_server`'s ident): the
# project's name, not the HTTP server's (granian would add `server: granian`).
SERVER_HEADER = ("Server", "fhirsrv")
# granian's own loggers: its lines (workers started, stopped, replaced) go to the root logger,
# which writes them in FHIRSRV_LOG_FORMAT (`logformat.configure`); its access log stays off.
GRANIAN_LOGGING: dict[str, Any] = {
    "loggers": {
        "_granian": {"handlers": [], "propagate": True},
        "granian.access": {"handlers": [], "propagate": False},
    }
}


@dataclass
class HeavyPool:
    """Where a main worker finds the heavy pool (heavy_pool.py); how many of its threads may wait
    on the pool at once (the others stay for cheap requests, even when the pool hangs: past
    them a heavy request is answered 503 with Retry-After); whether it has logged that the pool
    took nothing."""

    socket_path: str
    slots: threading.BoundedSemaphore
    warned: bool = False


def heavy_slots(threads: int) -> int:
    """Threads of a main worker that may wait on the heavy pool: half of them, at least one."""
    return max(1, threads // 2)


@dataclass(frozen=True)
class Routing:
    """What a main worker needs to know to answer (`routed`): the app's body limit, the pool."""

    max_body_bytes: int
    pool: HeavyPool | None


# The heavy pool's processes' name (ps, top; /proc/PID/comm), at most 15 bytes.
HEAVY_PROCESS_NAME = b"fhirsrv-heavy"
# Seconds the parent gives the heavy pool to stop after the main workers have (SIGTERM).
HEAVY_STOP_TIMEOUT = GRACEFUL_TIMEOUT + 5
# Seconds the parent waits for the heavy pool to answer before it starts the main workers.
HEAVY_START_TIMEOUT = 60
# How often the parent looks whether the heavy pool's manager still runs (seconds), and how many
# times it may end within a window before the parent stops starting it again.
HEAVY_WATCH_INTERVAL = 1.0
HEAVY_RESTARTS = 3
HEAVY_RESTART_WINDOW = 60.0
_PR_SET_NAME = 15
# How much less CPU the heavy pool gets than the main workers when both want it (nice(2): 10 is
# about a tenth of a main worker's share). Its requests are the ones that may wait.
HEAVY_NICENESS = 10


class ListenError(OSError):
    """The address cannot be listened on; the message is the one line the CLI prints."""


def prepare_parent(services: Services) -> None:
    """What must exist once before the workers start (see the module docstring), then the
    parent's database connections closed."""
    settings = services.settings
    if settings.auth:
        from fhirsrv.auth.keys import load_signing_key

        load_signing_key(services.engine, settings.jwt_private_key, settings.jwt_key_file)
    services.engine.dispose()


def listening(host: str, port: int, count: int = 1) -> list[int]:
    """The file descriptors of `count` listening sockets on the first address `host` resolves
    to, all on one port, one for each worker to inherit (`WorkerProcesses._spawn_worker`).

    One socket each, in one SO_REUSEPORT group, rather than one socket they all accept from:
    the kernel then spreads new connections over the workers evenly (by a hash of each
    connection's addresses), where on one shared socket the worker that wakes first takes the
    connections that arrive together, often all of them, and the other worker idles (with 2
    workers and 4 keep-alive clients, reads went from 0.74x to 1.97x of one worker between runs;
    bench/workers_bench.py). The cost: a connection belongs to its socket, so one that reaches
    the socket of a worker stopped in its tracks (or being replaced) waits for it, where on a
    shared socket another worker took it. Only where the kernel spreads connections over such a
    group (Linux, `SPREADS_CONNECTIONS`); elsewhere one socket, shared (`count` = 1).

    The first socket is bound without SO_REUSEPORT, which fails if anything holds the port (a
    second server started on it stops with its one line, not sharing it), and joins the group
    only once bound (SO_REUSEPORT then, then the others): no moment when the port is free. A
    process of the same user that binds the port with SO_REUSEPORT later can still join the
    group, as the kernel allows for one user: run the server as a user of its own (README).
    SO_REUSEADDR, as waitress sets it: a port just left by a stopped server is usable at once;
    TCP_NODELAY, as waitress and granian set it. Raises ListenError with a one-line reason,
    having closed what it opened."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = addresses[0]
    opened: list[socket.socket] = []
    try:
        first = _bound(family, kind, proto, address, opened, reuse_port=False)
        if count > 1:
            first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        first.listen(BACKLOG)
        address = first.getsockname()  # the port chosen, when 0 was asked for
        for _ in range(count - 1):
            _bound(family, kind, proto, address, opened, reuse_port=True).listen(BACKLOG)
    except OSError as exc:
        for sock in opened:
            sock.close()
        raise ListenError(
            f"cannot listen on {host}:{port}: {exc.strerror} (another server? choose --port)"
        ) from None
    # Detached: from here the workers' server owns the descriptors (a socket object would close them).
    return [sock.detach() for sock in opened]


# Whether the kernel spreads the connections of one port over the sockets of an SO_REUSEPORT
# group (Linux since 3.9); elsewhere (macOS, FreeBSD without SO_REUSEPORT_LB) the workers share
# one socket, as granian does there.
SPREADS_CONNECTIONS = sys.platform.startswith("linux")


def _bound(
    family: int, kind: int, proto: int, address: Any, opened: list[socket.socket], *, reuse_port: bool
) -> socket.socket:
    """A socket bound to `address`, added to `opened` (closed by the caller if a later one fails)."""
    sock = socket.socket(family, kind, proto)
    opened.append(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Inherited by every accepted connection (Linux): an answer's head and body leave at
    # once. Without it a keep-alive client waited ~40 ms for each answer's second write
    # (Nagle's algorithm against the client's delayed ACK), as granian's own socket avoids.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(address)
    return sock


def http1_settings(settings: Settings) -> HTTP1Settings:
    """HTTP/1.1 as granian reads it. Its buffer for a request's head (request line and headers)
    holds a query as long as the app allows (FHIRSRV_MAX_QUERY_LENGTH) and a header as long again
    (If-None-Exist), with room for the rest, so the app answers a longer query with its 414
    OperationOutcome, not granian with a bare 431. (Its parser refuses a request line over 64 KiB
    whatever the buffer: a bare 414.)"""
    default = HTTP1Settings()
    head = 2 * settings.max_query_length + 64 * 1024
    return replace(default, max_buffer_size=max(default.max_buffer_size, head))


class WorkerProcesses(MPServer):  # type: ignore[misc]
    """granian's process manager for `fhirsrv serve --workers N`, each setting for a reason:

    - HTTP/1.1 only, as waitress serves (no HTTP/2 over clear text, a surface nobody asked for);
    - forwarded headers: granian reads none (no option to), so the app's ProxyFix alone decides,
      from FHIRSRV_TRUSTED_PROXIES, as under waitress;
    - no access log (it would record client addresses); granian's own lines in the server's
      format (GRANIAN_LOGGING);
    - each worker's listening socket is its own of those `listening` bound (`_spawn_worker`; a
      worker replaced gets the socket of the one it replaces), or for the heavy pool a Unix
      socket (`uds`) granian binds, readable by the server's user only;
    - a worker that dies is replaced; SIGTERM drains, SIGINT stops (`signal_handler_interrupt`).
    The app of each worker comes from `start_worker` (its `loader`)."""

    def __init__(
        self,
        settings: Settings,
        listeners: list[int] | None,
        host: str,
        port: int,
        threads: int,
        workers: int | None = None,
        uds: Path | None = None,
    ) -> None:
        super().__init__(
            "fhirsrv",
            address=host,
            port=port,
            uds=uds,
            uds_permissions=0o600 if uds else None,
            interface=Interfaces.WSGI,
            workers=workers or settings.workers,
            blocking_threads=threads,
            http=HTTPModes.http1,
            http1_settings=http1_settings(settings),
            websockets=False,
            backlog=BACKLOG,
            log_level=LogLevels.info,
            log_dictconfig=GRANIAN_LOGGING,
            log_access=False,
            respawn_failed_workers=True,
            workers_kill_timeout=GRACEFUL_TIMEOUT,
        )
        self.listeners = listeners
        self._holders: list[tuple[Any, socket.socket]] = []

    def _init_shared_socket(self) -> None:
        """The sockets `listening` bound, not ones granian would bind (an IP address only, and
        no check that the port is free): for each, what `MPServer._init_shared_socket` makes of
        a socket of its own. The heavy pool's Unix socket is granian's own."""
        if self.listeners is None:
            super()._init_shared_socket()
            return
        self._ssp = None
        for fd in self.listeners:
            sock = socket.socket(fileno=fd)
            sock.set_inheritable(True)
            self._holders.append((SocketHolder(fd, False, BACKLOG), sock))

    def _spawn_worker(self, idx: int, target: Any, callback_loader: Any) -> Any:
        """Worker `idx` (0-based; granian gives a replaced worker its index) with its own socket."""
        if self.listeners is not None:
            own = idx % len(self.listeners)  # one socket for all where the kernel spreads none
            self._shd, self._sso = self._holders[own]
            self._sfd = self.listeners[own]
            callback_loader = partial(self._with_own_socket_only, own, callback_loader)
        return super()._spawn_worker(idx, target, callback_loader)

    def _with_own_socket_only(self, own: int, loader: Callable[[], Any]) -> Any:
        """In a worker, after the fork: the other workers' sockets closed, then its app. A
        worker that held them would keep them open while it drains after SIGTERM (connections
        would wait in their queues, unanswered, rather than be refused)."""
        for other, (_, sock) in enumerate(self._holders):
            if other != own:
                sock.close()
        return loader()

    def _drop_shared_socket(self) -> None:
        if self.listeners is None:
            super()._drop_shared_socket()
            return
        for _, sock in self._holders:
            sock.close()
        self._holders.clear()
        self._shd = self._sso = None

    def signal_handler_interrupt(self, signum: int | None = None, *args: Any) -> None:
        """SIGTERM and SIGINT both stop the workers (SIGTERM to each: it stops accepting and
        finishes the requests it has); after SIGINT those still running are killed sooner."""
        if signum == signal.SIGINT:
            self.workers_kill_timeout = INTERRUPT_TIMEOUT
        super().signal_handler_interrupt()


def start_worker(
    parent: int, settings: Settings, factory: AppFactory, wrapper: Callable[..., Iterable[bytes]]
) -> Any:
    """The first thing a worker runs after the fork (granian's loader), then its app.

    - the kernel kills it if `parent` ends, however (kill -9 included), so no worker outlives
      the server;
    - SIGTERM and SIGINT stop it while it builds its app (it inherited the parent's handlers,
      which would only note them); granian sets its own before it serves;
    - it logs as `serve` does (FHIRSRV_LOG_FORMAT), granian having configured logging its way;
    - the live gauges of workers that died before it (the one it replaces) stop counting in
      /metrics: granian has no hook on a worker's exit;
    - an app that cannot be built: logged without the exception's message, and the worker exits
      (status 1; granian replaces it, and stops if that fails again at once).
    Its requests go to `wrapper` with the app: `routed` (a main worker) or `answer_heavy` (a
    worker of the heavy pool)."""
    from fhirsrv.api.metrics import retire_exited_workers
    from fhirsrv.app import share_the_interpreter
    from fhirsrv.logformat import configure

    die_with_parent(parent)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    configure(settings.log_format)
    share_the_interpreter(settings)
    try:
        retire_exited_workers(settings)
        app = factory()
    except Exception:
        log.error("a worker could not build its app", exc_info=True)
        sys.exit(1)
    return partial(wrapper, app)


def routed(
    routing: Routing, app: Any, environ: dict[str, Any], start_response: StartResponse
) -> Iterable[bytes]:
    """A main worker's `answer`, for two things granian leaves to it.

    - A body sent in chunks (no Content-Length) is read here, up to one byte past the app's
      limit, and given to the app with its length: granian passes such a body on as it comes,
      and the app (werkzeug) would cut it at the limit without a word and parse the rest (a
      400 for broken JSON), where a body over the limit is a 413.
    - A request `is_heavy` names goes to the heavy pool (heavy_pool.py) with its body, unless
      the body is over the limit (the app answers 413) or the pool takes nothing (the app
      answers it here)."""
    pool = routing.pool
    to_pool = pool is not None and is_heavy(environ)
    chunked = not environ.get("CONTENT_LENGTH") and "HTTP_TRANSFER_ENCODING" in environ
    if not (to_pool or chunked):
        return answer(app, environ, start_response)
    body = _take_body(environ, routing.max_body_bytes)
    if pool is None or not to_pool or body is None:
        return answer(app, environ, start_response)

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        headers.append(SERVER_HEADER)
        return start_response(status, headers, exc_info)

    if not pool.slots.acquire(blocking=False):  # every slot waits on the pool already
        return canned(start, "503 Service Unavailable", BUSY, environ, ("Retry-After", "1"))
    try:
        answered = forward(pool.socket_path, environ, body, start)
    except Unreachable:
        pool.slots.release()
        if not pool.warned:
            pool.warned = True
            log.warning("the heavy-request pool takes no request: this worker answers them itself")
        environ["wsgi.input"] = io.BytesIO(body)
        return answer(app, environ, start_response)
    except BaseException:
        pool.slots.release()
        raise
    if pool.warned:
        pool.warned = False
        log.info("the heavy-request pool answers again")
    if isinstance(answered, list):
        pool.slots.release()
        return answered
    return _releasing(answered, pool.slots)


def _releasing(body: Iterable[bytes], slots: threading.BoundedSemaphore) -> Iterator[bytes]:
    """`body`, its slot released once it is sent or dropped."""
    try:
        yield from body
    finally:
        slots.release()


def _take_body(environ: dict[str, Any], limit: int) -> bytes | None:
    """The request's body, read, or None when it is over `limit`. Either way the app finds in
    `environ` a body to read again and its length (for a body over the limit sent in chunks,
    one byte more than the limit: the app answers 413 without reading on)."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        if int(length) > limit:
            return None
        data = stream.read(int(length)) if int(length) else b""
        environ["wsgi.input"] = io.BytesIO(data)
        return data
    data = stream.read(limit + 1)  # no length given: read up to one byte past the limit
    environ["CONTENT_LENGTH"] = str(len(data))
    # Measured now: werkzeug would take a length beside Transfer-Encoding: chunked for none.
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    if len(data) > limit:
        environ["wsgi.input"] = _Replayed(data, stream)
        return None
    environ["wsgi.input"] = io.BytesIO(data)
    return data


class _Replayed(io.RawIOBase):
    """`head`, then what is left of `rest`: a body read in part, as the app must read it."""

    def __init__(self, head: bytes, rest: Any) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.head:
            if size is None or size < 0:
                data, self.head = self.head + self.rest.read(), b""
                return data
            data, self.head = self.head[:size], self.head[size:]
            return data
        return self.rest.read() if size is None or size < 0 else self.rest.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def answer_heavy(app: Any, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A heavy-pool worker's `answer`: the client's address as the main worker saw it."""
    trust_forwarded_peer(environ)
    return answer(app, environ, start_response)


def answer(app: Any, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """`app` as granian calls it: every answer with SERVER_HEADER, and an exception that escapes
    the app (Flask answers its own with a 500 OperationOutcome) logged as the server logs one,
    its type and stack without its message (granian would print the message, which may quote the
    request), the request answered 500, or its body cut short (`_sent`).

    An answer of a known length up to BUFFERED_BYTES (every FHIR answer but the large ones) is
    handed over whole, as a list: granian sends a list's bytes at once, where it takes each
    chunk of any other body from Python in turn, the interpreter's lock taken again for each
    chunk and for the close (a tenth of a read's CPU in the worker)."""
    length: list[int | None] = [None]

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        headers.append(SERVER_HEADER)
        length[0] = _content_length(headers)
        return start_response(status, headers, exc_info)

    try:
        body = app(environ, start)
    except Exception:
        log.error("the app failed to answer a request", exc_info=True)
        start_response("500 Internal Server Error", [("Content-Length", "0"), SERVER_HEADER], sys.exc_info())
        return []
    known = length[0]
    if known is not None and known <= BUFFERED_BYTES:
        return _whole(body)
    return _sent(body)


# Bytes of an answer handed to granian whole (`answer`); a longer one is sent as it is made.
BUFFERED_BYTES = 256 * 1024


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if len(name) == 14 and name.lower() == "content-length":
            return int(value) if value.isdigit() else None
    return None


def _whole(body: Iterable[bytes]) -> Iterable[bytes]:
    """`body`'s chunks, all made now, `body` closed; if making them fails, what was made, as
    `_sent` sends it (logged, and the answer cut short)."""
    chunks: list[bytes] = []
    try:
        for chunk in body:
            chunks.append(chunk)
    except Exception:
        log.error("the app failed while sending an answer", exc_info=True)
        _close(body)
        return iter(chunks)  # not a list: granian sends it as the short body it is
    _close(body)
    return chunks


def _sent(body: Iterable[bytes]) -> Iterator[bytes]:
    """`body`'s chunks as granian sends them; an exception while they are made is logged
    (`answer`) and ends the body; `body` closed once, as WSGI asks, however it ended."""
    try:
        # Not `yield from`: it would close `body` itself when granian closes this, then again below.
        for chunk in body:  # noqa: UP028
            yield chunk
    except Exception:
        log.error("the app failed while sending an answer", exc_info=True)
    finally:
        _close(body)


def _close(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.error("the app failed to close an answer", exc_info=True)


# prometheus-client's file names in a multi-process directory (counter_123.db, gauge_livesum_123.db).
_METRICS_FILES = ("counter_*.db", "gauge_*.db", "histogram_*.db", "summary_*.db")


def with_shared_metrics(settings: Settings) -> Settings:
    """Settings whose PROMETHEUS_MULTIPROC_DIR the workers share, so a scrape of any worker adds
    up all of them: the operator's directory, emptied of an earlier run's counts as
    prometheus-client asks, or else a private one that lives as long as the server. Exported to
    the environment before any worker imports prometheus-client, which reads it there."""
    directory = settings.prometheus_multiproc_dir
    if directory:
        for pattern in _METRICS_FILES:
            for stale in Path(directory).glob(pattern):
                stale.unlink()
    else:
        remove_stale_metrics_directories(Path(tempfile.gettempdir()))
        directory = tempfile.mkdtemp(prefix=METRICS_DIRECTORY_PREFIX)
        atexit.register(shutil.rmtree, directory, True)
    shared = replace(settings, prometheus_multiproc_dir=directory)
    export_to_environment(shared, "prometheus_multiproc_dir")
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported already (by whatever import brought it): choose again
        values.ValueClass = values.get_value_class()
    return shared


def fhirsrv_worker(settings: Settings, *, exports: bool) -> AppFactory:
    """The app of one worker: built after the fork, with its background runner (the sweep and
    the mail delivery, when FHIRSRV_SWEEP_INTERVAL_SECONDS is set; one pass at a time across
    the workers, workflow/runner.py), its Subscriptions' delivery loop (sync/delivery.py) and,
    with `exports` (no heavy pool to run them), its export worker (sync/export_runner.py)."""
    return partial(_fhirsrv_app, settings, exports)


def heavy_worker(settings: Settings) -> AppFactory:
    """The app of a heavy-pool worker: fhirsrv's, with the `$export` worker (its kick-offs come
    here, and the files are written here, away from the main workers' cheap requests), without
    the sweep and delivery loops (the main workers run them)."""
    return partial(_heavy_app, settings)


def _heavy_app(settings: Settings) -> Any:
    from fhirsrv.api.bulk_export import keep_exporting
    from fhirsrv.app import create_app

    app = create_app(settings)
    keep_exporting(app)
    return app


def _fhirsrv_app(settings: Settings, exports: bool) -> Any:
    from fhirsrv.api.bulk_export import keep_exporting
    from fhirsrv.app import create_app
    from fhirsrv.sync import delivery
    from fhirsrv.workflow import runner

    app = create_app(settings)
    runner.start(app.extensions["fhirsrv"])
    delivery.start(app.extensions["fhirsrv"])  # one worker delivers at a time (sync/delivery.py)
    if exports:  # else the heavy pool's workers run the exports
        keep_exporting(app)
    return app


def serve_workers(
    settings: Settings,
    services: Services,
    host: str,
    port: int,
    threads: int,
    factory: AppFactory | None = None,
) -> None:
    """Run the workers until SIGTERM or SIGINT. `services` are the parent's (prepared, then
    closed here); `factory` builds each worker's app (default: fhirsrv's, `fhirsrv_worker`).

    The workers are forked (granian would spawn fresh interpreters where fork is not Python's
    default, 3.14 on): they inherit their listening sockets and the app's factory as they are."""
    from fhirsrv.logformat import configure

    prepare_parent(services)
    settings = with_shared_metrics(settings)
    multiprocessing.set_start_method("fork", force=True)
    heavy = start_heavy_pool(settings, threads, factory) if settings.heavy_workers else None
    try:
        listeners = listening(host, port, settings.workers if SPREADS_CONNECTIONS else 1)
        if heavy is not None:
            heavy.listeners = [(fd, os.fstat(fd).st_ino) for fd in listeners]
        server = WorkerProcesses(settings, listeners, host, port, threads)
        configure(settings.log_format)  # again: granian configured logging its way
        log.info(
            "fhirsrv serving http://%s:%s/fhir with %s worker processes of %s threads, and %s for heavy "
            "requests (database %s)",
            host, port, settings.workers, threads, settings.heavy_workers, services.engine.url.render_as_string(),
        )  # fmt: skip
        pool = None
        if heavy is not None:
            pool = HeavyPool(str(heavy.socket_path), threading.BoundedSemaphore(heavy_slots(threads)))
            heavy.keep_running()
        wrapper = partial(routed, Routing(settings.max_body_bytes, pool))
        main = factory or fhirsrv_worker(settings, exports=heavy is None)
        loader = partial(start_worker, os.getpid(), settings, main, wrapper)
        server.serve(target_loader=loader, wrap_loader=False)
    finally:
        if heavy is not None:
            heavy.stop()


class _HeavyProcess:
    """The heavy pool's manager process, started again when it ends (`keep_running`)."""

    def __init__(self, settings: Settings, threads: int, socket_path: Path, factory: AppFactory) -> None:
        self.args = (os.getpid(), settings, threads, socket_path, factory)
        # The main workers' listening sockets once bound, each with its inode: a pool started
        # again after them must not hold them (the port would take connections nobody answers
        # once the workers stop). The inode tells whether a descriptor is still that socket: the
        # parent closes its copies as it stops, and the numbers may have been reused since.
        self.listeners: list[tuple[int, int]] = []
        self.socket_path = socket_path
        self.stopping = threading.Event()
        self.process = self._start()

    def _start(self) -> multiprocessing.process.BaseProcess:
        self.socket_path.unlink(missing_ok=True)  # a killed manager's socket file
        process = multiprocessing.get_context("fork").Process(
            target=_run_heavy_pool, args=(*self.args, self.listeners), name="fhirsrv-heavy"
        )
        process.start()
        return process

    def wait_ready(self) -> None:
        """Until a worker of the pool answers (HEAVY_START_TIMEOUT at most), so that the main
        workers find it from their first request; if it does not, they answer heavy requests
        themselves (logged) until it does."""
        deadline = time.monotonic() + HEAVY_START_TIMEOUT
        while self.process.is_alive() and time.monotonic() < deadline:
            if self.socket_path.exists() and answers(str(self.socket_path), timeout=1.0):
                return
            time.sleep(0.05)
        log.warning("the heavy-request pool did not start: the workers answer heavy requests themselves")

    def keep_running(self) -> None:
        """A thread of the parent that starts the pool again when its manager ends (killed, or
        failed; granian replaces its workers itself), unless it ended HEAVY_RESTARTS times within
        HEAVY_RESTART_WINDOW seconds: then the main workers answer heavy requests themselves."""

        def watch() -> None:
            ended: list[float] = []
            while not self.stopping.wait(HEAVY_WATCH_INTERVAL):
                if self.process.is_alive():
                    continue
                self.process.join(0)  # reaped: no zombie left
                now = time.monotonic()
                ended = [t for t in ended if now - t < HEAVY_RESTART_WINDOW] + [now]
                if len(ended) > HEAVY_RESTARTS:
                    log.error(
                        "the heavy-request pool keeps stopping: the workers answer heavy requests themselves"
                    )
                    return
                log.warning(
                    "the heavy-request pool stopped (status %s): starting it again", self.process.exitcode
                )
                self.process = self._start()
                self.wait_ready()

        threading.Thread(target=watch, name="fhirsrv-heavy-watch", daemon=True).start()

    def stop(self) -> None:
        """SIGTERM (its requests in flight finish), then SIGKILL if it outlasts HEAVY_STOP_TIMEOUT."""
        self.stopping.set()
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(HEAVY_STOP_TIMEOUT)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def start_heavy_pool(settings: Settings, threads: int, factory: AppFactory | None) -> _HeavyProcess:
    """The heavy pool (heavy_pool.py): a process that runs granian's manager for
    FHIRSRV_HEAVY_WORKERS workers on a Unix socket in a directory of its own (mode 0700, removed
    at exit). Forked before the main workers' sockets are bound, so it holds none of theirs."""
    remove_stale_pool_directories(Path(tempfile.gettempdir()))
    directory = tempfile.mkdtemp(prefix=HEAVY_DIRECTORY_PREFIX)
    atexit.register(shutil.rmtree, directory, True)
    heavy = _HeavyProcess(
        settings, threads, Path(directory) / "heavy.sock", factory or heavy_worker(settings)
    )
    heavy.wait_ready()
    return heavy


# The heavy pool's socket directories, in the temporary directory: fhirsrv-heavy-XXXXXXXX.
HEAVY_DIRECTORY_PREFIX = "fhirsrv-heavy-"
# Seconds after which a pool's directory with no pool listening in it is left over: a server
# starting binds its pool's socket within seconds of making the directory.
STALE_AFTER = 600.0


def remove_stale_pool_directories(temporary: Path) -> None:
    """Remove what servers that ended without a word left (every process killed at once: the
    OOM killer, a stop timeout): pool directories of this user, untouched for STALE_AFTER
    seconds, holding nothing but a socket that nobody listens on. One a live pool uses answers
    a connection, and is kept."""
    for directory, entries in _left_directories(temporary, HEAVY_DIRECTORY_PREFIX):
        if any(entry.name != "heavy.sock" for entry in entries):
            continue
        if entries and answers_connection(entries[0]):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        log.info("removed a heavy-request pool directory a stopped server left: %s", directory)


# The private metrics directories of servers started without FHIRSRV_PROMETHEUS_MULTIPROC_DIR.
METRICS_DIRECTORY_PREFIX = "fhirsrv-metrics-"
# prometheus-client's file names end with the pid of the process that writes them.
_WRITER_PID = re.compile(r"_(\d+)\.db$")


def remove_stale_metrics_directories(temporary: Path) -> None:
    """Remove the private metrics directories of servers that ended without a word (kill -9,
    the OOM killer: `atexit` never ran): this user's, untouched for STALE_AFTER seconds,
    holding prometheus-client's files only, none of them written by a process still running.
    A live server's directory holds a file of a live process (its parent's, or its workers'),
    and is kept; so is an empty one, which a server just started may not have written yet."""
    for directory, entries in _left_directories(temporary, METRICS_DIRECTORY_PREFIX):
        names = [entry.name for entry in entries]
        writers = [_WRITER_PID.search(name) for name in names]
        if not names or not all(writers):
            continue
        if any(_running(int(found.group(1))) for found in writers if found):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        log.info("removed a metrics directory a stopped server left: %s", directory)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    return True


def _left_directories(temporary: Path, prefix: str) -> Iterator[tuple[Path, list[Path]]]:
    """This user's directories named `prefix`… in `temporary`, untouched for STALE_AFTER
    seconds, each with its entries: those a server that ended without a word may have left."""
    now = time.time()
    for directory in temporary.glob(f"{prefix}*"):
        try:
            info = directory.lstat()
            entries = list(directory.iterdir())
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and now - info.st_mtime >= STALE_AFTER:
            yield directory, entries


def answers_connection(socket_path: Path) -> bool:
    """Whether something listens on the Unix socket at `socket_path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(socket_path))
        except OSError:
            return False
    return True


def _run_heavy_pool(
    parent: int,
    settings: Settings,
    threads: int,
    socket_path: Path,
    factory: AppFactory,
    listeners: list[tuple[int, int]],
) -> None:
    """The heavy pool's manager: named HEAVY_PROCESS_NAME (its workers inherit the name), serving
    until SIGTERM (the parent stopping it) or PARENT_ENDED_SIGNAL.

    The kernel sends it PARENT_ENDED_SIGNAL when the parent's thread that forked it ends
    (PR_SET_PDEATHSIG): the parent's end, however it ends (kill -9 included), or its watching
    thread's, which ends only as the parent stops. Its workers stop (killed with it), and it
    removes the socket's directory, which a parent killed with -9 could not. Only then: when a
    manager ends otherwise the parent still runs, and starts it again on the same socket path.
    `getppid()` cannot tell: a manager the watching thread forked is told as that thread ends,
    and while the parent's other threads are still ending it is their child.

    SIGTERM ends it through the same `finally` until granian's own handler is in place (a
    manager started again inherits the parent's handler, which only notes it)."""
    from fhirsrv.logformat import configure

    server: WorkerProcesses | None = None
    parent_ended = False

    def on_parent_end(signum: int, frame: Any) -> None:
        nonlocal parent_ended
        parent_ended = True
        if server is None:
            raise SystemExit(128 + signum)
        server.signal_handler_interrupt(signal.SIGINT)  # stop soon: nobody waits for a drain

    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(PARENT_ENDED_SIGNAL, on_parent_end)
    try:
        die_with_parent(parent, PARENT_ENDED_SIGNAL)
        for fd, inode in listeners:  # the main workers' sockets, inherited by a pool started again
            if is_same_socket(fd, inode):
                os.close(fd)
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None).prctl(_PR_SET_NAME, HEAVY_PROCESS_NAME, 0, 0, 0)
        os.nice(HEAVY_NICENESS)
        server = WorkerProcesses(settings, None, "", 0, threads, workers=settings.heavy_workers, uds=socket_path)
        configure(settings.log_format)
        loader = partial(start_worker, os.getpid(), settings, factory, answer_heavy)
        server.serve(target_loader=loader, wrap_loader=False)
    finally:
        if parent_ended or os.getppid() != parent:
            shutil.rmtree(socket_path.parent, ignore_errors=True)


# The signal the heavy pool's manager gets when the server ends (`_run_heavy_pool`): one that
# nobody else sends it, so that it alone means "the server has gone".
PARENT_ENDED_SIGNAL = signal.SIGUSR2


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def is_same_socket(fd: int, inode: int) -> bool:
    """Whether descriptor `fd` is still the socket of that inode (not closed, not reused)."""
    try:
        info = os.fstat(fd)
    except OSError:
        return False
    return stat.S_ISSOCK(info.st_mode) and info.st_ino == inode
