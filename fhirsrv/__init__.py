"""fhirsrv: a FHIR R4 server for a regional directory of cancer supportive care (SOS)."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
