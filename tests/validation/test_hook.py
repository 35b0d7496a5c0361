"""The write-path hook applies the profiles asked for, those claimed, and optionally the SOS ones."""

from __future__ import annotations

import json
from pathlib import Path

from fhirsrv.validation import SOS_PROFILES, profile_issues_hook

EXAMPLES = Path(__file__).resolve().parents[2] / "profiles" / "examples"


def _errors(issues: list) -> list:
    return [(i.code, i.expression) for i in issues if i.severity == "error"]


def test_claimed_profile_is_validated() -> None:
    res = json.loads((EXAMPLES / "Location-sos-lieu-rennes-centre.json").read_text())
    del res["position"]
    assert _errors(profile_issues_hook()(res, ())) == [("required", ["Location.position"])]


def test_unknown_claimed_profile_is_a_warning() -> None:
    res = {"resourceType": "Location", "meta": {"profile": ["https://nowhere.example.org/sd"]}, "name": "x"}
    issues = profile_issues_hook()(res, ())
    assert [(i.severity, i.expression) for i in issues] == [("warning", ["meta.profile"])]


def test_sos_profile_enforced_only_when_asked() -> None:
    bare = {"resourceType": "Location", "name": "Lieu sans adresse"}
    assert _errors(profile_issues_hook()(bare, ())) == []
    enforced = _errors(profile_issues_hook(enforce_sos=True)(bare, ()))
    assert ("required", ["Location.position"]) in enforced
    assert ("required", ["Location.address"]) in enforced


def test_requested_profile_applies_even_without_claim() -> None:
    bare = {
        "resourceType": "Endpoint",
        "status": "active",
        "address": "https://example.org",
        "connectionType": {"code": "hl7-fhir-rest"},
        "payloadType": [{"text": "x"}],
    }
    errs = _errors(profile_issues_hook()(bare, (SOS_PROFILES["Endpoint"],)))
    assert ("required", ["Endpoint.managingOrganization"]) in errs
    assert ("invariant", ["Endpoint"]) in errs
