"""The hottest GETs, reads by id and searches of the stored types, matched before FastAPI's
routing: with every router it includes, FastAPI's matching and dependency solving cost more
than the read itself (about half the server's CPU on `GET Slot/{id}`, measured with py-spy).

The routes are the same functions as `api.rest`'s (which stay, for the OpenAPI document and
every path these do not match), with the same dependencies resolved by hand (`deps.reading`):
the same middlewares, headers and error handlers apply, as routes of the same app.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import Response
from starlette.routing import Route

from server.api import deps, rest
from server.api.negotiation import check_accept
from server.fhir.resources import ID_PATTERN, SERVED_TYPES


class _StoredType(Convertor[str]):
    """A path segment naming a stored type (not `metadata`, `$find`, `StructureDefinition`)."""

    regex = "|".join(sorted(SERVED_TYPES))

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class _Id(Convertor[str]):
    regex = ID_PATTERN.pattern.removeprefix("^").removesuffix("$")

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("stored_type", _StoredType())
register_url_convertor("fhir_id", _Id())


async def _search(request: Request) -> Response:
    await check_accept(request)
    fhir, trail = await deps.reading(request)
    response = await rest.search(request.path_params["resource_type"], request, fhir)
    deps.answered(request, trail)
    return response


async def _read(request: Request) -> Response:
    await check_accept(request)
    fhir, trail = await deps.reading(request)
    params = request.path_params
    response = await rest.read(params["resource_type"], params["resource_id"], request, fhir)
    deps.answered(request, trail)
    return response


def install(app: FastAPI) -> None:
    """Ahead of every other route of the app."""
    app.router.routes[0:0] = [
        Route("/fhir/{resource_type:stored_type}", _search, methods=["GET"]),
        Route("/fhir/{resource_type:stored_type}/{resource_id:fhir_id}", _read, methods=["GET"]),
    ]
