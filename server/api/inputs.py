"""Operation inputs as a dependency: the scope the operation needs, then, for an operation on an
instance, that instance, then its inputs read as its OperationDefinition names them."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from server.api.deps import AccessDep, SettingsDep, StoreDep, strict
from server.api.negotiation import read_json
from server.auth.access import Access
from server.fhir import operations, outcome, parameters, resources
from server.fhir.parameters import Inputs
from server.store.base import Store


def inputs_of(definition_id: str, scope: tuple[str, str]) -> Any:
    """A dependency checking the scope the operation declares it needs, as (type, SMART v2
    permission) (403); on an instance (`[base]/Type/id/$op`), that it exists and the caller may
    see it (404, 410) before any input is looked at; then reading its inputs from the query
    (GET) or a Parameters body (POST): an unknown input is ignored, or refused (400) under
    `Prefer: handling=strict`, as for search parameters."""
    known = operations.input_names(definition_id)

    async def read(
        request: Request, settings: SettingsDep, access: AccessDep, store: StoreDep
    ) -> Inputs:
        access.caller.scopes.require(*scope)
        if request.path_params:
            await _check_target(request, store, access)
        bodiless = request.headers.get("content-length", "0") == "0"
        if request.method == "GET" or (bodiless and "content-type" not in request.headers):
            inputs = parameters.from_query(request.query_params.multi_items())
        else:
            inputs = parameters.from_body(await read_json(request, settings.max_body_bytes))
        unknown = sorted(set(inputs.values) - known)
        if unknown and strict(request):
            raise outcome.bad_request(f"Unknown input(s) {', '.join(unknown)} for this operation")
        kept = {k: v for k, v in inputs.values.items() if k in known}
        return Inputs(kept, known, ignored=tuple(unknown))

    return Depends(read)


async def _check_target(request: Request, store: Store, access: Access) -> None:
    """The instance an operation is called on: `/fhir/Type/id/$op` (one path parameter)."""
    (target_id,) = request.path_params.values()
    resources.check_id(target_id)  # then it reads the same in the path, percent-encoding or not
    segments = request.url.path.split("/")
    resource_type = segments[segments.index(target_id) - 1]
    current = await store.current(resource_type, target_id)
    if current is None or not access.can_read(resource_type, current.body or None):
        raise outcome.not_found(f"{resource_type}/{target_id} not found")
    if current.deleted:
        raise outcome.gone(f"{resource_type}/{target_id} has been deleted")
