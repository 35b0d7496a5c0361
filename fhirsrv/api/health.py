"""`/healthz` and `/readyz`, for load balancers and orchestrators.

- `/healthz`: the process is up and answers HTTP; it touches nothing else (a database outage
  must not get every process restarted, which would not bring the database back).
- `/readyz`: the process can serve: the database answers and its schema is the one this code
  was written for (Alembic's head). Else 503 with `Retry-After` and a short fixed reason, never
  a driver's message (hosts, ports) nor a stack trace.

Both sit outside `/fhir` and outside the access layer (api/caller.py `unguarded`): no token, no
rate limit, so a probe never spends the budget it shares with the clients behind the same
address and a 429 is never read as "down". What keeps an unmetered `/readyz` cheap: one
statement (`SELECT version_num FROM alembic_version` says both that the database answers and
where its schema is), on a connection of its own, bounded by short timeouts
(storage/engine.py `probe_engine`), and at most one probe a second per process: a verdict is
reused for VERDICT_REUSE_SECONDS, and while a probe runs, others get the last verdict at once
rather than a worker thread each waiting on a database that hangs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from fhirsrv.api import request_facts
from fhirsrv.api.caller import unguarded
from fhirsrv.storage.faults import RETRY_AFTER_SECONDS, unavailability
from fhirsrv.storage.migrate import head_revisions, known_revisions, stored_revisions

log = logging.getLogger("fhirsrv.health")

VERDICT_REUSE_SECONDS = 1.0
READY = "ready"
BEHIND = "the database schema is behind this server's: run `fhirsrv db upgrade`"
FOREIGN = "the database schema is not one this server knows (migrated by a newer version?)"
NO_REVISION = "the database has no schema revision this server can read"


@dataclass(frozen=True)
class Verdict:
    ready: bool
    reason: str
    at: float


class Readiness:
    """Whether the database answers and is at `heads`; one probe at a time, reused briefly."""

    def __init__(
        self,
        engine: Engine,
        heads: frozenset[str],
        known: frozenset[str],
        reuse_seconds: float = VERDICT_REUSE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.heads = heads
        self.known = known
        self.reuse_seconds = reuse_seconds
        self.clock = clock
        self._last: Verdict | None = None
        self._probing = threading.Lock()

    def verdict(self) -> Verdict:
        last = self._last
        if last is not None and self.clock() - last.at < self.reuse_seconds:
            return last
        # Someone is probing already: the last verdict now, rather than one more thread waiting.
        if not self._probing.acquire(blocking=last is None):
            return last  # type: ignore[return-value]  # not None: blocking when it is
        try:
            last = self._last
            if last is not None and self.clock() - last.at < self.reuse_seconds:
                return last  # probed meanwhile
            verdict = self._probe()
            if last is None or last.ready != verdict.ready:
                log.log(logging.INFO if verdict.ready else logging.WARNING, "readiness: %s", verdict.reason)
            self._last = verdict
            return verdict
        finally:
            self._probing.release()

    def _probe(self) -> Verdict:
        try:
            with self.engine.connect() as conn:
                stored = stored_revisions(conn)
        except SQLAlchemyError as exc:
            fault = unavailability(exc)
            return Verdict(False, fault.reason if fault else NO_REVISION, self.clock())
        if stored == self.heads:
            return Verdict(True, READY, self.clock())
        if stored and stored <= self.known:
            return Verdict(False, BEHIND, self.clock())
        return Verdict(False, FOREIGN if stored else NO_REVISION, self.clock())


def install(app: Flask, probe: Engine) -> Readiness:
    """`probe`: an engine for probes (storage/engine.py `probe_engine`), not the requests' pool."""
    readiness = Readiness(probe, head_revisions(), known_revisions())

    @unguarded
    def healthz() -> Response:
        return _plain(200, "ok\n")

    @unguarded
    def readyz() -> Response:
        verdict = readiness.verdict()
        if verdict.ready:
            return _plain(200, "ready\n")
        response = _plain(503, f"not ready: {verdict.reason}\n")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", readyz, methods=["GET"])
    request_facts.name_endpoint(app, "healthz", "health")
    request_facts.name_endpoint(app, "readyz", "readiness")
    app.extensions["fhirsrv.readiness"] = readiness
    return readiness


def _plain(status: int, text: str) -> Response:
    response = Response(text, status=status, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    return response
