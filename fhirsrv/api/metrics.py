"""Prometheus metrics at `/metrics`: requests, latency, the database pool, the outbox.

- `fhirsrv_http_requests_total{interaction, resource_type, status}` and
  `fhirsrv_http_request_duration_seconds{interaction, resource_type}` (a histogram): labels of
  a bounded vocabulary only (api/request_facts.py), never an id or a raw path;
- `fhirsrv_db_pool_checked_out`, `fhirsrv_db_pool_size`, `fhirsrv_db_pool_max`: connections
  in use by requests, kept, and the most the pool opens (summed over the live processes);
- `fhirsrv_outbox_messages{status}` and `fhirsrv_outbox_due`: undelivered e-mails of the
  inclusion procedure, read from the database at each scrape (a probe connection, bounded by
  short timeouts); `fhirsrv_outbox_scrape_success` 0 when that read failed;
- `fhirsrv_subscription_events_queued`, `fhirsrv_subscription_oldest_event_seconds` and
  `fhirsrv_subscriptions{status}`: notifications of rest-hook Subscriptions numbered and not
  delivered yet (the delivery queue), the age of the oldest, and Subscriptions by status, read
  the same way; `fhirsrv_subscription_scrape_success` 0 when that read failed.

One process (waitress): each app keeps its own registry in memory. Several (granian, with
PROMETHEUS_MULTIPROC_DIR): prometheus-client writes each worker's values to files there and a
scrape, answered by any worker, adds them up; the pool gauges of a worker that exited stop
counting (`retire_exited_workers`: run by each worker as it starts, and at each scrape).

Who may read it (FHIRSRV_METRICS_TOKEN, FHIRSRV_METRICS_ALLOW): the holder of the bearer token,
or an address in the allowed networks, either one. Neither set: 404, as if there were no
metrics. Closed by default rather than open to loopback: behind a reverse proxy on the same
host, every request comes from 127.0.0.1 unless FHIRSRV_TRUSTED_PROXIES is set, so "loopback
only" would publish the metrics to anyone through the proxy.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Engine, event
from sqlalchemy.exc import SQLAlchemyError

from fhirsrv.api import outcome, request_facts
from fhirsrv.api.caller import unguarded
from fhirsrv.api.current import current_request
from fhirsrv.errors import Issue
from fhirsrv.interactions.context import Services
from fhirsrv.settings import VARIABLES, Settings, SettingsError, metrics_networks
from fhirsrv.storage.engine import POOL_OVERFLOW, POOL_SIZE
from fhirsrv.sync import delivery
from fhirsrv.workflow.outbox import queue_depth

# Seconds: from a read by id (about a millisecond) to the statement timeout (30 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Metrics:
    """The metrics one app updates; in memory (its own registry) or in the multi-process files."""

    def __init__(self, multiprocess_dir: str = "") -> None:
        self.multiprocess_dir = multiprocess_dir
        # Multi-process: values go to files, and each scrape builds a registry reading them.
        self.registry = None if multiprocess_dir else CollectorRegistry()
        self.requests = Counter(
            "fhirsrv_http_requests",
            "HTTP requests answered, by FHIR interaction, resource type and status",
            ["interaction", "resource_type", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fhirsrv_http_request_duration_seconds",
            "Time to answer a request, by FHIR interaction and resource type",
            ["interaction", "resource_type"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.pool_checked_out = self._pool_gauge("checked_out", "Database connections in use by requests")
        self.pool_size = self._pool_gauge("size", "Database connections the pool keeps open")
        self.pool_max = self._pool_gauge("max", "Most database connections the pool opens under load")

    def _pool_gauge(self, name: str, documentation: str) -> Gauge:
        # livesum: summed over the worker processes that are alive (see worker_exited).
        return Gauge(f"fhirsrv_db_pool_{name}", documentation, registry=self.registry, multiprocess_mode="livesum")

    def observe(self, interaction: str, resource_type: str, status: int, seconds: float) -> None:
        key = (interaction, resource_type, status)
        children = self._children.get(key)
        if children is None:
            # The labelled series, looked up once: the labels are of a bounded vocabulary
            # (request_facts.py), so this holds a few hundred pairs at most.
            children = (
                self.requests.labels(interaction, resource_type, str(status)),
                self.latency.labels(interaction, resource_type),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def watch_pool(self, engine: Engine) -> None:
        """Counted as connections are checked out and in, so that each process's gauge is its
        own pool's, whichever process answers the scrape."""
        self.pool_size.set(POOL_SIZE)
        self.pool_max.set(POOL_SIZE + POOL_OVERFLOW)
        event.listen(engine, "checkout", lambda *_: self.pool_checked_out.inc())
        event.listen(engine, "checkin", lambda *_: self.pool_checked_out.dec())

    def scrape(self, *database: OutboxCollector | SubscriptionCollector) -> bytes:
        if self.registry is not None:
            return generate_latest(self.registry)
        _retire_exited(self.multiprocess_dir)  # a worker replaced last, or not replaced
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        for collector in database:
            registry.register(collector)
        return generate_latest(registry)


class OutboxCollector:
    """The outbox's depth, read at each scrape: a database-wide figure, the same whichever
    process reads it, so it is never added up over processes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> list[Metric]:
        return []  # nothing read when registered, only when scraped

    def collect(self) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "fhirsrv_outbox_scrape_success", "1 when the outbox's depth could be read at this scrape"
        )
        try:
            with self.engine.connect() as conn:
                depth = queue_depth(conn)
        except SQLAlchemyError:
            success.add_metric([], 0)
            yield success
            return
        messages = GaugeMetricFamily(
            "fhirsrv_outbox_messages", "Undelivered e-mails of the inclusion procedure, by status", labels=["status"]
        )
        for status in ("pending", "sending", "failed"):
            messages.add_metric([status], getattr(depth, status))
        yield messages
        yield GaugeMetricFamily(
            "fhirsrv_outbox_due", "Undelivered e-mails whose time to be sent has come", value=depth.due
        )
        success.add_metric([], 1)
        yield success


class SubscriptionCollector:
    """The rest-hook Subscriptions' delivery queue, read at each scrape like the outbox's."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "fhirsrv_subscription_scrape_success", "1 when the subscriptions' queue could be read at this scrape"
        )
        try:
            with self.engine.connect() as conn:
                depth = delivery.queue_depth(conn)
        except SQLAlchemyError:
            success.add_metric([], 0)
            yield success
            return
        yield GaugeMetricFamily(
            "fhirsrv_subscription_events_queued",
            "Notifications of rest-hook Subscriptions numbered and not delivered yet",
            value=depth.events,
        )
        yield GaugeMetricFamily(
            "fhirsrv_subscription_oldest_event_seconds",
            "Age of the oldest notification not delivered yet (0: none waits)",
            value=depth.oldest_seconds,
        )
        statuses = GaugeMetricFamily("fhirsrv_subscriptions", "Subscriptions, by status", labels=["status"])
        for status in ("requested", "active", "error", "off"):
            statuses.add_metric([status], depth.subscriptions.get(status, 0))
        yield statuses
        success.add_metric([], 1)
        yield success


def install(app: Flask, services: Services, probe: Engine) -> Metrics:
    """`probe`: an engine for probes (storage/engine.py `probe_engine`), which reads the outbox."""
    settings = services.settings
    _check_multiprocess(settings)
    metrics = Metrics(settings.prometheus_multiproc_dir)
    metrics.watch_pool(services.engine)
    outbox = OutboxCollector(probe)
    subscriptions = SubscriptionCollector(probe)
    if metrics.registry is not None:
        metrics.registry.register(outbox)
        metrics.registry.register(subscriptions)
    networks = metrics_networks(settings.metrics_allow)

    @app.after_request
    def _count(response: Response) -> Response:
        facts = request_facts.describe()
        metrics.observe(
            facts.interaction, facts.resource_type, response.status_code, request_facts.elapsed_seconds()
        )
        return response

    @unguarded
    def scrape() -> Response:
        refusal = _refusal(settings, networks)
        if refusal is not None:
            return refusal
        response = Response(metrics.scrape(outbox, subscriptions), status=200, content_type=CONTENT_TYPE_LATEST)
        response.headers["Cache-Control"] = "no-store"
        return response

    app.add_url_rule("/metrics", "metrics", scrape, methods=["GET"])
    request_facts.name_endpoint(app, "metrics", "metrics")
    app.extensions["fhirsrv.metrics"] = metrics
    return metrics


def _refusal(settings: Settings, networks: tuple[Network, ...]) -> Response | None:
    """None when the caller may read the metrics; else 404 (no access configured) or 403."""
    token = settings.metrics_token
    if not token and not networks:
        return outcome.respond(
            404,
            [
                Issue(
                    "error",
                    "not-found",
                    f"Metrics are not enabled on this server ({VARIABLES['metrics_token']} or "
                    f"{VARIABLES['metrics_allow']})",
                )
            ],
        )
    if token and _bearer_matches(token):
        return None
    if networks and _address_in(networks):
        return None
    return outcome.respond(403, [Issue("error", "forbidden", "This caller may not read the metrics")])


def _bearer_matches(token: str) -> bool:
    scheme, _, given = current_request().headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _address_in(networks: tuple[Network, ...]) -> bool:
    """The client's address (the trusted proxy's word for it, FHIRSRV_TRUSTED_PROXIES), with an
    IPv4 address seen through an IPv6 socket (::ffff:10.0.0.1) taken as the IPv4 one."""
    try:
        address = ipaddress.ip_address(current_request().remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == network.version and address in network for network in networks)


def _check_multiprocess(settings: Settings) -> None:
    """prometheus-client chose its mode when first imported, from the same variable: a process
    whose settings say otherwise would count in memory and scrape empty files (or the reverse)."""
    directory = settings.prometheus_multiproc_dir
    variable = VARIABLES["prometheus_multiproc_dir"]
    in_files = values.ValueClass is not values.MutexValue
    if bool(directory) != in_files:
        raise SettingsError(f"{variable} must be set (or unset) before the process starts")
    if directory and not Path(directory).is_dir():
        raise SettingsError(f"{variable} must name an existing directory, not {directory!r}")


def worker_exited(pid: int, settings: Settings | None = None) -> None:
    """The live gauges (its pool) of the worker process `pid`, which has exited, stop counting;
    its counters still add up."""
    directory = (settings or Settings.from_env()).prometheus_multiproc_dir
    if directory:
        multiprocess.mark_process_dead(pid, directory)


# prometheus-client's files of a process's live gauges: gauge_livesum_123.db, gauge_liveall_123.db...
_LIVE_GAUGE_FILES = "gauge_live*_*.db"


def retire_exited_workers(settings: Settings) -> None:
    """`worker_exited` for every process whose live gauges are in the shared directory and that
    no longer runs. For a multi-process server with no hook on a worker's exit (granian): each
    worker calls it as it starts, after the one it replaces has gone, and each scrape does."""
    if settings.prometheus_multiproc_dir:
        _retire_exited(settings.prometheus_multiproc_dir)


def _retire_exited(directory: str) -> None:
    for path in Path(directory).glob(_LIVE_GAUGE_FILES):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            multiprocess.mark_process_dead(int(pid), directory)


def _running(pid: int) -> bool:
    """Whether process `pid` runs: it exists, and on Linux is not a zombie (a worker that died
    and that its parent has not reaped yet)."""
    try:
        os.kill(pid, 0)  # no signal sent: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process now holds the number
        return True
    try:  # "pid (name) state ...": the name may hold spaces and parentheses
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux)
        return True
