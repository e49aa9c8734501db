"""The one place where failures become HTTP responses: always an OperationOutcome."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from server.api.deps import trail_of
from server.api.negotiation import fhir_response
from server.audit.events import FAILED, REFUSED
from server.fhir import outcome
from server.fhir.outcome import FhirError, Issue

log = logging.getLogger("creneau")
HTTP_CODES = {
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    413: "too-costly",
    415: "not-supported",
}


def install(app: FastAPI) -> None:
    app.add_exception_handler(FhirError, _fhir_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _request_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


AUDITED_ALWAYS = (401, 403, 409)  # refusals audited even on reads


async def _fhir_error(request: Request, error: FhirError) -> Response:
    reason = error.issues[0].diagnostics if error.issues else None
    request.state.refusal = (reason or "")[:200]  # for the access log
    _audit(request, error.status, reason)
    return fhir_response(error.status, error.outcome(), headers=error.headers or None)


async def _http_error(request: Request, error: HTTPException) -> Response:
    code = HTTP_CODES.get(error.status_code, "processing")
    issue = Issue(code, str(error.detail))
    return fhir_response(
        error.status_code, outcome.operation_outcome([issue]), headers=dict(error.headers or {})
    )


async def _request_error(request: Request, error: RequestValidationError) -> Response:
    issues = [
        Issue("invalid", str(e.get("msg")), expression=(".".join(map(str, e["loc"])),))
        for e in error.errors()
    ]
    return fhir_response(400, outcome.operation_outcome(issues))


async def _unexpected(request: Request, error: Exception) -> Response:
    log.exception("Unexpected error on %s %s", request.method, request.url.path)
    _audit(request, 500, "internal error")
    issue = Issue("exception", "Internal error; it has been logged", severity="fatal")
    return fhir_response(500, outcome.operation_outcome([issue]))


def _audit(request: Request, status: int, description: str | None) -> None:
    """Queue the AuditEvent of a refused or failed request: its transaction, if any, rolled
    back with the trail it carried. Writes and operations always; reads when refused
    (401, 403, 409), failed (5xx), or when the operator audits reads."""
    trail = getattr(request.state, "trail", None)
    if trail is None and status == 401 and request.url.path.startswith("/fhir"):
        trail = trail_of(request, None)
    if trail is None:
        return
    audit_reads = request.app.state.settings.audit_reads
    if (
        trail.action.reads_only
        and status not in AUDITED_ALWAYS
        and status < 500
        and not audit_reads
    ):
        return
    code = FAILED if status >= 500 else REFUSED
    request.app.state.audit.put(trail.event(code, f"{status}: {description or ''}"[:300]))
