"""Validation: structural (R4 elements and JSON format) and profile (StructureDefinitions) checks.

`validate_resource` is the one call the write path and `$validate` need: the core definition
of the resource type, then every profile asked for. `profile_issues_hook` adapts it to the
`services.extras["profile_issues"]` hook of interactions/writes.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from fhirsrv.canonical import DEFAULT_BASE, Canonicals
from fhirsrv.errors import Issue
from fhirsrv.validation.codes import CodeChecker, LocalCodeChecker
from fhirsrv.validation.definitions import CORE_PREFIX, DirectorySource, StructureDefinitionSource
from fhirsrv.validation.profile import ProfileValidator

# The profiles' files are written under the shipped base; the validator reads them as written.
SOS_BASE = Canonicals(DEFAULT_BASE).structure_definition("")
# The profile every entry of the directory must meet, by resource type.
SOS_PROFILES = {
    "HealthcareService": SOS_BASE + "sos-healthcareservice",
    "Organization": SOS_BASE + "sos-organization",
    "Location": SOS_BASE + "sos-location",
    "PractitionerRole": SOS_BASE + "sos-practitionerrole",
    "Endpoint": SOS_BASE + "sos-endpoint",
}

__all__ = [
    "SOS_PROFILES",
    "CodeChecker",
    "ProfileValidator",
    "StructureDefinitionSource",
    "default_validator",
    "profile_issues_hook",
    "validate_resource",
]


@lru_cache(maxsize=1)
def default_validator() -> ProfileValidator:
    """The validator on the project's profiles/ and terminology/ files (built once)."""
    return ProfileValidator(DirectorySource(), LocalCodeChecker())


def validate_resource(
    res: dict[str, Any], profile_urls: Iterable[str] = (), validator: ProfileValidator | None = None
) -> list[Issue]:
    """Issues of `res` against its core definition and each of `profile_urls` (deduplicated).

    A profile derives from the core definition, so the core is only applied on its own when
    no profile is asked for.
    """
    validator = validator or default_validator()
    urls = list(dict.fromkeys(profile_urls)) or [CORE_PREFIX + res.get("resourceType", "")]
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    issues: list[Issue] = []
    for url in urls:
        for issue in validator.validate(res, url):
            key = (issue.severity, issue.diagnostics, tuple(issue.expression))
            if key not in seen:
                seen.add(key)
                issues.append(issue)
    return issues


def profile_issues_hook(
    validator: ProfileValidator | None = None, *, enforce_sos: bool = False, honour_meta_profile: bool = True
) -> Callable[[dict[str, Any], tuple[str, ...]], list[Issue]]:
    """A function for services.extras["profile_issues"]: (res, requested profiles) -> issues.

    It applies the profiles asked for ($validate's `profile`), those the resource claims in
    meta.profile (when known to the server; an unknown claim is a warning), and, with
    enforce_sos, the SOS profile of directory resource types whatever the resource claims.
    """

    def hook(res: dict[str, Any], profiles: tuple[str, ...] = ()) -> list[Issue]:
        v = validator or default_validator()
        urls = list(profiles)
        extra: list[Issue] = []
        if honour_meta_profile:
            for claimed in res.get("meta", {}).get("profile", []):
                if v.snapshots.get(claimed) is not None:
                    urls.append(claimed)
                else:
                    msg = f"Claimed profile {claimed} is not known to this server; not checked"
                    extra.append(Issue("warning", "not-supported", msg, ["meta.profile"]))
        if enforce_sos and res.get("resourceType") in SOS_PROFILES:
            urls.append(SOS_PROFILES[res["resourceType"]])
        return extra + validate_resource(res, urls, v)

    return hook
