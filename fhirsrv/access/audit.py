"""The audit trail: an AuditEvent for every write, and for every refused attempt.

A successful write's event is stored in the write's own transaction, so there is never a
change without its trace, nor a trace of a change that was rolled back. A refused attempt's
event is written after the refused request's transaction has ended (on SQLite a second writer
would wait for the first), with outcome 4 (minor failure) and the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine

from fhirsrv.access.principal import Principal, Role
from fhirsrv.canonical import Canonicals
from fhirsrv.storage import repository
from fhirsrv.storage.engine import write_transaction
from fhirsrv.storage.jsonfmt import format_instant, loads, utcnow
from fhirsrv.storage.repository import StoredResource

_ACTIONS = {
    "create": ("C", "create"),
    "update": ("U", "update"),
    "patch": ("U", "patch"),
    "delete": ("D", "delete"),
}
# What the index of AuditEvents needs: the search engine's `index` for one resource.
Indexer = Callable[[Connection, StoredResource, dict[str, Any]], None]


class AuditTrail:
    def __init__(self, canonicals: Canonicals, index: Indexer, *, enabled: bool) -> None:
        self.client_system = canonicals.oauth_client
        self.index = index
        # Off only with authorization off: every caller is then the same anonymous "server".
        self.enabled = enabled

    def _agent(self, principal: Principal) -> dict[str, Any]:
        if not principal.client_id:
            agent: dict[str, Any] = {"who": {"display": principal.label()}, "requestor": not principal.is_anonymous}
            if principal.is_anonymous:
                agent["who"] = {"display": "anonymous caller"}
                agent["requestor"] = True
        else:
            agent = {
                "type": {"text": str(principal.role)},
                "who": {
                    "identifier": {"system": self.client_system, "value": principal.client_id},
                    "display": principal.label(),
                },
                "requestor": True,
            }
        if principal.address:
            agent["network"] = {"address": principal.address, "type": "2"}
        return agent

    def event(self, stored: StoredResource, principal: Principal, method: str | None = None) -> dict[str, Any]:
        action, interaction = _ACTIONS.get(method or stored.method, ("E", stored.method or "operation"))
        return {
            "resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
            "action": action,
            "recorded": format_instant(stored.last_updated),
            "outcome": "0",
            "agent": [self._agent(principal)],
            "source": {"observer": {"display": "fhirsrv"}},
            "entity": [
                {"what": {"reference": f"{stored.res_type}/{stored.res_id}/_history/{stored.version_id}"}}
            ],
        }

    def written(self, conn: Connection, stored: StoredResource, principal: Principal) -> None:
        """The event of a write, in the write's transaction. The server's own writes (file
        loads, the demo) are traced by the command that ran them, not one event a resource."""
        if not self.enabled or stored.res_type == "AuditEvent" or principal.role is Role.SERVER:
            return
        self._store(conn, self.event(stored, principal))

    def transition(
        self, conn: Connection, stored: StoredResource, principal: Principal, operation: str, source: str, target: str
    ) -> None:
        """A step of the inclusion procedure, beside the version it made: the operation and the
        statuses it moved between, whoever made it (the server's sweep included)."""
        event = self.event(stored, principal, "update")
        event["subtype"] = [{"system": "http://hl7.org/fhir/restful-interaction", "code": "operation"}]
        event["action"] = "E"
        event["outcomeDesc"] = f"${operation}: {source or 'none'} -> {target}"
        event["entity"][0]["description"] = f"${operation}"
        if self.enabled:
            self._store(conn, event)

    def repair(self, conn: Connection, stored: StoredResource, principal: Principal, reason: str) -> None:
        """A lifecycle record changed by hand (X-Lifecycle-Repair), beside the version it made."""
        if not self.enabled:
            return
        event = self.event(stored, principal)
        event["outcomeDesc"] = f"lifecycle repair: {reason[:500]}"
        self._store(conn, event)

    def refused(
        self,
        engine: Engine,
        principal: Principal,
        interaction: str,
        target: str,
        reason: str,
    ) -> None:
        """The event of a refused attempt (401, 403), in a transaction of its own.

        `target` is what the request named ("HealthcareService/x", or a type): never stored
        content, so the trail itself leaks nothing the caller could not see."""
        if not self.enabled:
            return
        action = {"create": "C", "update": "U", "patch": "U", "delete": "D"}.get(interaction, "E")
        code = interaction if interaction in ("create", "update", "patch", "delete") else "operation"
        event = {
            "resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": code}],
            "action": action,
            "recorded": format_instant(utcnow()),
            "outcome": "4",
            "outcomeDesc": (f"{interaction}: " if code == "operation" else "") + reason[:1000],
            "agent": [self._agent(principal)],
            "source": {"observer": {"display": "fhirsrv"}},
            "entity": [{"what": {"display": target[:200]}}],
        }
        with write_transaction(engine) as conn:
            self._store(conn, event)

    def _store(self, conn: Connection, event: dict[str, Any]) -> None:
        stored = repository.create(conn, event, str(uuid.uuid4()))
        self.index(conn, stored, loads(stored.content or "{}"))
