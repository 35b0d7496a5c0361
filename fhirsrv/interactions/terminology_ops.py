"""The FHIR terminology operations, registered on the operation registry."""

from __future__ import annotations

from typing import Any

from fhirsrv.errors import BadRequest, InvalidResource, NotFound
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.operations import OperationCall, operation, parameters
from fhirsrv.interactions.resources import check_resource
from fhirsrv.storage.engine import read_transaction, write_transaction
from fhirsrv.terminology import client_closure, codesystem, conceptmap, store, valueset
from fhirsrv.validation.structure import validate_structure

SPEC = "http://hl7.org/fhir/OperationDefinition/"


def _target(conn, call: OperationCall, res_type: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The ValueSet an operation acts on: the instance, an inline one, or the `url` parameter."""
    if call.res_id is not None:
        return store.by_id(conn, res_type, call.res_id)
    inline = call.resource("valueSet")
    if inline is not None:
        check_resource(inline, "ValueSet", "The 'valueSet' parameter: ")
        issues = validate_structure(inline)
        if issues:  # the expander walks compose as R4 shapes it
            raise InvalidResource(issues[0].diagnostics, issues=issues)
        return inline
    url = call.string("url")
    if not url:
        raise BadRequest(f"Name the {res_type} with the 'url' parameter (or call it on an instance)")
    return store.require(conn, res_type, url, call.string("valueSetVersion"))


def _code_and_system(call: OperationCall) -> tuple[str | None, str]:
    coding = call.coding("coding")
    if coding:
        return coding.get("system"), str(coding.get("code", ""))
    code = call.string("code")
    if not code:
        raise BadRequest("Give a 'code' (with 'system') or a 'coding'")
    return call.string("system"), code


@operation("lookup", types=("CodeSystem",), instance_level=True, definition=SPEC + "CodeSystem-lookup")
def lookup(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """Details of a code: display, designations, properties, parent and children."""
    system, code = _code_and_system(call)
    with read_transaction(services.engine) as conn:
        if call.res_id is not None:
            cs = store.by_id(conn, "CodeSystem", call.res_id)
        elif system:
            cs = store.require(conn, "CodeSystem", system, call.string("version"))
        else:
            raise BadRequest("$lookup needs the code's 'system'")
    props = [str(p.get("valueCode") or p.get("valueString")) for p in call.all("property")]
    return Result(resource=codesystem.lookup(cs, code, call.string("displayLanguage"), props))


@operation(
    "validate-code", types=("CodeSystem",), instance_level=True, definition=SPEC + "CodeSystem-validate-code"
)
def validate_code_system(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """Whether a code (and display) is in a code system: result true/false with a message."""
    system, code = _code_and_system(call)
    display = call.string("display") or (call.coding("coding") or {}).get("display")
    with read_transaction(services.engine) as conn:
        if call.res_id is not None:
            cs = store.by_id(conn, "CodeSystem", call.res_id)
        else:
            url = call.string("url") or system
            if not url:
                raise BadRequest("CodeSystem/$validate-code needs 'url' or 'system'")
            cs = store.require(conn, "CodeSystem", url, call.string("version"))
    return Result(resource=codesystem.validate_code(cs, code, display))


@operation(
    "validate-code", types=("ValueSet",), instance_level=True, definition=SPEC + "ValueSet-validate-code"
)
def validate_code_in_valueset(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """Whether a code (and display) is in a value set: result true/false with a message."""
    system, code = _code_and_system(call)
    display = call.string("display") or (call.coding("coding") or {}).get("display")
    with read_transaction(services.engine) as conn:
        vs = _target(conn, call, "ValueSet")
        return Result(resource=valueset.validate_code(conn, vs, system, code, display))


@operation("subsumes", types=("CodeSystem",), instance_level=True, definition=SPEC + "CodeSystem-subsumes")
def subsumes(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """How two codes of a hierarchical code system relate."""
    code_a = call.string("codeA") or (call.coding("codingA") or {}).get("code")
    code_b = call.string("codeB") or (call.coding("codingB") or {}).get("code")
    if not code_a or not code_b:
        raise BadRequest("$subsumes needs codeA and codeB (or codingA and codingB)")
    with read_transaction(services.engine) as conn:
        if call.res_id is not None:
            cs = store.by_id(conn, "CodeSystem", call.res_id)
        else:
            system = call.string("system") or (call.coding("codingA") or {}).get("system")
            if not system:
                raise BadRequest("$subsumes needs the 'system'")
            cs = store.require(conn, "CodeSystem", system, call.string("version"))
        outcome = codesystem.subsumes(conn, cs, str(code_a), str(code_b))
    return Result(resource=parameters({"name": "outcome", "valueCode": outcome}))


@operation("expand", types=("ValueSet",), instance_level=True, definition=SPEC + "ValueSet-expand")
def expand(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """The codes of a value set, filtered (accent-insensitive), paged, in French or English."""
    with read_transaction(services.engine) as conn:
        vs = _target(conn, call, "ValueSet")
        count = call.integer("count")
        offset = call.integer("offset", 0) or 0
        if (count is not None and count < 0) or offset < 0:
            raise BadRequest("count and offset must not be negative")
        expanded = valueset.expand(
            conn,
            vs,
            text_filter=call.string("filter"),
            count=count,
            offset=offset,
            language=call.string("displayLanguage"),
            designations=call.boolean("includeDesignations"),
            active_only=call.boolean("activeOnly"),
            # R4 asks for nesting with excludeNested=false; `hierarchical=true` is accepted too
            hierarchical=(call.value("excludeNested") is not None and not call.boolean("excludeNested"))
            or call.boolean("hierarchical"),
        )
    return Result(resource=expanded)


@operation("translate", types=("ConceptMap",), instance_level=True, definition=SPEC + "ConceptMap-translate")
def translate(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """The ROR (or SOS, with reverse=true) codes a code maps to."""
    system, code = _code_and_system(call)
    reverse = call.boolean("reverse")
    target_system = call.string("targetsystem")
    with read_transaction(services.engine) as conn:
        if call.res_id is not None:
            cm = store.by_id(conn, "ConceptMap", call.res_id)
        elif call.string("url"):
            cm = store.require(conn, "ConceptMap", str(call.string("url")), call.string("conceptMapVersion"))
        else:
            source, target = call.string("source"), call.string("target")
            if not (source or target or system):
                raise BadRequest(
                    "$translate needs the ConceptMap 'url', a 'source'/'target' scope or a 'system'"
                )
            maps = conceptmap.candidates(
                store.all_of(conn, "ConceptMap"), system, source, target, target_system, reverse
            )
            if not maps:
                raise NotFound("No ConceptMap here translates from this source to this target")
            return Result(resource=conceptmap.translate_many(maps, system, code, reverse, target_system))
    return Result(resource=conceptmap.translate(cm, system, code, reverse, target_system))


@operation(
    "closure",
    type_level=False,
    system_level=True,
    affects_state=True,
    definition=SPEC + "ConceptMap-closure",
    guard="write",  # the tables belong to a client: 401 before the input is looked at
)
def closure(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """Maintain a client's named closure table: the new subsumptions among the concepts it sent.

    Only `name`: (re)initialise the table. With `concept`s: add them and return the new
    relationships. With `version`: every relationship since that version (resynchronisation).
    Tables are kept per OAuth client, so two clients may use the same name without mixing."""
    name = call.string("name")
    if not name:
        raise BadRequest("$closure needs the 'name' of the closure table")
    concepts = []
    for param in call.all("concept"):
        if "valueCoding" not in param:
            raise BadRequest("Each $closure 'concept' is a valueCoding")
        concepts.append(param["valueCoding"])
    since = call.string("version")
    owner = info.principal.client_id
    with write_transaction(services.engine) as conn:
        if concepts:
            answer = client_closure.add_concepts(conn, owner, name, concepts)
            if since is not None:
                answer = client_closure.resynchronise(conn, owner, name, since)
        elif since is not None:
            answer = client_closure.resynchronise(conn, owner, name, since)
        else:
            answer = client_closure.initialise(conn, owner, name)
    return Result(resource=answer)
