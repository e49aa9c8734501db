"""Errors as values carrying their OperationOutcome.

    FhirError                 any failure a client should see, with an HTTP status
     ├─ bad_request      400  malformed syntax, unknown parameter under strict handling
     ├─ (401, 403)            auth: built in `server.auth` (a 401 carries WWW-Authenticate)
     ├─ not_found        404
     ├─ method_not_allowed 405
     ├─ not_acceptable   406  a format we do not serve (XML)
     ├─ conflict         409  version or business conflict
     ├─ gone             410  deleted
     ├─ precondition_failed 412  If-Match mismatch, ambiguous conditional
     ├─ too_large        413
     ├─ unsupported_media 415
     └─ invalid          422  a resource that fails validation

Raised anywhere; rendered as an HTTP response only in `server.api.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: severity, code (IssueType) and what went wrong where."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        issue: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.diagnostics:
            issue["diagnostics"] = self.diagnostics
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


@dataclass
class FhirError(Exception):
    """`headers` go out with the response (a 401's `WWW-Authenticate` challenge)."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def _error(status: int, code: str, message: str, expression: tuple[str, ...] = ()) -> FhirError:
    return FhirError(status, [Issue(code, message, expression=expression)])


def bad_request(message: str, code: str = "invalid") -> FhirError:
    return _error(400, code, message)


def not_found(message: str) -> FhirError:
    return _error(404, "not-found", message)


def method_not_allowed(message: str, allow: str) -> FhirError:
    """405, with the `Allow` header HTTP requires: the methods the resource does take."""
    return FhirError(405, [Issue("not-supported", message)], {"Allow": allow})


def not_acceptable(message: str) -> FhirError:
    return _error(406, "not-supported", message)


def conflict(message: str, code: str = "conflict") -> FhirError:
    return _error(409, code, message)


def gone(message: str) -> FhirError:
    return _error(410, "deleted", message)


def precondition_failed(message: str) -> FhirError:
    return _error(412, "conflict", message)


def too_large(message: str) -> FhirError:
    return _error(413, "too-costly", message)


def unsupported_media(message: str) -> FhirError:
    return _error(415, "not-supported", message)


def invalid(issues: list[Issue]) -> FhirError:
    return FhirError(422, issues)


def invalid_one(message: str, expression: str = "", code: str = "invalid") -> FhirError:
    return invalid([Issue(code, message, expression=(expression,) if expression else ())])
