"""Parsed resource versions, kept for the next page that shows them.

A results page shows its twenty offers with their structures, places and endpoints: some forty
resources parsed from JSON for every page, where the FHIR API splices the stored bytes as they
are. A stored version never changes (a change is a new version, with a new version id), so a
version parsed once can be shown again as it is, and the cache can never serve a stale one: a
new version is simply another key. The dicts handed out are shared and must not be changed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import orjson

from fhirsrv.storage.repository import StoredResource

# About the public part of a region's directory (the demo region: 3,500 resources); a dict of a
# HealthcareService takes some 20 kB, so at most about 40 MB a process.
MAX_VERSIONS = 2048


class ParsedVersions:
    def __init__(self, size: int = MAX_VERSIONS) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._parsed: OrderedDict[tuple[str, str, int], dict[str, Any]] = OrderedDict()

    def parsed(self, stored: StoredResource) -> dict[str, Any]:
        key = (stored.res_type, stored.res_id, stored.version_id)
        with self._lock:
            found = self._parsed.get(key)
            if found is not None:
                self._parsed.move_to_end(key)
                return found
        resource = orjson.loads(stored.content or "{}")
        with self._lock:
            self._parsed[key] = resource
            if len(self._parsed) > self._size:
                self._parsed.popitem(last=False)
        return resource
