"""The access log (`creneau serve --access-log`): one line per request with its id, method,
path, status, time taken and, for a refusal, its reason, so that a line of a balancer's log,
of this log and of the audit trail can be matched by `X-Request-ID`."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A child of uvicorn's own logger: its handler and format, wherever uvicorn logs.
log = logging.getLogger("uvicorn.error.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began, status = time.perf_counter(), 0

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            state = scope.get("state", {})
            took = (time.perf_counter() - began) * 1000
            reason = state.get("refusal") if status >= 400 else None
            log.info(
                "%s %s %s %d %.1f ms%s",
                state.get("request_id", "-"),
                scope["method"],
                scope["path"],
                status,
                took,
                f" {reason}" if reason else "",
            )
