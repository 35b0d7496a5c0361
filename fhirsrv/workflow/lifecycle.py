"""The lifecycle extension of an entry, read and written: the procedure's record travels with
the resource (and so with its history), as the ROR's own extensions do."""

from __future__ import annotations

import copy
from datetime import date, datetime
from typing import Any

from fhirsrv.access.facts import PUBLIC_STATUSES, RETIRED_STATUSES
from fhirsrv.canonical import Canonicals
from fhirsrv.storage.jsonfmt import format_instant

# Resources whose `active` flag says whether the entry is listed.
HAS_ACTIVE = ("Organization", "HealthcareService", "PractitionerRole")
# A Location has no `active` flag: its `status` (R4: active | suspended | inactive) says it. A
# place of a delisted or withdrawn structure is still read by the care plans that cite it, and
# must not read as an open place.
HAS_STATUS = ("Location",)


def place_status(status: str) -> str | None:
    """A Location's `status` under this lifecycle status; None: left as the structure wrote it
    (an application not yet published)."""
    if status in PUBLIC_STATUSES:
        return "active"
    if status in RETIRED_STATUSES:
        return "inactive"
    return None
# The parts this module writes, in the order the profile lists them.
ORDER = (
    "status",
    "lastVerified",
    "validatedBy",
    "statusDate",
    "statusReason",
    "applicationConfirmed",
    "territoryValidatedBy",
    "territoryValidatedOn",
    "regionValidatedBy",
    "regionValidatedOn",
    "verificationRequested",
)
_VALUE = {
    "status": "valueCode",
    "lastVerified": "valueDate",
    "statusDate": "valueDateTime",
    "statusReason": "valueString",
    "applicationConfirmed": "valueDateTime",
    "territoryValidatedBy": "valueString",
    "territoryValidatedOn": "valueDateTime",
    "regionValidatedBy": "valueString",
    "regionValidatedOn": "valueDateTime",
    "verificationRequested": "valueDate",
}


class Lifecycle:
    """Reads and writes the `sos-entry-lifecycle` extension under the deployment's base."""

    def __init__(self, canonicals: Canonicals) -> None:
        self.url = canonicals.entry_lifecycle

    def _extension(self, res: dict[str, Any]) -> dict[str, Any] | None:
        for ext in res.get("extension") or []:
            if isinstance(ext, dict) and ext.get("url") == self.url:
                return ext
        return None

    def get(self, res: dict[str, Any], part: str) -> Any:
        ext = self._extension(res)
        for sub in (ext or {}).get("extension") or []:
            if isinstance(sub, dict) and sub.get("url") == part:
                for key, value in sub.items():
                    if key.startswith("value"):
                        return value
        return None

    def status(self, res: dict[str, Any]) -> str | None:
        return self.get(res, "status")

    def has(self, res: dict[str, Any]) -> bool:
        return self._extension(res) is not None

    def same(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        """Whether two versions carry the same lifecycle record."""
        return self._extension(a) == self._extension(b)

    def with_parts(self, res: dict[str, Any], **parts: Any) -> dict[str, Any]:
        """A copy of `res` with these lifecycle parts set (None removes one), and `active`
        following the status."""
        new = copy.deepcopy(res)
        ext = self._extension(new)
        if ext is None:
            ext = {"url": self.url, "extension": []}
            new["extension"] = [ext, *(new.get("extension") or [])]
        current = {s.get("url"): s for s in ext.get("extension") or [] if isinstance(s, dict)}
        for name, value in parts.items():
            if value is None:
                current.pop(name, None)
                continue
            if isinstance(value, datetime):
                value = format_instant(value)
            elif isinstance(value, date):
                value = value.isoformat()
            current[name] = {"url": name, _VALUE[name]: value}
        ordered = [current[n] for n in ORDER if n in current and n != "validatedBy"]
        ordered[1:1] = [s for s in ext.get("extension") or [] if isinstance(s, dict) and s.get("url") == "validatedBy"]
        ordered += [s for n, s in current.items() if n not in ORDER]
        ext["extension"] = ordered
        status = self.get(new, "status")
        return self._follow(new, status) if status is not None else new

    def following(self, res: dict[str, Any], status: str) -> dict[str, Any]:
        """A copy of `res`, an entry without a lifecycle record of its own, whose `active` flag
        or place status follows its structure's `status`."""
        return self._follow(copy.deepcopy(res), status)

    @staticmethod
    def _follow(res: dict[str, Any], status: str) -> dict[str, Any]:
        if res.get("resourceType") in HAS_ACTIVE:
            res["active"] = status in PUBLIC_STATUSES
        elif res.get("resourceType") in HAS_STATUS and place_status(status) is not None:
            res["status"] = place_status(status)
        return res
