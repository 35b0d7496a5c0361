"""The resource types this server holds (the bottom of the import graph: everyone may use it)."""

# Directory content, and the conformance/terminology content it is described with.
DIRECTORY_TYPES = (
    "Organization",
    "HealthcareService",
    "Location",
    "PractitionerRole",
    "Practitioner",
    "Endpoint",
)
CONFORMANCE_TYPES = ("CodeSystem", "ValueSet", "ConceptMap", "StructureDefinition", "SearchParameter")
# Written by the server only: clients may read and search them, never write them.
SERVER_WRITTEN_TYPES = ("AuditEvent",)
# Each belongs to the client that created it, and only that client sees it (a Subscription
# holds its endpoint and the headers sent there): fhirsrv/access/owners.py.
OWNED_TYPES = ("Subscription",)
SUPPORTED_TYPES = DIRECTORY_TYPES + CONFORMANCE_TYPES + SERVER_WRITTEN_TYPES + OWNED_TYPES
