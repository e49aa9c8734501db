"""Operation inputs as a dependency: the scope the operation needs, then its inputs read as its
OperationDefinition names them."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from server.api.deps import AccessDep, SettingsDep, strict
from server.api.negotiation import read_json
from server.fhir import operations, outcome, parameters
from server.fhir.parameters import Inputs


def inputs_of(definition_id: str, scope: tuple[str, str]) -> Any:
    """A dependency checking the scope the operation declares it needs, as (type, SMART v2
    permission) (403), and reading its inputs from the query (GET) or a Parameters body (POST):
    an unknown input is ignored, or refused (400) under `Prefer: handling=strict`, as for
    search parameters."""
    known = operations.input_names(definition_id)

    async def read(request: Request, settings: SettingsDep, access: AccessDep) -> Inputs:
        access.caller.scopes.require(*scope)
        bodiless = request.headers.get("content-length", "0") == "0"
        if request.method == "GET" or (bodiless and "content-type" not in request.headers):
            inputs = parameters.from_query(request.query_params.multi_items())
        else:
            inputs = parameters.from_body(await read_json(request, settings.max_body_bytes))
        unknown = sorted(set(inputs.values) - known)
        if unknown and strict(request):
            raise outcome.bad_request(f"Unknown input(s) {', '.join(unknown)} for this operation")
        return Inputs({k: v for k, v in inputs.values.items() if k in known}, known)

    return Depends(read)
