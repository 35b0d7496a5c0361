"""The parsed-version cache of the public pages never shows an old version of an entry."""

from __future__ import annotations

from datetime import UTC, datetime

from fhirsrv.storage.repository import StoredResource
from fhirsrv.web.versions import ParsedVersions


def _version(res_id: str, number: int, name: str) -> StoredResource:
    content = f'{{"resourceType":"HealthcareService","id":"{res_id}","name":"{name}"}}'
    return StoredResource(1, "HealthcareService", res_id, number, datetime.now(UTC), False, content)


def test_a_new_version_is_parsed_afresh_and_the_cache_keeps_only_its_size():
    versions = ParsedVersions(size=2)
    assert versions.parsed(_version("a", 1, "Avant"))["name"] == "Avant"
    # The same version id again: whatever bytes come, the parsed version is reused...
    assert versions.parsed(_version("a", 1, "Avant"))["name"] == "Avant"
    # ...and an update, a new version id, is never answered from the old one.
    assert versions.parsed(_version("a", 2, "Après"))["name"] == "Après"
    versions.parsed(_version("b", 1, "B"))
    versions.parsed(_version("c", 1, "C"))  # evicts the least recently used, a/1
    assert versions.parsed(_version("a", 1, "Relu"))["name"] == "Relu"
