"""Searches the stores share: chains and `_has` resolved into plain Matches, then the page,
then `_include`/`_revinclude`. Only `Reader.find` differs from one store to the other.

What a chain, a `_has` or the includes would read beyond the request's limits
(`chain_matches`, `included`) is refused with 400 `too-costly`, never cut short: a page or a
condition answered in part would be a wrong answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from server.fhir.indexing import references
from server.fhir.search import (
    ANY_SYSTEM,
    Chain,
    Condition,
    Has,
    Include,
    Match,
    ReferenceValue,
    SearchRequest,
    TokenValue,
    too_costly,
)
from server.fhir.searchparams import registry
from server.store.base import Found, Query, Reader, Version

ITERATE_DEPTH = 4


class Visibility(Protocol):
    """What the caller may see: a condition added to the search of each type (the page, chains,
    `_has`), and a check of each included resource."""

    def search_filter(self, resource_type: str) -> Match | None: ...

    def can_include(self, resource_type: str, body: dict[str, Any] | None) -> bool: ...


class _Everything:
    def search_filter(self, resource_type: str) -> Match | None:
        return None

    def can_include(self, resource_type: str, body: dict[str, Any] | None) -> bool:
        return True


EVERYTHING = _Everything()


@dataclass
class SearchResult:
    page: Found
    included: list[Version] = field(default_factory=list)


async def search(
    reader: Reader,
    request: SearchRequest,
    own_base: str = "",
    visible: Visibility = EVERYTHING,
) -> SearchResult:
    cap = request.limits.chain_matches
    matches = await resolve(
        reader, request.resource_type, request.conditions, own_base, visible, cap=cap
    )
    if matches is None:
        return SearchResult(Found([], 0 if request.total != "none" else None))
    with_total = (
        request.total in ("accurate", "estimate")
        or request.summary == "count"
        or request.count == 0
    )  # `_count=0` asks for the total alone
    count = 0 if request.summary == "count" else request.count
    page = await reader.find(
        Query(request.resource_type, matches, request.sort, count, request.cursor, with_total)
    )
    if (
        page.total is None
        and request.total == "auto"
        and not page.next_cursor
        and not request.cursor
    ):
        page.total = len(page.versions)
    included = await include(reader, page.versions, request, own_base)
    included = [v for v in included if visible.can_include(v.type, v.body)]
    return SearchResult(page, included)


async def resolve(
    reader: Reader,
    resource_type: str,
    conditions: list[Condition],
    own_base: str,
    visible: Visibility = EVERYTHING,
    *,
    cap: int,
) -> list[Match] | None:
    """Plain Matches equivalent to the conditions, and the caller's visibility condition; None
    when they cannot match anything. A chain or `_has` may match at most `cap` resources."""
    hidden = visible.search_filter(resource_type)
    matches: list[Match] = [hidden] if hidden is not None else []
    for condition in conditions:
        if isinstance(condition, Match):
            matches.append(condition)
            continue
        match = await (
            _chain(reader, condition, own_base, visible, cap)
            if isinstance(condition, Chain)
            else _has(reader, resource_type, condition, own_base, visible, cap)
        )
        if match is None:
            return None
        matches.append(match)
    return matches


async def _chain(
    reader: Reader, chain: Chain, own_base: str, visible: Visibility, cap: int
) -> Match | None:
    targets = await _all(reader, chain.target_type, [chain.condition], own_base, visible, cap)
    if not targets:
        return None
    values = tuple(ReferenceValue(v.type, v.id, f"{v.type}/{v.id}") for v in targets)
    return Match(chain.param, "reference", None, values)


async def _has(
    reader: Reader, resource_type: str, has: Has, own_base: str, visible: Visibility, cap: int
) -> Match | None:
    sources = await _all(reader, has.source_type, [has.condition], own_base, visible, cap)
    param = registry().get(has.source_type, has.reference_param)
    ids = {
        target_id
        for source in sources
        if source.body is not None and param is not None
        for value in param.values(source.body)
        for target_type, target_id, _ in references(value, own_base)
        if target_type == resource_type and target_id
    }
    if not ids:
        return None
    return Match("_id", "token", None, tuple(TokenValue(ANY_SYSTEM, i) for i in sorted(ids)))


async def _all(
    reader: Reader,
    resource_type: str,
    conditions: list[Condition],
    own_base: str,
    visible: Visibility,
    cap: int,
) -> list[Version]:
    matches = await resolve(reader, resource_type, conditions, own_base, visible, cap=cap)
    if matches is None:
        return []
    found = await reader.find(Query(resource_type, matches, count=cap + 1))
    if len(found.versions) > cap:
        raise too_costly(
            f"A chained or _has condition on {resource_type} matches more than {cap} "
            "resources (limit chain_matches); narrow it"
        )
    return found.versions


async def include(
    reader: Reader, matched: list[Version], request: SearchRequest, own_base: str
) -> list[Version]:
    """Resources named by _include and _revinclude, each once, none already matched; more than
    the `included` limit is refused (the client can ask for a smaller page)."""
    cap = request.limits.included
    seen = {(v.type, v.id) for v in matched}
    included: list[Version] = []
    layer = matched
    for depth in range(ITERATE_DEPTH):
        rules = [r for r in request.includes if depth == 0 or r.iterate]
        reverse = [r for r in request.revincludes if depth == 0 or r.iterate]
        found = await _targets(reader, layer, rules, own_base)
        found += await _referrers(reader, layer, reverse, cap + 1)
        layer = [v for v in found if (v.type, v.id) not in seen]
        seen.update((v.type, v.id) for v in layer)
        included += layer
        if len(included) > cap:
            raise too_costly(
                f"The page includes more than {cap} resources (limit included): "
                "ask for a smaller _count or fewer _include/_revinclude"
            )
        if not layer:
            break
    return included


async def _targets(
    reader: Reader, sources: list[Version], rules: list[Include], own_base: str
) -> list[Version]:
    keys: dict[tuple[str, str], None] = {}
    for rule in rules:
        param = registry().get(rule.source_type, rule.param)
        for source in sources:
            if source.type != rule.source_type or source.body is None or param is None:
                continue
            for value in param.values(source.body):
                for target_type, target_id, _ in references(value, own_base):
                    if target_type and target_id and rule.target_type in (None, target_type):
                        keys[(target_type, target_id)] = None
    return await reader.current_many(list(keys))


async def _referrers(
    reader: Reader, targets: list[Version], rules: list[Include], count: int
) -> list[Version]:
    found: list[Version] = []
    for rule in rules:
        values = tuple(
            ReferenceValue(t.type, t.id, f"{t.type}/{t.id}")
            for t in targets
            if rule.target_type in (None, t.type)
        )
        if values:
            query = Query(
                rule.source_type,
                [Match(rule.param, "reference", None, values)],
                count=count,
            )
            found += (await reader.find(query)).versions
    return found
