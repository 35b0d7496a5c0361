"""A real HTTP server (waitress, as `fhirsrv serve` runs it) in this process, and a probe of
what the server's other clients see while one client attacks it.

The Flask test client runs a request in the caller's thread: it cannot show that one expensive
request stalls everybody else (a regex holding the GIL, a worker thread busy for minutes). Here
the attack and the probes are real HTTP requests to the same server, on different connections.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from waitress.server import create_server

# A probe that waits longer than this is a stalled server (idle, /metadata answers in ms). A
# safety margin, not a timing assertion: nothing in these tests measures how fast anything is.
PROBE_TIMEOUT = 10.0
# How long an attack may run before the test gives up on it (it then fails).
ATTACK_TIMEOUT = 120.0


@contextmanager
def running(server: Any) -> Iterator[None]:
    """A waitress server run in a thread until the block ends, then closed. Closing its sockets
    under the loop's select() ends the loop with EBADF: that is the stop, not a fault (left
    unhandled, pytest reported it as an exception in the server's thread)."""
    closing = threading.Event()

    def run() -> None:
        try:
            server.run()
        except OSError:
            if not closing.is_set():
                raise

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        yield
    finally:
        closing.set()
        server.close()
        runner.join(timeout=30)


@contextmanager
def serving(app: Flask, threads: int = 4) -> Iterator[str]:
    """The app served on a free port of 127.0.0.1; yields its base URL (…/fhir)."""
    server = create_server(app, host="127.0.0.1", port=0, threads=threads)
    with running(server):
        yield f"http://127.0.0.1:{server.effective_port}/fhir"


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


def call(method: str, url: str, body: Any = None, timeout: float = ATTACK_TIMEOUT) -> Answer:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/fhir+json")
    if data is not None:
        request.add_header("Content-Type", "application/fhir+json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read(), dict(error.headers))


@dataclass
class Probed:
    """The attack's answer (None: it did not finish in time) and what the probes saw."""

    attack: Answer | None
    probes: int
    failures: list[str]


def probe_during(base_url: str, attack: Callable[[], Answer], minimum_probes: int = 3) -> Probed:
    """Run `attack` in a thread and ask /metadata, one request after the other, until it ends.

    A probe that fails or waits more than PROBE_TIMEOUT is recorded as a failure; at least
    `minimum_probes` are made, so a fast attack is still probed while it runs (or just after)."""
    outcome: list[Answer] = []
    worker = threading.Thread(target=lambda: outcome.append(attack()), daemon=True)
    worker.start()
    failures: list[str] = []
    probes = 0
    deadline = time.monotonic() + ATTACK_TIMEOUT
    while (worker.is_alive() or probes < minimum_probes) and time.monotonic() < deadline:
        probes += 1
        try:
            answer = call("GET", f"{base_url}/metadata", timeout=PROBE_TIMEOUT)
            if answer.status != 200:
                failures.append(f"/metadata answered {answer.status}")
        except OSError as error:  # a timeout included
            failures.append(f"/metadata did not answer: {error}")
    worker.join(timeout=1)
    return Probed(outcome[0] if outcome else None, probes, failures)
