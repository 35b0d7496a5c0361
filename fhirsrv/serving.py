"""`fhirsrv serve --workers N` with N >= 2: N worker processes under gunicorn.

One process runs Python one thread at a time (the interpreter's lock): a client sending requests
back to back keeps that process's core busy and the others wait (README, "Limits against
abuse"). Several processes share the cores. gunicorn's gthread workers keep a few threads each,
for requests that wait on the database; the app is built in each worker after the fork (no
preload), so each worker owns its database engine and pool, its search registry, its runner.

What the parent does once, before forking, so that N workers starting at once never race:
- the database: migrated, its first-start content loaded (`cli.serve`, as with one process),
  the access facts, identifiers and paging-cursor key made (`build_services`);
- the token signing key: read, or created in the data directory (auth/keys.py), so that every
  worker signs with the same one;
- the listening sockets: bound here, so a port in use is one line at once; the workers inherit
  them.
It then closes its database connections (a connection used by two processes after a fork mixes
their conversations) and gunicorn starts the workers. SIGTERM stops them gracefully (requests in
flight finish), SIGINT at once; either way the parent exits after its workers, and a worker
whose parent has gone (kill -9) stops by itself within a second or so (gunicorn checks).
"""

from __future__ import annotations

import atexit
import logging
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from fhirsrv.interactions.context import Services
from fhirsrv.settings import Settings, export_to_environment

log = logging.getLogger("fhirsrv")

# A WSGI application, built in each worker.
AppFactory = Callable[[], Any]
# Seconds a worker may go without a sign of life before gunicorn replaces it. Its gthread loop
# signs between requests, whatever they cost; the bound is really on building the app at start.
WORKER_TIMEOUT = 120
# Seconds SIGTERM leaves requests in flight to finish before the workers are killed.
GRACEFUL_TIMEOUT = 30
# Seconds an idle keep-alive connection is kept (gunicorn's default is 2).
KEEPALIVE = 5


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


def listening(host: str, port: int) -> list[int]:
    """The file descriptors of one listening socket per address `host` resolves to, for gunicorn
    (`fd://N`), which takes them over (and closes these numbers once it has its own copies).

    SO_REUSEADDR, as waitress and gunicorn set it: a port just left by a stopped server is
    usable at once. Raises ListenError with a one-line reason, having closed what it opened."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    opened: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in addresses:
            if any(s.family == family and s.getsockname()[:2] == address[:2] for s in opened):
                continue
            sock = socket.socket(family, kind, proto)
            opened.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(2048)
    except OSError as exc:
        for sock in opened:
            sock.close()
        raise ListenError(
            f"cannot listen on {host}:{port}: {exc.strerror} (another server? choose --port)"
        ) from None
    # Detached: from here gunicorn owns the descriptors (a socket object would close them again).
    return [sock.detach() for sock in opened]


def gunicorn_options(settings: Settings, listeners: list[int], workers: int, threads: int) -> dict[str, Any]:
    """The gunicorn settings of `fhirsrv serve --workers N`, each for a reason:

    - forwarded headers: gunicorn believes X-Forwarded-Proto from 127.0.0.1 by default; here it
      believes nothing (no allowed address, no scheme or forwarder header), so the app's ProxyFix
      alone decides, from FHIRSRV_TRUSTED_PROXIES, as it does under waitress;
    - the request line may be as long as the app allows a query (FHIRSRV_MAX_QUERY_LENGTH), so
      the app answers a longer one with its 414 OperationOutcome, not gunicorn with a bare 400
      (0 is gunicorn's largest, 1 MiB); a header may be as long as a query (If-None-Exist);
    - no access log (it would record client addresses), no control socket (an admin interface
      in the user's home, which two servers on a host would share)."""
    return {
        "bind": [f"fd://{fd}" for fd in listeners],
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "preload_app": False,
        "timeout": WORKER_TIMEOUT,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "keepalive": KEEPALIVE,
        "forwarded_allow_ips": "",
        "secure_scheme_headers": {},
        "forwarder_headers": "",
        "limit_request_line": 0,
        "limit_request_field_size": max(8190, settings.max_query_length + 1024),
        "accesslog": None,
        "control_socket_disable": True,
        "proc_name": "fhirsrv",
        "post_fork": _worker_logging(settings),
        "child_exit": _worker_gone(settings),
    }


def _worker_logging(settings: Settings) -> Callable[[Any, Any], None]:
    """Each worker logs as `serve` does (FHIRSRV_LOG_FORMAT), not as gunicorn set it up, whose
    error log would print exceptions' messages (they may quote a request's data)."""

    def post_fork(server: Any, worker: Any) -> None:
        from fhirsrv.logformat import configure

        configure(settings.log_format)

    return post_fork


def _worker_gone(settings: Settings) -> Callable[[Any, Any], None]:
    """A worker that exited stops counting in /metrics' live gauges (its pool); its request
    counts still add up."""

    def child_exit(server: Any, worker: Any) -> None:
        from fhirsrv.api.metrics import worker_exited

        worker_exited(worker.pid, settings)

    return child_exit


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
        directory = tempfile.mkdtemp(prefix="fhirsrv-metrics-")
        atexit.register(shutil.rmtree, directory, True)
    shared = replace(settings, prometheus_multiproc_dir=directory)
    export_to_environment(shared, "prometheus_multiproc_dir")
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported already (by whatever import brought it): choose again
        values.ValueClass = values.get_value_class()
    return shared


class WorkerProcesses(BaseApplication):  # type: ignore[misc]
    """gunicorn's master, with its settings from `gunicorn_options` (no config file, no command
    line of its own) and the app built by `factory` in each worker."""

    def __init__(self, factory: AppFactory, options: dict[str, Any]) -> None:
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.factory()


def fhirsrv_worker(settings: Settings) -> AppFactory:
    """The app of one worker: built after the fork, with its background runner (the sweep and
    the mail delivery, when FHIRSRV_SWEEP_INTERVAL_SECONDS is set; one pass at a time across
    the workers, workflow/runner.py), its Subscriptions' delivery loop (sync/delivery.py) and its
    export worker (sync/export_runner.py)."""

    def build() -> Any:
        from fhirsrv.api.bulk_export import keep_exporting
        from fhirsrv.app import create_app
        from fhirsrv.sync import delivery
        from fhirsrv.workflow import runner

        app = create_app(settings)
        runner.start(app.extensions["fhirsrv"])
        delivery.start(app.extensions["fhirsrv"])  # one worker delivers at a time (sync/delivery.py)
        keep_exporting(app)
        return app

    return build


def serve_workers(
    settings: Settings,
    services: Services,
    host: str,
    port: int,
    threads: int,
    factory: AppFactory | None = None,
) -> None:
    """Run the workers until SIGTERM or SIGINT. `services` are the parent's (prepared, then
    closed here); `factory` builds each worker's app (default: fhirsrv's, `fhirsrv_worker`)."""
    prepare_parent(services)
    settings = with_shared_metrics(settings)
    options = gunicorn_options(settings, listening(host, port), settings.workers, threads)
    log.info(
        "fhirsrv serving http://%s:%s/fhir with %s worker processes of %s threads (database %s)",
        host, port, settings.workers, threads, services.engine.url.render_as_string(),
    )  # fmt: skip
    WorkerProcesses(factory or fhirsrv_worker(settings), options).run()
