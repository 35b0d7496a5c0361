"""Registry of FHIR operations ($lookup, $expand, $validate, ...) and their input Parameters.

Operations are declared with @operation, which only describes the function; the server's
OperationRegistry (on Services) is built from the modules app.py names, with plain imports, so
a missing module fails at start-up. api/routes.py dispatches GET and POST on
`[Type/[id/]]$name` through it, and the CapabilityStatement lists exactly what is registered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from fhirsrv.access.policy import unauthorized
from fhirsrv.errors import BadRequest, InvalidResource, MethodNotAllowed, NotFound
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.storage.engine import read_transaction
from fhirsrv.validation.structure import validate_structure


@dataclass
class OperationCall:
    """One invocation: where it was called and its input Parameters (GET args or POST body)."""

    res_type: str | None
    res_id: str | None
    parameters: list[dict[str, Any]] = field(default_factory=list)
    # A POST body that is a resource rather than Parameters (e.g. $validate of a resource).
    body_resource: dict[str, Any] | None = None
    method: str = "GET"

    @classmethod
    def from_query(
        cls, res_type: str | None, res_id: str | None, args: list[tuple[str, str]]
    ) -> OperationCall:
        params = [{"name": k, "valueString": v} for k, v in args if not k.startswith("_")]
        return cls(res_type, res_id, params, None, "GET")

    @classmethod
    def from_body(
        cls, res_type: str | None, res_id: str | None, body: dict[str, Any], args: list[tuple[str, str]]
    ) -> OperationCall:
        call = cls.from_query(res_type, res_id, args)
        call.method = "POST"
        if body.get("resourceType") == "Parameters":
            call.parameters.extend(_checked_parameters(body))
        else:
            call.body_resource = body
        return call

    def all(self, name: str) -> list[dict[str, Any]]:
        return [p for p in self.parameters if p.get("name") == name]

    def value(self, name: str) -> Any:
        """The first parameter's value whatever its value[x] type (string from GET)."""
        for param in self.all(name):
            for key, val in param.items():
                if key.startswith("value"):
                    return val
        return None

    def resource(self, name: str) -> dict[str, Any] | None:
        for param in self.all(name):
            if "resource" in param:
                return param["resource"]
        return None

    def string(self, name: str) -> str | None:
        val = self.value(name)
        return None if val is None else str(val)

    def boolean(self, name: str, default: bool = False) -> bool:
        val = self.value(name)
        if val is None:
            return default
        if isinstance(val, bool):
            return val
        if str(val).lower() in ("true", "false"):
            return str(val).lower() == "true"
        raise BadRequest(f"Parameter '{name}' must be true or false, not '{val}'")

    def integer(self, name: str, default: int | None = None) -> int | None:
        val = self.value(name)
        if val is None:
            return default
        try:
            return int(val)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"Parameter '{name}' must be an integer, not '{val}'") from exc

    def coding(self, name: str) -> dict[str, Any] | None:
        for param in self.all(name):
            if "valueCoding" in param:
                return param["valueCoding"]
        return None


def _checked_parameters(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The input Parameters' entries, held to R4's structure before any operation reads them,
    so a `valueCoding` that is a string or a `parameter` that is not a list is a 400 here
    rather than a crash deep in an operation. Resources carried in `resource` are left out of
    this check and only required to be resources: each operation judges its own (`$validate`
    reports on a broken one rather than refusing it)."""
    params = body.get("parameter") or []
    if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
        raise InvalidResource(
            "Parameters.parameter must be a list of objects", expression=["Parameters.parameter"]
        )
    shell = {k: v for k, v in body.items() if k != "parameter"}  # `"parameter": []` means none
    if params:
        shell["parameter"] = [_without_resources(p, f"Parameters.parameter[{i}]") for i, p in enumerate(params)]
    issues = validate_structure(shell)
    if issues:
        raise InvalidResource(issues[0].diagnostics, issues=issues)
    return params


def _without_resources(param: dict[str, Any], where: str) -> dict[str, Any]:
    """A parameter with its `resource` (checked to be a resource) and its parts' taken out."""
    carried = param.get("resource")
    if carried is not None and not (isinstance(carried, dict) and isinstance(carried.get("resourceType"), str)):
        raise InvalidResource(f"{where}.resource must be a FHIR resource", expression=[f"{where}.resource"])
    shell = {k: v for k, v in param.items() if k != "resource"}
    parts = param.get("part")
    if isinstance(parts, list) and all(isinstance(p, dict) for p in parts):
        shell["part"] = [_without_resources(p, f"{where}.part[{i}]") for i, p in enumerate(parts)]
    return shell


OperationFunc = Callable[[Services, RequestInfo, OperationCall], Result]


@dataclass(frozen=True)
class OperationDef:
    name: str  # without the leading $
    func: OperationFunc
    resource_types: tuple[str, ...]  # empty: a system-level operation
    type_level: bool
    instance_level: bool
    system_level: bool
    affects_state: bool
    definition: str | None
    documentation: str
    # How the registry guards a call (see OperationRegistry.invoke): "read" (the default),
    # "write" (a client token first: 401 for anonymous callers, whatever the target), or
    # "link" (the call carries its own single-use credential, e.g. an e-mailed link: no
    # instance check, and GET is allowed although it changes state).
    guard: str = "read"


_DECLARED = "__fhir_operations__"


def operation(
    name: str,
    *,
    types: tuple[str, ...] = (),
    type_level: bool = True,
    instance_level: bool = False,
    system_level: bool = False,
    affects_state: bool = False,
    definition: str | None = None,
    guard: str = "read",
) -> Callable[[OperationFunc], OperationFunc]:
    if guard not in ("read", "write", "link"):
        raise ValueError(f"unknown operation guard '{guard}'")
    def register(func: OperationFunc) -> OperationFunc:
        doc = (func.__doc__ or "").strip().splitlines()
        declared = getattr(func, _DECLARED, [])
        setattr(func, _DECLARED, declared)
        declared.append(
            OperationDef(
                name,
                func,
                types,
                type_level,
                instance_level,
                system_level,
                affects_state,
                definition,
                doc[0] if doc else "",
                guard,
            )
        )
        return func

    return register


class OperationRegistry:
    """The operations one server offers, collected from the modules that declare them."""

    def __init__(self, modules: Iterable[ModuleType]) -> None:
        self._by_name: dict[str, list[OperationDef]] = {}
        for module in modules:
            for value in vars(module).values():
                for op in getattr(value, _DECLARED, ()):
                    self._by_name.setdefault(op.name, []).append(op)
        if not self._by_name:
            raise RuntimeError("No FHIR operation was found in the operation modules")

    def registered(self) -> list[OperationDef]:
        return [op for ops in self._by_name.values() for op in ops]

    def resolve(self, name: str, res_type: str | None, instance: bool, http_method: str) -> OperationDef:
        return _resolve(self._by_name.get(name, []), name, res_type, instance, http_method)

    def invoke(self, services: Services, info: RequestInfo, op: OperationDef, call: OperationCall) -> Result:
        """Run an operation behind the access policy, the one door every operation goes
        through: one called on a type reads that type's stored resources, so the caller must
        be allowed to read the type; one called on an instance reads it, so the instance must
        be one the caller may read by id — else it is answered as unknown."""
        if op.guard == "write" and info.principal.is_anonymous:
            refusal = unauthorized(f"${op.name} needs a bearer access token")
            # Audited as every refused write is (an anonymous DELETE, a procedure step refused).
            target = "/".join(p for p in (call.res_type, call.res_id) if p) or "system"
            services.audit.refused(services.engine, info.principal, f"${op.name}", target, refusal.diagnostics)
            raise refusal
        if op.guard == "link":
            return op.func(services, info, call)  # its own credential decides, not the caller's token
        if call.res_type is not None:
            services.policy.check_read(info.principal, call.res_type)
        if call.res_type is not None and call.res_id is not None:
            with read_transaction(services.engine) as conn:
                _, seen = services.policy.read_current(conn, info.principal, call.res_type, call.res_id)
            if not seen:
                raise NotFound(f"{call.res_type}/{call.res_id} is not known")
        return op.func(services, info, call)


def _resolve(
    candidates: list[OperationDef], name: str, res_type: str | None, instance: bool, http_method: str
) -> OperationDef:
    for op in candidates:
        if res_type is None and op.system_level:
            break
        if (
            res_type is not None
            and res_type in op.resource_types
            and (op.instance_level if instance else op.type_level)
        ):
            break
    else:
        where = f"{res_type}{'/[id]' if instance else ''}" if res_type else "system level"
        raise NotFound(f"Operation ${name} is not supported at {where}", code="not-supported")
    if http_method == "GET" and op.affects_state and op.guard != "link":
        raise MethodNotAllowed(f"Operation ${name} changes state and must be invoked with POST")
    return op


def parameters(*params: dict[str, Any]) -> dict[str, Any]:
    """Build an output Parameters resource."""
    return {"resourceType": "Parameters", "parameter": [p for p in params if p]}
