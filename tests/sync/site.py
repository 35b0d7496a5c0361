"""What the subscription tests share: a small directory in Finistère (29) and Ille-et-Vilaine
(35), a server with its delivery loop, clients with tokens, and a real HTTP receiver on
loopback whose behaviour a test switches (accept, fail, hang, redirect)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from flask.testing import FlaskClient

from fhirsrv.access.principal import SERVER
from fhirsrv.app import create_app
from fhirsrv.auth.clients import add_client
from fhirsrv.interactions import writes
from fhirsrv.interactions.load import load_initial_content
from fhirsrv.settings import Settings
from fhirsrv.storage import repository
from fhirsrv.sync.delivery import Delivery

CANONICAL = "https://sos.example.org/fhir"
CATEGORY = f"{CANONICAL}/CodeSystem/sos-category"
LIFECYCLE = f"{CANONICAL}/StructureDefinition/sos-entry-lifecycle"
FHIR = "application/fhir+json"
# The issue's own example: pain management offers in Finistère.
CRITERIA = f"HealthcareService?specialty:below={CATEGORY}|douleur&departement=29"
# How long a test waits for something the loop does in milliseconds: a safety margin against a
# loaded machine, never a measure (nothing asserts how fast it happened).
PATIENCE = 60.0
PARTNER_SCOPES = "system/*.rs system/Subscription.cruds"


def lifecycle(status: str) -> list[dict[str, Any]]:
    return [{"url": LIFECYCLE, "extension": [{"url": "status", "valueCode": status}]}]


def organization(oid: str, dep: str, status: str = "published") -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": oid,
        "extension": lifecycle(status),
        "name": f"Structure {oid}",
        "address": [{"city": "Ville", "postalCode": f"{dep}000"}],
    }


def location(lid: str, org: str, postal: str) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": lid,
        "name": f"Site {lid}",
        "address": {"city": "Ville", "postalCode": postal},
        "managingOrganization": {"reference": f"Organization/{org}"},
    }


def service(sid: str, org: str, loc: str, code: str, name: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "HealthcareService",
        "id": sid,
        "extension": lifecycle("published"),
        "name": name or f"Offre {sid}",
        "specialty": [{"coding": [{"system": CATEGORY, "code": code}]}],
        "providedBy": {"reference": f"Organization/{org}"},
        "location": [{"reference": f"Location/{loc}"}],
    }


def directory() -> list[dict[str, Any]]:
    return [
        organization("org29", "29"),
        location("loc29", "org29", "29200"),
        organization("org35", "35"),
        location("loc35", "org35", "35000"),
        organization("org29-draft", "29", status="draft"),
        location("loc29-draft", "org29-draft", "29200"),
        service("hs-a", "org29", "loc29", "douleur-equipe-mobile"),
        service("hs-b", "org29", "loc29", "dietetique-consultation"),
        service("hs-c", "org35", "loc35", "douleur-hypnoanalgesie"),
        service("hs-d", "org29-draft", "loc29-draft", "douleur"),
    ]


def subscription(endpoint: str, criteria: str = CRITERIA, **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Synchroniser les offres douleur du Finistère",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": FHIR, **channel},
    }


def eventually(check: Callable[[], Any], what: str, patience: float = PATIENCE) -> Any:
    """Wait until `check()` is truthy (and return it): the loop works in the background."""
    deadline = time.monotonic() + patience
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for: {what}")
        time.sleep(0.02)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def parameters(self) -> list[dict[str, Any]]:
        return self.body["entry"][0]["resource"]["parameter"]

    def parameter(self, name: str) -> Any:
        for p in self.parameters:
            if p["name"] == name:
                return next(v for k, v in p.items() if k.startswith("value"))
        return None

    @property
    def kind(self) -> str:
        return str(self.parameter("type"))

    @property
    def events(self) -> list[dict[str, Any]]:
        """Each notification-event as {number, focus} with its entry (request, response, resource)."""
        found = []
        entries = {e["fullUrl"]: e for e in self.body["entry"][1:]}
        for p in self.parameters:
            if p["name"] != "notification-event":
                continue
            parts = {part["name"]: part for part in p["part"]}
            focus = parts.get("focus", {}).get("valueReference", {}).get("reference")
            found.append(
                {
                    "number": int(parts["event-number"]["valueString"]),
                    "focus": focus,
                    "entry": entries.get(focus),
                }
            )
        return found


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records the notifications it is sent.

    mode: "ok" (200), "fail" (500), "hang" (holds each request until `release` is set, or for
    `hang_seconds`), "redirect" (307 to `redirect_to`)."""

    mode: str = "ok"
    redirect_to: str = ""
    hang_seconds: float = 60.0
    received: list[Received] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                mode = receiver.mode
                if mode == "hang":
                    receiver.holding.set()
                    receiver.release.wait(receiver.hang_seconds)
                    receiver.holding.clear()
                status = {"ok": 200, "fail": 500, "hang": 200, "redirect": 307}[mode]
                if mode == "ok" or (mode == "hang" and receiver.release.is_set()):
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                receiver.answered.append(status)
                try:
                    self.send_response(status)
                    if mode == "redirect":
                        self.send_header("Location", receiver.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the server gave up waiting: it counts as a failed delivery

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.origin}/notify"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def notifications(self) -> list[Received]:
        return [r for r in self.received if r.kind == "event-notification"]

    def handshakes(self) -> list[Received]:
        return [r for r in self.received if r.kind == "handshake"]

    def events(self) -> dict[int, dict[str, Any]]:
        """Every event received, by number (a resent event is the same event)."""
        return {e["number"]: e for r in self.notifications() for e in r.events}


class Site:
    """The server: an app on the test database, its delivery loop, its clients."""

    def __init__(
        self, db_url: str, allowed: str, *, fresh: bool = True, loop: bool = True, **overrides: Any
    ) -> None:
        values: dict[str, Any] = {
            "auth": True,
            "rate_limit_anonymous": 0,
            "rate_limit_client": 0,
            "enforce_sos_profiles": "claimed-only",
            "base_url": "http://fhir.test/fhir",
            "token_lifetime": 3600,
            "subscription_allowed_endpoints": allowed,
            "subscription_poll_seconds": 0.05,
            "subscription_retry_base_seconds": 0.05,
            "subscription_max_retry_seconds": 1,
            "subscription_max_failures": 3,
            "subscription_timeout": 1.0,
            **overrides,
        }
        self.settings = Settings.from_env(database_url=db_url, load_demo=False, **values)
        self.app = create_app(self.settings)
        self.services = self.app.extensions["fhirsrv"]
        self.web: FlaskClient = self.app.test_client()
        if fresh:
            load_initial_content(self.services, demo=False)  # the SOS catalogue, for :below
            with self.services.engine.begin() as conn:
                for res in directory():
                    writes.create(self.services, conn, dict(res), res["id"], actor=SERVER)
        self.delivery: Delivery | None = None
        if loop:
            self.start()

    def start(self, **kwargs: Any) -> Delivery:
        self.delivery = Delivery(self.services, **kwargs)
        self.delivery.start()
        return self.delivery

    def close(self) -> None:
        if self.delivery is not None:
            self.delivery.stop()
        self.services.engine.dispose()

    def client(
        self, name: str, role: str = "partner-reader", scopes: str = PARTNER_SCOPES, **kw: Any
    ) -> dict[str, str]:
        with self.services.engine.begin() as conn:
            client, secret = add_client(conn, name, scopes, role, **kw)
        answer = self.web.post(
            "/fhir/token", data={"grant_type": "client_credentials"}, auth=(client.client_id, secret)
        )
        assert answer.status_code == 200, answer.get_json()
        return {"Authorization": f"Bearer {answer.get_json()['access_token']}", "Content-Type": FHIR}

    def put(self, res: dict[str, Any], headers: dict[str, str], **extra: str) -> dict[str, Any]:
        answer = self.web.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=headers | extra)
        assert answer.status_code in (200, 201), answer.get_json()
        return answer.get_json()

    def current(self, res_type: str, res_id: str) -> dict[str, Any]:
        with self.services.engine.connect() as conn:
            stored = repository.get_current(conn, res_type, res_id)
        assert stored is not None and stored.content is not None
        return json.loads(stored.content)

    def status(self, sid: str, headers: dict[str, str]) -> dict[str, Any]:
        answer = self.web.get(f"/fhir/Subscription/{sid}", headers=headers)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()
