"""The caller of one request, as its access token (or the sandbox) says."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.auth.scopes import Scopes

SANDBOX_CLIENT = "sandbox"


@dataclass(frozen=True)
class Caller:
    """A client app acting, with the scopes its token grants.

    `owners` are the Organizations and Practitioners (as `Type/id`) whose own client this is:
    their agenda software. `admin` is the operator's client, allowed everything. `on_behalf_of`
    is the person operating the app, when the request names one (a Reference)."""

    client_id: str
    scopes: Scopes
    owners: frozenset[str] = frozenset()
    admin: bool = False
    on_behalf_of: dict[str, Any] | None = field(default=None)


def sandbox() -> Caller:
    """Auth off (`creneau serve --sandbox`): every request acts as an admin client."""
    return Caller(SANDBOX_CLIENT, Scopes.parse("system/*.cruds"), admin=True)
