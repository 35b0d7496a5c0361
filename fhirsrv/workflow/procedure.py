"""The inclusion procedure's transitions: who may move a structure from which status to which,
and what moves with it.

The unit is the structure (Organization): a transition changes its status, and in the same
transaction the status of its offers, places, roles and endpoints that carry one (an offer
withdrawn on its own stays withdrawn), so a reader never sees half an entry. `active` follows
(a place without a record of its own gets its Location.status: inactive once delisted or
withdrawn, active once published): a care plan still reads a delisted entry by id, and must not
take it for an open one. Every transition
makes a new version (the record travels in the lifecycle extension, so `_history` shows who
changed what and when), writes an AuditEvent, and queues its messages in the outbox of the
same transaction. A refusal changes nothing: 403 for a caller who may not, 409 for a status
the transition does not start from, 422 for an incomplete application.

    draft ──$submit──▶ submitted ──$validate-territory──▶ territorial-validated ──$publish──▶ published
      ▲                   │  ▲                                   │                              │  ▲
      └──(amend)── rejected ◀──────────$reject───────────────────┘            sweep (12 months) │  │ $attest
                                                                                                ▼  │
                           withdrawn ◀──$withdraw── (any)          delisted ◀── sweep (2 months) ── verification-pending
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, select

from fhirsrv.access.facts import DIRECTORY_TYPES
from fhirsrv.access.principal import SERVER, Principal, Role
from fhirsrv.errors import Conflict, Forbidden, NotFound
from fhirsrv.interactions import writes
from fhirsrv.interactions.context import Services
from fhirsrv.storage import repository
from fhirsrv.storage.jsonfmt import loads
from fhirsrv.storage.repository import StoredResource
from fhirsrv.storage.schema import entry_access, live, resource, structure_territory
from fhirsrv.workflow import outbox
from fhirsrv.workflow.lifecycle import HAS_ACTIVE, HAS_STATUS, Lifecycle
from fhirsrv.workflow.tables import application

# The structure type the 3C validate; the DAC validate every other one.
AUTHORISED_ESTABLISHMENT = "etablissement-sante-autorise"
OPEN = ("draft", "submitted", "territorial-validated", "published", "verification-pending", "rejected")


@dataclass(frozen=True)
class Transition:
    name: str
    sources: tuple[str, ...]
    target: str
    roles: tuple[Role, ...]

    def describe(self) -> str:
        return f"${self.name} moves an entry from {', '.join(self.sources)} to {self.target}"


TRANSITIONS = {
    t.name: t
    for t in (
        Transition("submit", ("draft", "rejected"), "submitted", (Role.STRUCTURE_REFERENT, Role.REGIONAL_ADMIN)),
        Transition(
            "validate-territory", ("submitted",), "territorial-validated", (Role.TERRITORIAL_ADMIN, Role.REGIONAL_ADMIN)
        ),
        Transition("publish", ("territorial-validated",), "published", (Role.REGIONAL_ADMIN,)),
        Transition(
            "reject", ("submitted", "territorial-validated"), "rejected", (Role.TERRITORIAL_ADMIN, Role.REGIONAL_ADMIN)
        ),
        Transition(
            "withdraw",
            OPEN,
            "withdrawn",
            (Role.STRUCTURE_REFERENT, Role.TERRITORIAL_ADMIN, Role.REGIONAL_ADMIN),
        ),
        Transition("attest", ("published", "verification-pending"), "published", (Role.STRUCTURE_REFERENT,)),
        # The sweep's own moves (the server, never a client).
        Transition("request-verification", ("published",), "verification-pending", (Role.SERVER,)),
        Transition("delist", ("verification-pending",), "delisted", (Role.SERVER,)),
    )
}
# An offer added to a listed structure goes through the application's steps on its own
# (`apply_to_offer`): the structure met the criteria grid already, the offer needs the
# territory's and the region's validation before it is shown. Its withdrawal is operations.py's.
OFFER_TRANSITIONS = frozenset({"submit", "validate-territory", "publish", "reject"})
# Structures whose new offers are validated one by one: those listed now.
LISTED = ("published", "verification-pending")
# What each of an offer's transitions tells, and to whom.
OFFER_MESSAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "submit": ("offer-submitted", ("territory",)),
    "validate-territory": ("offer-territory-validated", ("region",)),
    "publish": ("offer-published", ("referent",)),
    "reject": ("offer-rejected", ("referent",)),
}
# The transitions of a listed structure's yearly verification: its entries move with it only
# if they were listed with it (`_cascade`).
LISTED_ONLY = frozenset({"attest", "request-verification", "delist"})
# What each transition tells, and to whom ("referent", "territory", "region").
MESSAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "submit": ("submitted", ("territory",)),
    "validate-territory": ("territory-validated", ("region",)),
    "publish": ("published", ("referent",)),
    "reject": ("rejected", ("referent",)),
    "withdraw": ("withdrawn", ("referent", "territory")),
    "delist": ("delisted", ("referent", "territory")),
}


class Procedure:
    def __init__(self, services: Services, lifecycle: Lifecycle) -> None:
        self.services = services
        self.lifecycle = lifecycle

    # ------------------------------------------------------------------------ transitions
    def apply(
        self,
        conn: Connection,
        principal: Principal,
        org_id: str,
        name: str,
        now: datetime,
        *,
        reason: str | None = None,
        check: Callable[[StoredResource], None] | None = None,
        expected_version: int | None = None,
    ) -> StoredResource:
        """Run one transition inside the caller's transaction; raises without writing when refused."""
        transition = TRANSITIONS[name]
        current, org = self._writable(conn, principal, "Organization", org_id)
        self.authorize(conn, principal, transition, org)
        status = self.lifecycle.status(org)
        if status not in transition.sources:
            raise Conflict(
                f"Organization/{org_id} is {status or 'without a status'}: {transition.describe()}",
                code="business-rule",
            )
        if expected_version is not None and current.version_id != expected_version:
            raise Conflict(f"Organization/{org_id} changed since it was read; try again")
        if check is not None:
            check(current)
        parts = self._parts(transition, principal, now, reason)
        updated = self.lifecycle.with_parts(org, **parts)
        # The structure and its entries change visibility once, together, at the end.
        with self.services.policy.facts.deferred(conn):
            stored = writes.replace(self.services, conn, current, updated, "update", actor=principal, validated=True)
            self._cascade(conn, org_id, transition, now, parts)
        self.services.audit.transition(conn, stored, principal, name, status or "", transition.target)
        self._notify(conn, name, org_id, updated, reason, now)
        return stored

    def apply_to_offer(
        self,
        conn: Connection,
        principal: Principal,
        offer_id: str,
        name: str,
        now: datetime,
        *,
        reason: str | None = None,
    ) -> StoredResource:
        """One step of the procedure for an offer drafted after its structure was listed (see
        OFFER_TRANSITIONS), inside the caller's transaction; raises without writing when
        refused. Who may is decided on the structure, as for its own application; the offer's
        own status is the one that moves. An offer of a structure not listed yet moves with
        the structure's application (409 says so)."""
        transition = TRANSITIONS[name]
        target = f"HealthcareService/{offer_id}"
        current, offer = self._writable(conn, principal, "HealthcareService", offer_id)
        org_id = provider_id(offer)
        structure = repository.get_current(conn, "Organization", org_id) if org_id else None
        if structure is None or structure.deleted:
            raise Conflict(f"{target} names no known structure (providedBy)", code="business-rule")
        org = loads(structure.content or "{}")
        self.authorize(conn, principal, transition, org)
        org_status = self.lifecycle.status(org)
        if org_status not in LISTED:
            raise Conflict(
                f"Organization/{org_id} is {org_status or 'without a status'}: its offers move with its own "
                f"application (Organization/{org_id}/${name})",
                code="business-rule",
            )
        status = self.lifecycle.status(offer) if self.lifecycle.has(offer) else org_status
        if status not in transition.sources:
            raise Conflict(f"{target} is {status}: {transition.describe()}", code="business-rule")
        parts = self._parts(transition, principal, now, reason)
        updated = self.lifecycle.with_parts(offer, **parts)
        with self.services.policy.facts.deferred(conn):
            stored = writes.replace(self.services, conn, current, updated, "update", actor=principal, validated=True)
        self.services.audit.transition(conn, stored, principal, name, status or "", transition.target)
        template, audiences = OFFER_MESSAGES[name]
        self.message(
            conn, template, audiences, org_id, org,
            {"offer": str(offer.get("name") or offer_id), "offer_url": f"{self.public_base()}/{target}",
             "reason": reason or ""},
            f"offer-{name}:{offer_id}:{now.isoformat()}",
        )  # fmt: skip
        return stored

    def _writable(
        self, conn: Connection, principal: Principal, res_type: str, res_id: str
    ) -> tuple[StoredResource, dict[str, Any]]:
        """The entry a transition moves, and its content: 404 if unknown; the token's scopes and
        the write perimeter checked first, so no status is told to a caller who could not make
        the change anyway."""
        current = repository.get_current(conn, res_type, res_id)
        if current is None or current.deleted:
            raise NotFound(f"{res_type}/{res_id} is not known")
        self.services.policy.check_write_intent(principal, res_type, "u")
        self.services.policy.check_write_target(conn, principal, current)
        return current, loads(current.content or "{}")

    def _parts(self, transition: Transition, principal: Principal, now: datetime, reason: str | None) -> dict[str, Any]:
        who = principal.label() + (f" [{principal.client_id}]" if principal.client_id else "")
        parts: dict[str, Any] = {"status": transition.target, "statusDate": now, "statusReason": reason}
        if transition.name == "validate-territory":
            parts |= {"territoryValidatedBy": who, "territoryValidatedOn": now}
        elif transition.name == "publish":
            parts |= {"regionValidatedBy": who, "regionValidatedOn": now, "lastVerified": now.date()}
        elif transition.name == "attest":
            parts |= {"lastVerified": now.date(), "verificationRequested": None}
        elif transition.name == "request-verification":
            parts |= {"verificationRequested": now.date()}
        elif transition.name == "submit":
            parts |= {"territoryValidatedBy": None, "territoryValidatedOn": None}
        return parts

    def authorize(self, conn: Connection, principal: Principal, transition: Transition, org: dict[str, Any]) -> None:
        """The transition's own rule, on top of the access policy's write perimeter."""
        if principal.role not in transition.roles:
            allowed = ", ".join(str(r) for r in transition.roles)
            raise Forbidden(f"${transition.name} is for: {allowed}")
        if principal.role is Role.STRUCTURE_REFERENT and org.get("id") != principal.organization:
            raise Forbidden(f"${transition.name}: this client is the referent of another structure")
        if principal.role is Role.TERRITORIAL_ADMIN:
            if not self.services.policy.in_territory(conn, principal, str(org.get("id"))):
                territory = self._territory(conn, str(org.get("id")))
                raise Forbidden(
                    f"${transition.name}: the structure (département(s) {', '.join(sorted(territory)) or 'unknown'}) "
                    "is outside this client's territory"
                )
            kind = "3c" if AUTHORISED_ESTABLISHMENT in structure_types(org) else "dac"
            if principal.kind is not None and principal.kind != kind:
                who = "a 3C (authorised health establishments)" if kind == "3c" else "a DAC (every other structure)"
                raise Forbidden(f"${transition.name}: this structure is validated by {who}")

    def _territory(self, conn: Connection, org_id: str) -> set[str]:
        rows = conn.execute(
            select(structure_territory.c.departement).where(structure_territory.c.structure == org_id)
        )
        return {d for (d,) in rows}

    def _cascade(
        self, conn: Connection, org_id: str, transition: Transition, now: datetime, parts: dict[str, Any]
    ) -> None:
        """The structure's entries follow its status, in the same transaction. A publication is
        written in their records too: an offer's own record then shows it was listed, which
        keeps it citeable by id once it leaves, wherever its content is loaded again (an export
        loaded on another server knows nothing else of its past: access/facts.py)."""
        published = {k: parts[k] for k in ("regionValidatedBy", "regionValidatedOn") if k in parts}
        # The yearly verification's moves concern what was listed with the structure: an offer
        # drafted since then is no part of it, and stays a draft (neither shown by an
        # attestation nor delisted, which would make it citeable, without any validation).
        listed_only = transition.name in LISTED_ONLY
        rows = conn.execute(
            select(resource.c.rid)
            .join(entry_access, entry_access.c.rid == resource.c.rid)
            .where(
                entry_access.c.structure == org_id,
                entry_access.c.res_type.in_([t for t in DIRECTORY_TYPES if t != "Organization"]),
                live(resource),
            )
        )
        for dependent in repository.get_many(conn, [r for (r,) in rows]):
            res = loads(dependent.content or "{}")
            own = self.lifecycle.status(res)
            if own == "withdrawn" and transition.target != "withdrawn":
                continue  # withdrawn on its own: stays so whatever its structure does
            if listed_only and own is not None and own not in transition.sources:
                continue
            if self.lifecycle.has(res):
                if own == transition.target:
                    continue
                updated = self.lifecycle.with_parts(res, status=transition.target, statusDate=now, **published)
            elif res.get("resourceType") in HAS_ACTIVE:
                updated = self.lifecycle.with_parts(res, status=transition.target, statusDate=now, **published)
            elif res.get("resourceType") in HAS_STATUS:
                updated = self.lifecycle.following(res, transition.target)  # a place: its status only
                if updated == res:
                    continue
            else:
                continue
            writes.replace(self.services, conn, dependent, updated, "update", actor=SERVER, validated=True)

    # ------------------------------------------------------------------------- messages
    def _notify(
        self, conn: Connection, name: str, org_id: str, org: dict[str, Any], reason: str | None, now: datetime
    ) -> None:
        if name not in MESSAGES:
            return
        template, audiences = MESSAGES[name]
        self.message(conn, template, audiences, org_id, org, {"reason": reason or ""}, f"{name}:{org_id}:{now.isoformat()}")

    def message(
        self,
        conn: Connection,
        template: str,
        audiences: tuple[str, ...],
        org_id: str,
        org: dict[str, Any],
        extra: dict[str, str],
        dedupe_key: str,
    ) -> bool:
        recipients: list[str] = []
        if "referent" in audiences:
            recipients += self.referent_emails(conn, org_id, org)
        if "territory" in audiences:
            recipients += self.admin_emails(conn, org, territorial=True)
        if "region" in audiences:
            recipients += self.admin_emails(conn, org, territorial=False)
        recipients = sorted(set(recipients))
        if not recipients:
            return False
        context = {
            "structure": str(org.get("name") or org_id),
            "entry_url": f"{self.public_base()}/Organization/{org_id}",
            **extra,
        }
        return outbox.enqueue(
            conn, template=template, recipients=recipients, context=context, entry=f"Organization/{org_id}", dedupe_key=dedupe_key
        )

    def public_base(self) -> str:
        return (self.services.settings.base_url or self.services.settings.canonical_base).rstrip("/")

    def referent_emails(self, conn: Connection, org_id: str, org: dict[str, Any]) -> list[str]:
        row = conn.execute(select(application.c.referent_email).where(application.c.organization == org_id)).first()
        if row is not None:
            return [row.referent_email]
        # Entries that came without an application (the demo, a migration): the structure's address.
        return [t["value"] for t in org.get("telecom") or [] if t.get("system") == "email" and t.get("value")][:1]

    def admin_emails(self, conn: Connection, org: dict[str, Any], *, territorial: bool) -> list[str]:
        from fhirsrv.auth.tables import oauth_client  # the registered clients: auth's table

        rows = conn.execute(
            select(oauth_client.c.email, oauth_client.c.departements, oauth_client.c.communes, oauth_client.c.kind).where(
                oauth_client.c.role == ("territorial-admin" if territorial else "regional-admin"),
                oauth_client.c.revoked.is_(False),
                oauth_client.c.email.is_not(None),
            )
        )
        if not territorial:
            return [r.email for r in rows]
        territory = self._territory(conn, str(org.get("id")))
        kind = "3c" if AUTHORISED_ESTABLISHMENT in structure_types(org) else "dac"
        communes = self._communes(conn, str(org.get("id")))
        return [
            r.email
            for r in rows
            if (territory & set((r.departements or "").split()) or communes & set((r.communes or "").split()))
            and r.kind in (None, kind)
        ]

    def _communes(self, conn: Connection, org_id: str) -> set[str]:
        rows = conn.execute(
            select(entry_access.c.commune).where(
                entry_access.c.structure == org_id,
                entry_access.c.res_type == "Location",
                entry_access.c.commune.is_not(None),
            )
        )
        return {c for (c,) in rows}


def provider_id(offer: dict[str, Any]) -> str | None:
    """The id of the structure an offer names (`providedBy`, a relative reference)."""
    reference = str((offer.get("providedBy") or {}).get("reference") or "")
    kind, _, res_id = reference.rpartition("/")
    return res_id if kind.endswith("Organization") and res_id else None


def structure_types(org: dict[str, Any]) -> set[str]:
    return {
        str(c.get("code"))
        for t in org.get("type") or []
        for c in (t.get("coding") or [])
        if str(c.get("system", "")).endswith("/CodeSystem/sos-structure-type")
    }


def today(now: datetime) -> date:
    return now.date()
