"""The FHIR REST interactions on stored types, matched before FastAPI's routing.

With every router the app includes, FastAPI's route matching and dependency solving cost more
than the interaction itself: about half the server's CPU on `GET Slot/{id}` and a third on
`POST Slot` (py-spy, cProfile). `api.rest`'s routes are therefore also served from plain
Starlette routes placed first, whose paths only match the types the store holds (not
`metadata`, `$find`, `StructureDefinition`): the same functions, their dependencies resolved
by hand (`deps.interactions_by_hand`), under the same middlewares and error handlers. FastAPI's
copies stay, for the OpenAPI document and for every path these do not match.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import Response
from starlette.routing import Route

from server.api import deps, rest
from server.api.negotiation import check_accept
from server.fhir.resources import ID_PATTERN, SERVED_TYPES

Endpoint = Callable[..., Awaitable[Response]]
PATH_PARAMS = {
    "{resource_type}": "{resource_type:stored_type}",
    "{resource_id}": "{resource_id:fhir_id}",
}


class _Segment(Convertor[str]):
    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class _StoredType(_Segment):
    regex = "|".join(sorted(SERVED_TYPES))


class _Id(_Segment):
    regex = ID_PATTERN.pattern.removeprefix("^").removesuffix("$")


register_url_convertor("stored_type", _StoredType())
register_url_convertor("fhir_id", _Id())


def _by_hand(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint calling a route of `api.rest` as FastAPI would."""
    wanted = set(inspect.signature(endpoint).parameters)

    async def serve(request: Request) -> Response:
        await check_accept(request)  # the rest router's own dependency
        arguments: dict[str, Any] = {
            name: value for name, value in request.path_params.items() if name in wanted
        }
        if "request" in wanted:
            arguments["request"] = request
        if "settings" in wanted:
            arguments["settings"] = deps.settings_of(request)
        if "fhir" not in wanted:
            return await endpoint(**arguments)
        async with deps.interactions_by_hand(request) as fhir:
            return await endpoint(**arguments, fhir=fhir)

    return serve


def install(app: FastAPI) -> None:
    """Ahead of every other route of the app."""
    hot = []
    for route in rest.router.routes:
        if isinstance(route, APIRoute):
            path = route.path
            for generic, specific in PATH_PARAMS.items():
                path = path.replace(generic, specific)
            hot.append(Route(path, _by_hand(route.endpoint), methods=list(route.methods or ())))
    app.router.routes[0:0] = hot
