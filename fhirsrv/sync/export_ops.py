"""`$export` as the operation registry knows it, so the CapabilityStatement announces it.

The kick-off itself is not an ordinary operation: it answers 202 and works later, and needs
`Prefer: respond-async`, which only its own routes (api/bulk_export.py) read. They come before
the registry's generic `[Type/]$name` dispatch; this function answers only a call that could
reach the registry some other way."""

from __future__ import annotations

from fhirsrv.errors import BadRequest
from fhirsrv.interactions.context import RequestInfo, Result, Services
from fhirsrv.interactions.operations import OperationCall, operation
from fhirsrv.resource_types import SUPPORTED_TYPES

# The Bulk Data Access IG's system-level export; this server offers it on one type as well.
BULK_EXPORT = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"


@operation("export", types=SUPPORTED_TYPES, type_level=True, system_level=True, definition=BULK_EXPORT)
def export(services: Services, info: RequestInfo, call: OperationCall) -> Result:
    """Bulk Data export (FHIR Bulk Data Access 2.0), asynchronous (Prefer: respond-async): [base]/$export and [base]/[type]/$export, with _type, _since, _typeFilter and _outputFormat=application/fhir+ndjson; status at the Content-Location answered, NDJSON files. Group-level export is not offered: this directory holds no Group resources (Group/[id]/$export answers 400)."""
    raise BadRequest(
        "$export is asynchronous: call [base]/$export or [base]/[type]/$export with Prefer: respond-async"
    )
