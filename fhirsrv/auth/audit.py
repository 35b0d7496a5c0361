"""An AuditEvent for every write, stored in the same transaction as the write itself.

So there is never a change without its trace, nor a trace of a change that was rolled back.
Only successful writes reach a write hook, hence outcome 0 (success); refused writes are
answered with an OperationOutcome and leave the database untouched.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import has_request_context, request
from sqlalchemy import Connection

from fhirsrv.interactions.context import Services, current_principal
from fhirsrv.storage import repository
from fhirsrv.storage.jsonfmt import format_instant, loads
from fhirsrv.storage.repository import StoredResource

_ACTIONS = {
    "create": ("C", "create"),
    "update": ("U", "update"),
    "patch": ("U", "patch"),
    "delete": ("D", "delete"),
}
CLIENT_SYSTEM = "https://sos.example.org/fhir/sid/oauth-client"


def _agent() -> dict[str, Any]:
    principal = current_principal.get()
    if principal is None:
        agent: dict[str, Any] = {"who": {"display": "fhirsrv (server process)"}, "requestor": False}
    else:
        agent = {
            "type": {"text": principal.role},
            "who": {
                "identifier": {"system": CLIENT_SYSTEM, "value": principal.client_id},
                "display": principal.label(),
            },
            "requestor": True,
        }
    if has_request_context() and request.remote_addr:
        agent["network"] = {"address": request.remote_addr, "type": "2"}
    return agent


def audit_event(stored: StoredResource, method: str | None = None) -> dict[str, Any]:
    action, interaction = _ACTIONS.get(method or stored.method, ("E", stored.method or "operation"))
    return {
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
        "action": action,
        "recorded": format_instant(stored.last_updated),
        "outcome": "0",
        "agent": [_agent()],
        "source": {"observer": {"display": "fhirsrv"}},
        "entity": [
            {"what": {"reference": f"{stored.res_type}/{stored.res_id}/_history/{stored.version_id}"}}
        ],
    }


def make_audit_hook(services: Services) -> Any:
    def audit_hook(conn: Connection, stored: StoredResource, res: dict[str, Any] | None) -> None:
        if stored.res_type == "AuditEvent":
            return
        event = repository.create(conn, audit_event(stored), str(uuid.uuid4()))
        services.search.index(conn, event, loads(event.content or "{}"))

    return audit_hook
