"""R4 Subscription resources (channel rest-hook): what a client may write, and what the server
keeps for itself in them.

Checked on every create and update (the write path's rule for the type, context.ResourceRule),
so a Subscription that is stored is one the delivery loop can work with:
- `criteria` is a search of a type of the directory (`HealthcareService?specialty:below=…|douleur&
  departement=29`), parsed and compiled by the search engine itself, under the writer's access:
  the loop later runs exactly that search, as its owner, to decide what notifies. An unknown
  parameter or a malformed value is a 400, as the same search would be; a type one may not
  subscribe to (Subscription, AuditEvent) a 422; a type the owner may not search a 403;
- `channel.type` is `rest-hook` (the only channel this server delivers): others are 422;
- `channel.endpoint` passes the network rules (sync/endpoints.py), else 422 saying why;
- `channel.payload` is `application/fhir+json` (the changed resource in the notification) or
  absent (an empty notification); the Backport IG's extension on it may ask for `id-only`;
- `channel.header` lines are HTTP header fields a delivery can send (no line breaks, none of
  the headers the server sets itself).
`status` and `error` are the server's: a new Subscription is `requested` (the delivery loop's
handshake makes it `active`, repeated failures `error` with the reason in `error`); a client
may set `off` (no more notifications) and, from `off`, ask again (`requested`). An update that
changes where or what is notified asks for a new handshake; any other keeps the status the
server set. The `error` a client writes is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Connection

from fhirsrv.access.principal import Principal, Role
from fhirsrv.errors import BadRequest, BusinessRuleViolation, FhirError
from fhirsrv.interactions.context import Services
from fhirsrv.resource_types import OWNED_TYPES, SERVER_WRITTEN_TYPES, SUPPORTED_TYPES
from fhirsrv.settings import allowed_origins
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.repository import StoredResource
from fhirsrv.sync import endpoints
from fhirsrv.sync.endpoints import Resolver

TYPE = "Subscription"
# The delivery loop's own writes (status, error): the only writer whose status is taken as
# written. A principal of its own, so that no client, not even with authorization off (every
# caller is then SERVER), can set a Subscription `active`.
DELIVERY = Principal(Role.SERVER, name="fhirsrv (subscription delivery)")

STATUSES = ("requested", "active", "error", "off")
FHIR_JSON = "application/fhir+json"
# HL7 Subscriptions R5 Backport IG: how much of the resource a notification carries.
PAYLOAD_CONTENT_URL = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
)
CONTENTS = ("empty", "id-only", "full-resource")
# Search parameters that shape an answer rather than select entries: meaningless in criteria.
_NOT_CRITERIA = frozenset(
    {
        "_sort", "_count", "_include", "_revinclude", "_summary", "_elements", "_total", "_cursor",
        "_format", "_pretty", "_type", "_contained", "_containedType",
    }
)  # fmt: skip
# RFC 9110 field-name (a token), then the value without line breaks.
_HEADER = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n\x00]*)$")
# Headers a delivery sets itself, or that would change how the message is framed or routed.
_OWN_HEADERS = frozenset(
    {
        "host", "content-type", "content-length", "transfer-encoding", "connection", "keep-alive",
        "te", "trailer", "upgrade", "expect", "user-agent", "accept", "proxy-authorization",
        "proxy-connection",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Criteria:
    res_type: str
    params: tuple[tuple[str, str], ...]
    text: str


@dataclass(frozen=True)
class Channel:
    endpoint: str
    content: str  # empty | id-only | full-resource
    headers: tuple[tuple[str, str], ...]


def parse_criteria(text: Any) -> Criteria:
    """`Type?query` (or `Type` alone: every entry of the type) as a search the engine can run.
    Raises BadRequest (400) for what the same search would refuse, BusinessRuleViolation (422)
    for a type one cannot subscribe to."""
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("Subscription.criteria is empty: it is a search, e.g. HealthcareService?name=douleur",
                         expression=["Subscription.criteria"])  # fmt: skip
    text = text.strip()
    res_type, _, query = text.partition("?")
    res_type = res_type.strip().lstrip("/")
    if res_type not in SUPPORTED_TYPES:
        raise BadRequest(
            f"Subscription.criteria names '{res_type[:64]}', which is not a resource type of this server",
            expression=["Subscription.criteria"],
        )
    if res_type in OWNED_TYPES or res_type in SERVER_WRITTEN_TYPES:
        raise BusinessRuleViolation(
            f"Subscription.criteria: {res_type} resources cannot be subscribed to (the directory's "
            "entries and its conformance and terminology content can)",
            expression=["Subscription.criteria"],
        )
    params = tuple(parse_qsl(query, keep_blank_values=True))
    shaping = sorted({name for name, _ in params if name.split(":", 1)[0] in _NOT_CRITERIA})
    if shaping:
        raise BadRequest(
            f"Subscription.criteria: {', '.join(shaping)} shape a search's answer and select nothing; "
            "criteria keep the parameters that select entries",
            expression=["Subscription.criteria"],
        )
    return Criteria(res_type, params, text)


def read_channel(res: dict[str, Any]) -> Channel:
    """The channel of a stored (checked) Subscription."""
    channel = res.get("channel") or {}
    return Channel(str(channel.get("endpoint") or ""), _content(channel), tuple(_headers(channel)))


def _content(channel: dict[str, Any]) -> str:
    asked = None
    for ext in (channel.get("_payload") or {}).get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == PAYLOAD_CONTENT_URL:
            asked = ext.get("valueCode")
    if asked is not None:
        return str(asked)
    return "full-resource" if channel.get("payload") else "empty"


def _headers(channel: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for line in channel.get("header") or []:
        match = _HEADER.match(line) if isinstance(line, str) else None
        if match:
            found.append((match.group(1), match.group(2).strip()))
    return found


def rule(
    services: Services,
    conn: Connection,
    actor: Principal,
    current: StoredResource | None,
    res: dict[str, Any],
) -> dict[str, Any]:
    """The write path's rule for Subscription (context.ResourceRule)."""
    if actor is DELIVERY:
        return res
    criteria = parse_criteria(res.get("criteria"))
    _check_criteria(services, conn, actor, criteria)
    _check_channel(services, res.get("channel"))
    previous = (
        loads(current.content) if current is not None and current.content and not current.deleted else None
    )
    return _with_status(res, previous)


def _check_criteria(services: Services, conn: Connection, actor: Principal, criteria: Criteria) -> None:
    """Compiled by the search engine as the writer's search: what it would refuse, the write
    refuses, with the same words."""
    services.policy.check_read(actor, criteria.res_type, "s")
    try:
        services.search.matching(
            conn, criteria.res_type, list(criteria.params), services.policy.scope(actor), ()
        )
    except FhirError as exc:
        issue = exc.issues[0] if exc.issues else None
        # The engine's hint about lenient handling is for searches: criteria are always strict.
        said = exc.diagnostics.replace("; 'Prefer: handling=lenient' ignores unknown parameters", "")
        raise type(exc)(
            f"Subscription.criteria: {said}",
            status=exc.status,
            code=issue.code if issue else None,
            expression=["Subscription.criteria"],
        ) from exc


def _check_channel(services: Services, channel: Any, resolve: Resolver | None = None) -> None:
    if not isinstance(channel, dict):
        raise BusinessRuleViolation("Subscription.channel is required", expression=["Subscription.channel"])
    if channel.get("type") != "rest-hook":
        raise BusinessRuleViolation(
            f"Subscription.channel.type '{channel.get('type')}' is not delivered by this server: it "
            "sends rest-hook notifications only",
            expression=["Subscription.channel.type"],
        )
    try:
        endpoints.check(
            channel.get("endpoint") or "",
            allowed_origins(services.settings.subscription_allowed_endpoints),
            resolve or endpoints.system_resolver,
            resolve_allowed=False,
        )
    except endpoints.EndpointRefused as exc:
        raise BusinessRuleViolation(
            f"Subscription.channel.endpoint: {exc}", expression=["Subscription.channel.endpoint"]
        ) from None
    payload = channel.get("payload")
    if payload is not None and str(payload).split(";", 1)[0].strip().lower() != FHIR_JSON:
        raise BusinessRuleViolation(
            f"Subscription.channel.payload '{str(payload)[:80]}' is not sent by this server: "
            f"{FHIR_JSON} (the resource in the notification) or none (an empty notification)",
            expression=["Subscription.channel.payload"],
        )
    content = _content(channel)
    if content not in CONTENTS:
        raise BusinessRuleViolation(
            f"Subscription.channel.payload: the payload content '{content}' is not one of {', '.join(CONTENTS)}",
            expression=["Subscription.channel.payload"],
        )
    if content != "empty" and payload is None:
        raise BusinessRuleViolation(
            f"Subscription.channel.payload: {content} needs the payload {FHIR_JSON}",
            expression=["Subscription.channel.payload"],
        )
    for position, line in enumerate(channel.get("header") or []):
        match = _HEADER.match(line) if isinstance(line, str) else None
        where = [f"Subscription.channel.header[{position}]"]
        if match is None:
            # Never quoted back: a header line often holds a secret (Authorization: Bearer ...).
            raise BusinessRuleViolation(
                "Subscription.channel.header: each line is one HTTP header, 'Name: value', without line breaks",
                expression=where,
            )
        if match.group(1).lower() in _OWN_HEADERS:
            raise BusinessRuleViolation(
                f"Subscription.channel.header: {match.group(1)} is set by the server itself", expression=where
            )


def _with_status(res: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """`status` and `error` as the server keeps them (module docstring)."""
    asked = res.get("status")
    if asked not in STATUSES:
        raise BadRequest(
            f"Subscription.status is one of {', '.join(STATUSES)}", expression=["Subscription.status"]
        )
    kept = {k: v for k, v in res.items() if k != "error"}
    if asked == "off":
        return {**kept, "status": "off"}
    if previous is None or previous.get("status") in ("off", None) or _delivery_changed(previous, res):
        return {**kept, "status": "requested"}
    kept["status"] = previous.get("status")
    if previous.get("error"):
        kept["error"] = previous["error"]
    return kept


def _delivery_changed(previous: dict[str, Any], res: dict[str, Any]) -> bool:
    """Whether what is notified, or where, changed: the receiver is asked again (handshake)."""
    return previous.get("criteria") != res.get("criteria") or previous.get("channel") != res.get("channel")
