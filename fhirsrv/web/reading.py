"""The web pages' one way to the directory's data: the FHIR interactions, as an anonymous caller.

Every page reads through `interactions.search.search` and `interactions.read.read` with the
ANONYMOUS principal, whoever the visitor is and whether authorization is on or off. So the
access policy decides what a page shows exactly as it decides for an anonymous FHIR client
(published and verification-pending entries; a delisted one reads as `active=false`), and a
page can never show what `GET /fhir/...` without a token would not. There is no second query
path to keep in step with the first.

The one thing a visitor writes, an application (the form at /candidature), goes the same way:
`operation` runs `POST [base]/Organization/$apply` through the server's operation registry, with
the body checked by the API's own JSON parser, as an anonymous FHIR client's call would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fhirsrv.access.principal import ANONYMOUS
from fhirsrv.errors import BadRequest, Gone, NotFound
from fhirsrv.interactions import read as read_mod
from fhirsrv.interactions.context import Meter, RequestInfo, Result, Services
from fhirsrv.interactions.operations import OperationCall
from fhirsrv.interactions.resources import check_id, parse_json
from fhirsrv.interactions.search import search
from fhirsrv.web.versions import ParsedVersions


@dataclass(frozen=True)
class LastKnown:
    """A resource as the public last saw it, and whether it is still listed."""

    resource: dict[str, Any]
    listed: bool


@dataclass(frozen=True)
class PublicReader:
    services: Services
    base_url: str  # the FHIR API's public base, for the links pages give to the JSON
    address: str | None  # the visitor's address: the audit trail and rate limits see it
    meter: Meter
    versions: ParsedVersions  # the app's cache of parsed versions (versions.py)

    def _info(self) -> RequestInfo:
        return RequestInfo(base_url=self.base_url, principal=ANONYMOUS.at(self.address), meter=self.meter)

    def search(self, res_type: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        """The searchset Bundle an anonymous `GET [base]/{res_type}?{params}` answers (strict:
        an unknown parameter is a 400, as it would be for the API)."""
        result = search(self.services, self._info(), res_type, params)
        bundle = dict(result.resource)
        stored = iter(result.entries)  # the matches, then the includes, as in the Bundle
        entries = []
        for entry in bundle.get("entry") or []:
            if entry.get("search", {}).get("mode") not in ("match", "include"):
                entries.append(orjson.loads(orjson.dumps(entry)))
                continue
            version = next(stored)
            body = entry["resource"]
            resource = self.versions.parsed(version) if isinstance(body, orjson.Fragment) else body
            entries.append({**entry, "resource": resource})
        if entries:
            bundle["entry"] = entries
        return bundle

    def operation(self, name: str, res_type: str, body: dict[str, Any]) -> Result:
        """What an anonymous `POST [base]/{res_type}/${name}` with the JSON `body` answers: the
        body goes through the API's parser (NUL characters, nesting), the operation through the
        registry's `resolve` and `invoke` (its access checks), exactly as api/routes.py runs it.
        A refusal is raised as the FhirError the API would answer with."""
        parsed = parse_json(orjson.dumps(body))
        services = self.services
        op = services.operations.resolve(name, res_type, False, "POST")
        call = OperationCall.from_body(res_type, None, parsed, [])
        return services.operations.invoke(services, self._info(), op, call)

    def last_known(self, res_type: str, res_id: str, *, ask_listed: bool = True) -> LastKnown | None:
        """The current version if the public may read it; for a deleted entry, the version
        before its deletion (if the public could read that one); None when the public never
        could (a draft, a rejected application, an id that does not exist). `ask_listed=False`
        skips the search that tells whether it is still listed (for what a page only cites).
        An id no entry can have (`/offre/a_b`) is not found either, like any other."""
        try:
            check_id(res_id)
        except BadRequest:
            return None
        try:
            result = read_mod.read(self.services, self._info(), res_type, res_id)
        except NotFound:
            return None
        except Gone as gone:
            return self._before_deletion(res_type, res_id, gone)
        resource = orjson.loads(orjson.dumps(result.resource))
        return LastKnown(resource, listed=self._listed(res_type, res_id) if ask_listed else True)

    def _listed(self, res_type: str, res_id: str) -> bool:
        """Listed means what the public's search finds: an offer of a delisted structure keeps
        its own `active`, yet the public no longer finds it, and the page must say so."""
        bundle = self.search(res_type, [("_id", res_id), ("_elements", "id"), ("_total", "accurate")])
        return bool(bundle.get("total"))

    def _before_deletion(self, res_type: str, res_id: str, gone: Gone) -> LastKnown | None:
        etag = (gone.headers or {}).get("ETag", "")
        version = etag.removeprefix("W/").strip('"')
        if not version.isdigit() or int(version) < 2:
            return None
        try:
            result = read_mod.vread(self.services, self._info(), res_type, res_id, str(int(version) - 1))
        except (NotFound, Gone):
            return None
        return LastKnown(orjson.loads(orjson.dumps(result.resource)), listed=False)
