"""Structural validation of a resource: the R4 JSON format, then the fhir.resources R4B models
(R4 for our types).

The models coerce in lax mode ("yes" passes for true) while the server stores the JSON it was
sent, so the JSON is first held to R4's own rules (validation/jsonformat.py); only JSON that
passes them is handed to the models, whose messages would otherwise repeat the same problem.

Pydantic reports locations as tuples; they are turned into FHIRPath-like expressions
(HealthcareService.telecom[0].system) so a client sees where its resource is wrong.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhirsrv.errors import Issue
from fhirsrv.jsonshape import JsonShapeError, check_json_shape
from fhirsrv.validation.jsonformat import json_format_issues


def _expression(res_type: str, loc: tuple[Any, ...]) -> str:
    path = res_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part) != "__root__":
            path += f".{part}"
    return path


def validate_structure(res: dict[str, Any]) -> list[Issue]:
    res_type = res.get("resourceType", "")
    try:
        model = get_fhir_model_class(res_type)
    except (KeyError, ValueError):
        return [Issue("error", "not-supported", f"Unknown resource type '{res_type}'", ["resourceType"])]
    try:
        # First, and without recursion: the walks below recurse once per level (and more).
        check_json_shape(res)
    except JsonShapeError as exc:
        where = f"{res_type}.{exc.path}" if exc.path else res_type
        return [Issue("error", "structure", f"{where}: {exc.message}", [where])]
    issues = json_format_issues(res)
    if issues:
        return issues
    try:
        model.model_validate(res)
    except ValidationError as exc:
        for err in exc.errors():
            where = _expression(res_type, tuple(err.get("loc", ())))
            issues.append(Issue("error", "structure", f"{where}: {err.get('msg')}", [where]))
    return issues
