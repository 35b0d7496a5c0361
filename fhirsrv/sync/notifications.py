"""The body of a notification: the R4 notification Bundle of the HL7 Subscriptions R5 Backport
IG (why this shape rather than R4's own: README, "Syncing with the directory").

A Bundle of type `history` whose first entry is the subscription's status (a Parameters
resource, profile backport-subscription-status-r4): the Subscription, its status, the kind of
notification (`handshake` or `event-notification`), `events-since-subscription-start` (the
number of the last event in this notification) and, per event, a `notification-event` with its
`event-number`, `timestamp` and `focus` (the changed entry; not in an `empty` notification).
Then, unless `empty`, one entry per event's entry:
- it matches the criteria now: `request` PUT (POST when it was created), `response` 200/201
  with its version's ETag, and in `full-resource` the version that was matched (`resource`);
- it left them (deleted, no longer visible to the owner, or no longer matching): `request`
  DELETE and no resource; `response.status` is what a read of it by the owner would answer
  now: 410 (deleted), 404 (no longer visible), 200 (still readable, but out of the criteria).
Event numbers follow each other across notifications: a receiver that sees one skip missed
some (dropped after FHIRSRV_SUBSCRIPTION_MAX_QUEUED) and catches up from `_history`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from fhirsrv.storage.jsonfmt import dumps_bytes, format_instant

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
NOTIFICATION_PROFILE = f"{BACKPORT}/backport-subscription-notification-r4"
STATUS_PROFILE = f"{BACKPORT}/backport-subscription-status-r4"


@dataclass(frozen=True)
class Event:
    number: int
    rid: int
    res_type: str
    res_id: str
    version_id: int
    deleted: bool
    matches: bool
    created: bool
    at: datetime


def body(
    *,
    base: str,
    subscription_id: str,
    status: str,
    kind: str,
    events_since_start: int,
    events: Sequence[Event] = (),
    content: str = "empty",
    resources: Mapping[tuple[int, int], str] | None = None,
    now: datetime,
) -> bytes:
    """The notification's JSON. `resources`: the stored JSON of each (rid, version) the owner
    may still read (full-resource); an event whose entry is not there is sent without it."""
    resources = resources or {}
    prefix = f"{base.rstrip('/')}/" if base else ""
    status_id = str(uuid.uuid4())
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{prefix}Subscription/{subscription_id}"}},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)},
    ]
    entries: list[dict[str, Any]] = []
    for event in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": format_instant(event.at)},
        ]
        if content != "empty":
            parts.append(
                {"name": "focus", "valueReference": {"reference": f"{prefix}{event.res_type}/{event.res_id}"}}
            )
            entries.append(_entry(prefix, event, resources.get((event.rid, event.version_id)), content))
        parameters.append({"name": "notification-event", "part": parts})
    status_entry = {
        "fullUrl": f"urn:uuid:{status_id}",
        "resource": {
            "resourceType": "Parameters",
            "id": status_id,
            "meta": {"profile": [STATUS_PROFILE]},
            "parameter": parameters,
        },
        "request": {"method": "GET", "url": f"{prefix}Subscription/{subscription_id}/$status"},
        "response": {"status": "200"},
    }
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": format_instant(now),
        "entry": [status_entry, *entries],
    }
    return dumps_bytes(bundle)


def _entry(prefix: str, event: Event, stored: str | None, content: str) -> dict[str, Any]:
    key = f"{event.res_type}/{event.res_id}"
    entry: dict[str, Any] = {"fullUrl": f"{prefix}{key}"}
    if event.matches and not event.deleted and stored is not None:
        if content == "full-resource":
            entry["resource"] = orjson.Fragment(stored)
        first = event.created
        entry["request"] = {"method": "POST" if first else "PUT", "url": event.res_type if first else key}
        entry["response"] = {"status": "201" if first else "200", "etag": f'W/"{event.version_id}"'}
        return entry
    entry["request"] = {"method": "DELETE", "url": key}
    answer = "410" if event.deleted else ("200" if stored is not None else "404")
    entry["response"] = {"status": answer}
    return entry
