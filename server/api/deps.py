"""Dependencies that keep route signatures short."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from server.api.interactions import Interactions
from server.config import Settings
from server.scheduling.policy import Agent
from server.scheduling.rules import SchedulingRules
from server.store.base import Store


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _rules(request: Request) -> SchedulingRules:
    """The scheduling rules for this request's writes, on behalf of whoever makes it."""
    return SchedulingRules(request.app.state.policy, Agent(), _settings(request).fhir_base)


def _interactions(request: Request) -> Interactions:
    return Interactions(_store(request), _settings(request).fhir_base, _rules(request))


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]
Rules = Annotated[SchedulingRules, Depends(_rules)]
Fhir = Annotated[Interactions, Depends(_interactions)]


def prefers(request: Request, name: str) -> str | None:
    """The value of one `Prefer` header token (`return`, `handling`), if given."""
    for token in request.headers.get("prefer", "").split(","):
        key, _, value = token.strip().partition("=")
        if key.strip() == name:
            return value.strip().strip('"')
    return None


def strict(request: Request) -> bool:
    return prefers(request, "handling") == "strict"
