"""$validate at type and instance level (modes create, update, delete; `profile`)."""

from __future__ import annotations

from fhirsrv.errors import BadRequest, Issue, NotFound
from fhirsrv.interactions import writes
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.operations import OperationCall, operation
from fhirsrv.interactions.resources import CONFORMANCE_TYPES, DIRECTORY_TYPES, check_resource
from fhirsrv.storage import repository
from fhirsrv.storage.engine import read_transaction
from fhirsrv.storage.jsonfmt import loads

_MODES = ("create", "update", "delete")


def _outcome(issues: list[Issue]) -> dict:
    if not any(i.severity in ("error", "fatal", "warning") for i in issues):
        issues = [*issues, Issue("information", "informational", "No problem found: the resource is valid")]
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


@operation(
    "validate",
    types=DIRECTORY_TYPES + CONFORMANCE_TYPES,
    type_level=True,
    instance_level=True,
    definition="http://hl7.org/fhir/OperationDefinition/Resource-validate",
)
def validate(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """Validate a resource as a write would, answering the OperationOutcome the write would give."""
    mode = call.string("mode")
    if mode is not None and mode not in _MODES:
        raise BadRequest(f"mode must be one of {', '.join(_MODES)}, not '{mode}'")
    if mode in ("update", "delete") and call.res_id is None:
        raise BadRequest(f"mode={mode} is only meaningful at instance level ([type]/[id]/$validate)")
    profile = call.string("profile")
    res = call.resource("resource") or call.body_resource
    current = None
    withheld: set[str] = set()
    if call.res_id is not None:
        # The operation registry has checked the caller may read this instance.
        with read_transaction(services.engine) as conn:
            current = repository.get_current(conn, call.res_type, call.res_id)
            shown, _ = services.policy.read_current(conn, info.principal, call.res_type, call.res_id)
        if current is None or current.deleted or shown is None:
            raise NotFound(f"{call.res_type}/{call.res_id} is not known")
        if shown.content != current.content:
            withheld = _withheld_elements(current.content, shown.content)
    if mode == "delete":
        # Nothing forbids deleting a directory entry: references to it stay resolvable
        # through history (the DCC's citations never break).
        return Result(resource=_outcome([]))
    stored_res = None
    if res is None:
        if current is None:
            raise BadRequest("No resource to validate: send it as the body or as the 'resource' parameter")
        res = stored_res = loads(current.content)
    check_resource(res, call.res_type)
    if mode == "update" and res.get("id") != call.res_id:
        return Result(
            resource=_outcome([Issue("error", "invalid", "The resource id differs from the URL id", ["id"])])
        )
    issues = writes.validation_issues(services, res, info.principal, (profile,) if profile else ())
    if withheld and res is stored_res:
        issues = [i for i in issues if not _about(i, call.res_type, withheld)]
    return Result(resource=_outcome(issues))


def _withheld_elements(stored: str | None, shown: str | None) -> set[str]:
    """The elements a read leaves out for the caller (a structure that left the directory:
    its contact persons)."""
    return set(loads(stored or "{}")) - set(loads(shown or "{}"))


def _about(issue: Issue, res_type: str, elements: set[str]) -> bool:
    """Whether an issue concerns one of these elements: the stored entry is validated whole,
    so it is valid or not alike for every caller, and the issues of what a caller is not shown
    are not told to it, nor that they exist."""
    paths = [*issue.expression, issue.diagnostics.split(":", 1)[0]]
    prefixes = tuple(f"{res_type}.{element}" for element in elements)
    return any(path.startswith(prefixes) for path in paths)
