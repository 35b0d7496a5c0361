"""Domain errors that every layer may raise; api/outcome.py turns them into OperationOutcomes.

They live at the bottom of the import graph so storage, search and interactions can fail with
the right HTTP status without knowing anything about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Issue:
    severity: str  # fatal | error | warning | information
    code: str  # FHIR issue-type code: invalid, structure, required, not-found, conflict...
    diagnostics: str
    expression: list[str] = field(default_factory=list)

    def to_fhir(self) -> dict:
        issue: dict = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


class FhirError(Exception):
    """An error with the HTTP status and the OperationOutcome issues it should produce."""

    status = 400
    code = "processing"

    def __init__(
        self,
        diagnostics: str,
        *,
        status: int | None = None,
        code: str | None = None,
        expression: list[str] | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.issues = issues or [Issue("error", self.code, diagnostics, expression or [])]

    @property
    def diagnostics(self) -> str:
        return self.issues[0].diagnostics if self.issues else str(self)


class BadRequest(FhirError):
    status, code = 400, "invalid"


class InvalidResource(FhirError):
    """Structurally invalid content (400), with the JSON path of each problem."""

    status, code = 400, "structure"


class Unauthorized(FhirError):
    """No or bad credentials on a protected call (the api adds WWW-Authenticate)."""

    status, code = 401, "login"


class Forbidden(FhirError):
    status, code = 403, "forbidden"


class TooManyRequests(FhirError):
    status, code = 429, "throttled"


class NotFound(FhirError):
    status, code = 404, "not-found"


class Gone(FhirError):
    status, code = 410, "deleted"


class MethodNotAllowed(FhirError):
    status, code = 405, "not-supported"


class NotAcceptable(FhirError):
    status, code = 406, "not-supported"


class Conflict(FhirError):
    status, code = 409, "conflict"


class PreconditionFailed(FhirError):
    status, code = 412, "conflict"


class PayloadTooLarge(FhirError):
    status, code = 413, "too-costly"


class UnsupportedMediaType(FhirError):
    status, code = 415, "not-supported"


class AnswerTooLarge(FhirError):
    """A valid request whose answer would pass a size limit (included resources, a Bundle's
    bytes): 422, as the request itself is not too large (413) nor malformed (400)."""

    status, code = 422, "too-costly"


class BusinessRuleViolation(FhirError):
    status, code = 422, "business-rule"


class NotSupported(FhirError):
    """A feature the server does not implement (yet): it says so instead of pretending."""

    status, code = 501, "not-supported"


class TooCostly(FhirError):
    status, code = 400, "too-costly"
