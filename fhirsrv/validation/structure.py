"""Structural validation of a resource: R4's elements, cardinalities, JSON format and value
formats, checked on the JSON as received (validation/jsonformat.py).

Every write, `$validate` and the bulk loader call it first; its issues name the element with a
FHIRPath-like expression (HealthcareService.telecom[0].system) so a client sees where its
resource is wrong. It used to hand the resource to the fhir.resources models afterwards: the
walk now checks all they did (the parity test compares the two), at a fraction of the cost.
"""

from __future__ import annotations

from typing import Any

from fhirsrv.errors import Issue
from fhirsrv.jsonshape import JsonShapeError, check_json_shape
from fhirsrv.validation.jsonformat import json_format_issues
from fhirsrv.validation.shapes import core_shapes


def validate_structure(res: dict[str, Any]) -> list[Issue]:
    res_type = res.get("resourceType", "")
    if not isinstance(res_type, str) or res_type not in core_shapes().resources:
        return [Issue("error", "not-supported", f"Unknown resource type '{res_type}'", ["resourceType"])]
    try:
        # First, and without recursion: the walk below recurses once per level (and more).
        check_json_shape(res)
    except JsonShapeError as exc:
        where = f"{res_type}.{exc.path}" if exc.path else res_type
        return [Issue("error", "structure", f"{where}: {exc.message}", [where])]
    return json_format_issues(res)
