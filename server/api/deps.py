"""Dependencies that keep route signatures short."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request

from server.api.interactions import Interactions
from server.audit.events import SUCCESS, action_of
from server.audit.trail import Trail
from server.auth.access import Access
from server.auth.caller import Caller, sandbox
from server.config import Settings
from server.fhir import outcome
from server.fhir.conformity import Conformity
from server.fhir.values import format_instant
from server.scheduling import generation
from server.scheduling.rules import SchedulingRules
from server.store.base import Store

ON_BEHALF_OF = "x-on-behalf-of"
PERSON_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson")


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


# Dependencies are `async def`: FastAPI runs a plain `def` one in its thread pool, a thread hop
# per dependency per request for what is an attribute read.


async def _settings(request: Request) -> Settings:
    return settings_of(request)


async def _store(request: Request) -> Store:
    return store_of(request)


async def _caller(request: Request) -> Caller:
    """Who calls: the client its bearer token names (401 without a valid one), or the sandbox."""
    if settings_of(request).sandbox:
        return sandbox()
    caller: Caller = await request.app.state.authority.caller(
        request.headers.get("authorization"), on_behalf_of=_on_behalf_of(request)
    )
    return caller


def _on_behalf_of(request: Request) -> dict[str, Any] | None:
    """The person operating the app, from `X-On-Behalf-Of: Practitioner/123`."""
    value = request.headers.get(ON_BEHALF_OF)
    if not value:
        return None
    kind, _, ident = value.strip().partition("/")
    if kind not in PERSON_TYPES or not ident:
        raise outcome.bad_request(
            f"X-On-Behalf-Of names a {', '.join(PERSON_TYPES)} as Type/id, not {value[:60]!r}"
        )
    return {"reference": f"{kind}/{ident}"}


async def _access(request: Request) -> Access:
    caller = await _caller(request)
    if caller.admin:
        return Access(caller)
    now = format_instant(request.app.state.policy.now())
    grants = await request.app.state.grants.of(store_of(request), caller.client_id)
    return Access.of(caller, grants, now)


def trail_of(request: Request, caller: Caller | None) -> Trail:
    """The audit trail of this request (`caller` None: it was refused before it had one)."""
    address = request.client.host if request.client else None
    action = action_of(request.method, request.url.path, request.url.query)
    clock = request.app.state.policy.now
    return Trail(action, caller, settings_of(request).fhir_base, clock, address)


async def _trail(
    request: Request, access: Annotated[Access, Depends(_access)]
) -> AsyncIterator[Trail]:
    """Kept on the request for the audit of its refusal; a read is audited once answered,
    when the operator asks for it (`audit_reads`)."""
    trail = _request_trail(request, access)
    yield trail
    answered(request, trail)


def _request_trail(request: Request, access: Access) -> Trail:
    trail = trail_of(request, access.caller)
    request.state.trail = trail
    return trail


def answered(request: Request, trail: Trail) -> None:
    """After a successful answer: a read is audited when the operator asks for it."""
    if trail.action.reads_only and settings_of(request).audit_reads:
        request.app.state.audit.put(trail.event(SUCCESS))


async def _rules(
    request: Request,
    access: Annotated[Access, Depends(_access)],
    trail: Annotated[Trail, Depends(_trail)],
) -> AsyncIterator[SchedulingRules]:
    """The scheduling rules for this request's writes, on behalf of whoever makes it. The Slots
    of a large generation are written once the route is done (its transactions committed) and
    before it is answered, a batch to a transaction (`generation.Later`)."""
    later = generation.Later()
    rules = _scheduling_rules(request, access, trail, later)
    yield rules
    await later.write(store_of(request), settings_of(request).fhir_base, rules, trail)


def _scheduling_rules(
    request: Request, access: Access, trail: Trail, later: generation.Later
) -> SchedulingRules:
    settings = settings_of(request)
    return SchedulingRules(
        request.app.state.policy,
        access,
        settings.fhir_base,
        trail,
        limits=settings.limits,
        later=later,
        conformity=Conformity(request.app.state.conformance.by_url, strict=strict(request)),
    )


async def _interactions(
    request: Request, rules: Annotated[SchedulingRules, Depends(_rules, scope="function")]
) -> Interactions:
    return _interactions_of(request, rules)


def _interactions_of(request: Request, rules: SchedulingRules) -> Interactions:
    settings = settings_of(request)
    return Interactions(
        store_of(request),
        settings.fhir_base,
        rules,
        rules.access,
        rules.trail,
        limits=settings.limits,
        paging_key=request.app.state.paging_key,
        conformity=Conformity(request.app.state.conformance.by_url, strict=strict(request)),
    )


@asynccontextmanager
async def interactions_by_hand(request: Request) -> AsyncIterator[Interactions]:
    """What `Fhir` gives a route, resolved by hand for the routes served before FastAPI's
    routing (`api.hot_routes`): the same steps as `_trail`, `_rules` and `_interactions`, and
    the same ones once the route is done."""
    access = await _access(request)
    trail = _request_trail(request, access)
    later = generation.Later()
    rules = _scheduling_rules(request, access, trail, later)
    yield _interactions_of(request, rules)
    await later.write(store_of(request), settings_of(request).fhir_base, rules, trail)
    answered(request, trail)


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]
CallerDep = Annotated[Caller, Depends(_caller)]
AccessDep = Annotated[Access, Depends(_access)]
Rules = Annotated[SchedulingRules, Depends(_rules, scope="function")]
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
