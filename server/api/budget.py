"""Every HTTP request runs under its time budget (`CRENEAU_LIMIT_REQUEST_SECONDS`), so that a
runaway request ends as a 503 with `Retry-After` at its next store statement instead of holding
a worker (see `server.store.deadline`)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from server.store import deadline


class TimeBudget:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with deadline.budget(self.seconds):
            await self.app(scope, receive, send)
