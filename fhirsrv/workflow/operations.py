"""The inclusion procedure as FHIR operations on Organization and HealthcareService (POST, Parameters in, the
updated Organization or an OperationOutcome out).

- `Organization/$apply` (anonymous, rate-limited): a structure's application, stored as a
  draft with its offers, place and referent; a single-use confirmation link is e-mailed.
- `Organization/[id]/$confirm?token=…` (the e-mailed link): confirms the referent's address,
  creates the referent's API client and e-mails its credentials once. The entry stays a draft
  until `$submit` passes the criteria grid.
- `$submit`, `$validate-territory`, `$publish`, `$reject` (reason), `$withdraw`, `$attest`:
  the transitions of procedure.py.
- On HealthcareService: `$submit`, `$validate-territory`, `$publish`, `$reject` for an offer
  added to a structure already listed (the same steps, for the offer alone), and `$withdraw`
  for one offer while its structure stays listed.
Every refusal (401, 403, 404, 409, 422) leaves an AuditEvent and changes nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import func, insert, select, update

from fhirsrv.access.principal import SERVER
from fhirsrv.auth.clients import add_client
from fhirsrv.canonical import Canonicals
from fhirsrv.errors import BadRequest, BusinessRuleViolation, FhirError, Issue, NotFound, TooManyRequests
from fhirsrv.interactions import writes
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.operations import OperationCall, operation
from fhirsrv.interactions.read import served
from fhirsrv.storage.engine import write_transaction
from fhirsrv.storage.jsonfmt import utcnow
from fhirsrv.storage.repository import StoredResource
from fhirsrv.workflow import outbox
from fhirsrv.workflow.forms import Application, FieldError, parse_application
from fhirsrv.workflow.grid import check_grid
from fhirsrv.workflow.lifecycle import Lifecycle
from fhirsrv.workflow.procedure import Procedure
from fhirsrv.workflow.tables import application

SPEC = "urn:fhirsrv:operation:"
CONFIRMATION_DAYS = 7
# Applications per caller address and hour: an open form is a target for floods.
APPLICATIONS_PER_HOUR = 5
REFERENT_SCOPES = (
    "system/Organization.rus system/HealthcareService.crus system/Location.crus "
    "system/PractitionerRole.crus system/Practitioner.crus system/Endpoint.crus"
)


def _procedure(services: Services) -> Procedure:
    return Procedure(services, Lifecycle(Canonicals(services.settings.canonical_base)))


def _issues(errors: list[FieldError]) -> list[Issue]:
    return [Issue("error", "required" if "obligatoire" in e.message else "invalid", e.message, [e.expression]) for e in errors]


def _transition(
    services: Services, info: RequestInfo, call: OperationCall, name: str, res_type: str = "Organization", **kw: Any
) -> Result:
    """One step of the procedure on an Organization (the structure and its entries), or on a
    HealthcareService added to a listed structure (procedure.py, `apply_to_offer`); a refusal
    audited."""
    procedure = _procedure(services)
    apply = procedure.apply if res_type == "Organization" else procedure.apply_to_offer
    res_id = str(call.res_id)
    try:
        with write_transaction(services.engine) as conn:
            stored = apply(conn, info.principal, res_id, name, utcnow(), **kw)
    except FhirError as refusal:
        services.audit.refused(services.engine, info.principal, f"${name}", f"{res_type}/{res_id}", refusal.diagnostics)
        raise
    return served(stored)


def _transition_op(name: str, doc: str, res_type: str = "Organization"):  # type: ignore[no-untyped-def]
    def run(services: Services, info: RequestInfo, call: OperationCall) -> Result:
        return _transition(services, info, call, name, res_type)

    run.__doc__ = doc
    definition = SPEC + name + ("" if res_type == "Organization" else "-offer")
    return operation(
        name, types=(res_type,), type_level=False, instance_level=True, affects_state=True,
        definition=definition, guard="write",
    )(run)  # fmt: skip


validate_territory = _transition_op(
    "validate-territory", "Territorial validation (3C or DAC of the structure's territory): submitted to territorial-validated."
)
publish = _transition_op(
    "publish", "Regional validation (DSRC): publishes the structure and its entries in one transaction."
)
withdraw = _transition_op("withdraw", "The structure (or an administrator) withdraws the entry.")
attest = _transition_op("attest", "The referent attests the entry is still right: a new verification date.")


@operation(
    "reject", types=("Organization",), type_level=False, instance_level=True, affects_state=True,
    definition=SPEC + "reject", guard="write",
)  # fmt: skip
def reject(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """Refuse a submitted or territorially validated application, with a reason sent to the referent."""
    reason = _rejection_reason(services, info, call, f"Organization/{call.res_id}")
    return _transition(services, info, call, "reject", reason=reason)


def _rejection_reason(services: Services, info: RequestInfo, call: OperationCall, target: str) -> str:
    """A $reject's reason, for the referent's e-mail: without one, 400 (audited)."""
    reason = (call.string("reason") or "").strip()
    if not reason:
        error = BadRequest("$reject needs a 'reason' (sent to the structure's referent)", expression=["Parameters.parameter.where(name='reason')"])
        services.audit.refused(services.engine, info.principal, "$reject", target, error.diagnostics)
        raise error
    return reason


@operation(
    "submit", types=("Organization",), type_level=False, instance_level=True, affects_state=True,
    definition=SPEC + "submit", guard="write",
)  # fmt: skip
def submit(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """The referent submits the application: every criterion of the grid must hold (422 names each one that does not)."""
    answers = call.all("criterion")

    def grid(current: StoredResource) -> None:
        errors = check_grid(answers, utcnow().date())
        if errors:
            raise BusinessRuleViolation(
                f"The application does not meet {len(errors)} criterion(s) of the grid", issues=_issues(errors)
            )

    result = _transition(services, info, call, "submit", check=grid)
    with write_transaction(services.engine) as conn:
        conn.execute(
            update(application)
            .where(application.c.organization == str(call.res_id))
            .values(answers=orjson.dumps(answers).decode())
        )
    return result


# ------------------------------------------------------------------------------ application
@operation(
    "apply", types=("Organization",), type_level=True, instance_level=False, affects_state=True,
    definition=SPEC + "apply",
)  # fmt: skip
def apply(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """A structure applies: stored as a draft visible to its territory's and the region's administrators; a confirmation link goes to the referent."""
    body = {"resourceType": "Parameters", "parameter": call.parameters}
    parsed, errors = parse_application(body)
    if parsed is None or errors:
        raise BusinessRuleViolation(f"The application has {len(errors)} problem(s)", issues=_issues(errors))
    lifecycle = Lifecycle(Canonicals(services.settings.canonical_base))
    token = secrets.token_urlsafe(32)
    now = utcnow()
    address = (info.principal.address or "?")[:64]
    with write_transaction(services.engine) as conn:
        recent = conn.execute(
            select(func.count()).where(application.c.address == address, application.c.created > now - timedelta(hours=1))
        ).scalar_one()
        if recent >= APPLICATIONS_PER_HOUR:
            raise TooManyRequests(
                f"At most {APPLICATIONS_PER_HOUR} applications an hour from one address", headers={"Retry-After": "3600"}
            )
        org = _store_application(services, conn, parsed, lifecycle, now)
        conn.execute(
            insert(application).values(
                address=address,
                organization=org.res_id,
                referent_email=parsed.referent.email,
                token_hash=hashlib.sha256(token.encode()).hexdigest(),
                token_expires=now + timedelta(days=CONFIRMATION_DAYS),
                created=now,
            )
        )
        base = _procedure(services).public_base()
        outbox.enqueue(
            conn,
            template="application-confirm",
            recipients=[parsed.referent.email],
            context={
                "structure": parsed.structure.name,
                "confirm_url": f"{base}/Organization/{org.res_id}/$confirm?token={token}",
            },
            entry=f"Organization/{org.res_id}",
            dedupe_key=f"apply:{org.res_id}",
        )
    return served(org, 201)


def _store_application(
    services: Services, conn: Any, app: Application, lifecycle: Lifecycle, now: Any
) -> StoredResource:
    """The structure, its place, its offers and its referent, as drafts (written by the server:
    the applicant has no token yet; the access policy hides drafts from the public)."""
    s = app.structure
    cs = Canonicals(services.settings.canonical_base).code_system
    identifiers = []
    if s.siret:
        identifiers.append({"system": "https://sirene.fr/siret", "value": s.siret})
    if s.finess:
        identifiers.append({"system": "https://finess.esante.gouv.fr", "value": s.finess})
    address = {"line": [s.address_line] if s.address_line else [], "postalCode": s.postal_code, "city": s.city}
    address = {k: v for k, v in address.items() if v}
    telecom = [t for t in ({"system": "phone", "value": s.phone}, {"system": "email", "value": s.email}) if t["value"]]
    org = lifecycle.with_parts(
        {
            "resourceType": "Organization",
            "identifier": identifiers,
            "type": [{"coding": [{"system": cs("sos-structure-type"), "code": s.structure_type}]}],
            "name": s.name,
            "telecom": telecom,
            "address": [address],
        },
        status="draft",
        statusDate=now,
    )
    org = {k: v for k, v in org.items() if v != []}
    stored = writes.create(services, conn, org, actor=SERVER)
    owner = {"reference": f"Organization/{stored.res_id}"}
    location: dict[str, Any] = {
        "resourceType": "Location", "name": s.name, "address": address, "managingOrganization": owner,
    }  # fmt: skip
    if s.commune:  # the ROR's commune of a place: what a DAC's territory of communes is made of
        location["extension"] = [
            {
                "url": "https://interop.esante.gouv.fr/ig/fhir/ror/StructureDefinition/ror-commune-cog",
                "valueCodeableConcept": {
                    "coding": [
                        {"system": "https://mos.esante.gouv.fr/NOS/TRE_R13-Commune/FHIR/TRE-R13-Commune", "code": s.commune}
                    ]
                },
            }
        ]
    place = writes.create(services, conn, location, actor=SERVER)
    for service in app.services:
        offer = lifecycle.with_parts(
            {
                "resourceType": "HealthcareService",
                "providedBy": owner,
                "location": [{"reference": f"Location/{place.res_id}"}],
                "name": service.name,
                "specialty": [{"coding": [{"system": cs("sos-category"), "code": c}]} for c in service.categories],
                **({"comment": service.description} if service.description else {}),
            },
            status="draft",
            statusDate=now,
        )
        writes.create(services, conn, offer, actor=SERVER)
    r = app.referent
    person = writes.create(
        services, conn, {"resourceType": "Practitioner", "name": [{"family": r.family, "given": [r.given]}]}, actor=SERVER
    )
    writes.create(
        services,
        conn,
        {
            "resourceType": "PractitionerRole",
            "organization": owner,
            "practitioner": {"reference": f"Practitioner/{person.res_id}"},
            "code": [{"text": "Référent de la structure pour l'annuaire SOS"}],
            "telecom": [{"system": "email", "value": r.email}] + ([{"system": "phone", "value": r.phone}] if r.phone else []),
        },
        actor=SERVER,
    )
    return stored


@operation(
    "confirm", types=("Organization",), type_level=False, instance_level=True, affects_state=True,
    definition=SPEC + "confirm", guard="link",
)  # fmt: skip
def confirm(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """The e-mailed link: confirms the referent's address and creates its API client (credentials e-mailed once)."""
    token = call.string("token") or ""
    org_id = str(call.res_id)
    digest = hashlib.sha256(token.encode()).hexdigest()
    now = utcnow()
    lifecycle = Lifecycle(Canonicals(services.settings.canonical_base))
    with write_transaction(services.engine) as conn:
        row = conn.execute(select(application).where(application.c.organization == org_id)).first()
        # One answer for an unknown entry, a wrong, used or expired token: nothing is told.
        if row is None or not token or row.token_hash is None or not secrets.compare_digest(row.token_hash, digest):
            raise NotFound("This confirmation link is not valid (unknown, already used or mistyped)")
        if row.token_expires < now:
            raise NotFound("This confirmation link has expired: apply again")
        from fhirsrv.storage import repository

        current = repository.get_current(conn, "Organization", org_id)
        if current is None or current.deleted:
            raise NotFound("This confirmation link is not valid (unknown, already used or mistyped)")
        client, secret = add_client(
            conn, f"Référent {org_id}", REFERENT_SCOPES, "structure-referent", organization=f"Organization/{org_id}",
            email=row.referent_email,
        )  # fmt: skip
        conn.execute(
            update(application)
            .where(application.c.organization == org_id)
            .values(token_hash=None, confirmed=now, client_id=client.client_id)
        )
        confirmed = lifecycle.with_parts(orjson.loads(current.content or "{}"), applicationConfirmed=now)
        stored = writes.replace(services, conn, current, confirmed, "update", actor=SERVER, validated=True)
        base = _procedure(services).public_base()
        outbox.enqueue(
            conn,
            template="referent-credentials",
            recipients=[row.referent_email],
            context={
                "structure": str(orjson.loads(current.content or "{}").get("name") or org_id),
                "client_id": client.client_id,
                "client_secret": secret or "",
                "token_url": f"{base}/token",
            },
            entry=f"Organization/{org_id}",
            dedupe_key=f"credentials:{org_id}",
        )
    return served(stored)


# ---------------------------------------------------------------------------- offers alone
# An offer added to a listed structure goes through the steps on its own (procedure.py,
# `apply_to_offer`); one offer is withdrawn alone by `withdraw_offer`.
submit_offer = _transition_op(
    "submit", "The referent submits an offer added to its listed structure: draft or rejected to submitted.", "HealthcareService"
)
validate_territory_offer = _transition_op(
    "validate-territory",
    "Territorial validation of an offer added to a listed structure: submitted to territorial-validated.",
    "HealthcareService",
)
publish_offer = _transition_op(
    "publish", "Regional validation (DSRC) of an offer added to a listed structure: it is shown at once.", "HealthcareService"
)


@operation(
    "reject", types=("HealthcareService",), type_level=False, instance_level=True, affects_state=True,
    definition=SPEC + "reject-offer", guard="write",
)  # fmt: skip
def reject_offer(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """Refuse an offer added to a listed structure, with a reason sent to the referent."""
    reason = _rejection_reason(services, info, call, f"HealthcareService/{call.res_id}")
    return _transition(services, info, call, "reject", "HealthcareService", reason=reason)


@operation(
    "withdraw", types=("HealthcareService",), type_level=False, instance_level=True, affects_state=True,
    definition=SPEC + "withdraw-offer", guard="write",
)  # fmt: skip
def withdraw_offer(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """Withdraw one offer while its structure stays listed (its referent, or an administrator of its territory)."""
    from fhirsrv.errors import Conflict, Forbidden
    from fhirsrv.storage import repository

    principal = info.principal
    lifecycle = Lifecycle(Canonicals(services.settings.canonical_base))
    target = f"HealthcareService/{call.res_id}"
    try:
        with write_transaction(services.engine) as conn:
            current = repository.get_current(conn, "HealthcareService", str(call.res_id))
            if current is None or current.deleted:
                raise NotFound(f"{target} is not known")
            offer = orjson.loads(current.content or "{}")
            if principal.role.value not in ("structure-referent", "territorial-admin", "regional-admin"):
                raise Forbidden("$withdraw is for the structure's referent and administrators")
            # Scopes and perimeter before the status: a caller who may not write learns nothing.
            services.policy.check_write_intent(principal, "HealthcareService", "u")
            services.policy.check_write_target(conn, principal, current)
            status = lifecycle.status(offer)
            if status in ("withdrawn", "delisted"):
                raise Conflict(f"{target} is already {status}", code="business-rule")
            updated = lifecycle.with_parts(offer, status="withdrawn", statusDate=utcnow())
            # The access policy's write perimeter decides who may: its structure's referent, its
            # territory's administrators, the region's.
            stored = writes.replace(services, conn, current, updated, "update", actor=principal, validated=True)
            services.audit.transition(conn, stored, principal, "withdraw", status or "", "withdrawn")
    except FhirError as refusal:
        services.audit.refused(services.engine, principal, "$withdraw", target, refusal.diagnostics)
        raise
    return served(stored)
