"""Every resource of the demo region meets its SOS profile (and so the ROR profile beneath it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhirsrv.validation import SOS_PROFILES, validate_resource

DEMO = Path(__file__).resolve().parents[2] / "seed" / "demo"


@pytest.mark.parametrize("path", sorted(DEMO.glob("*.ndjson")), ids=lambda p: p.stem)
def test_every_demo_resource_is_valid_against_its_profile(path: Path) -> None:
    failures = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        res = json.loads(line)
        profiles = [SOS_PROFILES[res["resourceType"]]] if res["resourceType"] in SOS_PROFILES else []
        errors = [i for i in validate_resource(res, profiles) if i.severity in ("error", "fatal")]
        if errors:
            failures.append(f"line {number} {res['id']}: {errors[0].diagnostics}")
    assert failures == []
