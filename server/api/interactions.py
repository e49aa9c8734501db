"""The FHIR RESTful interactions, free of HTTP framing.

REST routes and Bundle entries both call these, so a write reached through a transaction Bundle
meets exactly the checks of the same write sent alone. Writes take the Transaction they run in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from server.api import paging
from server.api.replies import Reply, version_reply
from server.audit.trail import TRAIL_TYPES, Trail
from server.auth.access import DIRECTORY, Access, forbidden
from server.fhir import outcome, patching, resources, summary
from server.fhir.bundles import bundle, history_entry, search_entry
from server.fhir.conformity import Conformity
from server.fhir.search import Parser, SearchRequest, count_value
from server.fhir.searchparams import registry
from server.fhir.values import date_range
from server.limits import Limits
from server.store import searching, writes
from server.store.base import Reader, Store, Transaction, Version

CONDITIONAL_LIMIT = 2


@dataclass(frozen=True)
class PatchDraft:
    """A JSON Patch applied to the resource as stored before the write's transaction opened
    (`Interactions.patch_draft`): the validated result, or the error the patch met."""

    version: int
    result: dict[str, Any] | outcome.FhirError


@dataclass
class Interactions:
    store: Store
    base: str
    rules: writes.WriteRules
    access: Access
    trail: Trail | None = None
    limits: Limits = field(default_factory=Limits)
    paging_key: bytes = b""  # signs the cursors of `next`/`previous` links (`paging`)
    conformity: Conformity | None = None  # the profiles written resources claim, checked

    @property
    def warnings(self) -> list[outcome.Issue]:
        """What the writes of this request were accepted despite (`Conformity`)."""
        return self.conformity.warnings if self.conformity is not None else []

    @asynccontextmanager
    async def transaction(self, interaction: str | None = None) -> AsyncIterator[Transaction]:
        """The store transaction writes run in, audited when the request has a trail."""
        opened = self.trail.transaction(self.store, interaction) if self.trail else None
        async with opened or self.store.transaction() as tx:
            yield tx

    # reads

    async def read(
        self, resource_type: str, resource_id: str, reader: Reader | None = None
    ) -> Reply:
        self._scope(resource_type, "r")
        current = await self._live(reader or self.store, resource_type, resource_id)
        return version_reply(200, current, self.base)

    async def vread(self, resource_type: str, resource_id: str, version_id: str) -> Reply:
        resources.check_type(resource_type)
        resources.check_id(resource_id)
        self._scope(resource_type, "r")
        if not version_id.isdecimal() or len(version_id) > 18:
            raise outcome.not_found(
                f"No version {version_id[:20]!r} of {resource_type}/{resource_id}"
            )
        version = await self.store.version(resource_type, resource_id, int(version_id))
        if version is None:
            raise outcome.not_found(
                f"{resource_type}/{resource_id}/_history/{version_id} not found"
            )
        await self._exists(resource_type, resource_id)  # hidden: 404, whatever the version
        if version.deleted:
            raise outcome.gone(f"{resource_type}/{resource_id} was deleted in version {version_id}")
        return version_reply(200, version, self.base)

    async def search(
        self,
        resource_type: str | None,
        params: list[tuple[str, str]],
        *,
        strict: bool,
        reader: Reader | None = None,
        self_url: str = "",
    ) -> Reply:
        if resource_type is None:
            raise outcome.bad_request("Search across all types is not supported: name a type")
        resources.check_type(resource_type)
        self._scope(resource_type, "s")
        request = self.parser(strict).parse(resource_type, params)
        if request.cursor is not None:
            request.cursor = paging.verify(self.paging_key, request.cursor, params)
        result = await searching.search(reader or self.store, request, self.base, self.access)
        return Reply(200, self._searchset(request, result, params, self_url))

    def _searchset(
        self,
        request: SearchRequest,
        result: searching.SearchResult,
        params: list[tuple[str, str]],
        self_url: str,
    ) -> dict[str, Any]:
        page = result.page
        entries = (
            []
            if request.summary == "count"
            else [
                search_entry(
                    summary.apply(v.body or {}, request.summary, request.elements),
                    self.base,
                    "match",
                )
                for v in page.versions
            ]
        )
        entries += [search_entry(v.body or {}, self.base, "include") for v in result.included]
        if request.ignored:
            entries.append(_ignored_outcome(request.ignored))
        links = {"self": self_url}
        base_query = [(k, v) for k, v in params if k != "_cursor"]
        for relation, cursor in (("next", page.next_cursor), ("previous", page.previous_cursor)):
            if cursor:
                signed = paging.sign(self.paging_key, cursor, base_query)
                links[relation] = _link(self.base, request.resource_type, base_query, signed)
        total = page.total if request.total != "none" else None
        return bundle("searchset", entries, total=total, links=links)

    async def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        params: list[tuple[str, str]],
        self_url: str,
    ) -> Reply:
        if resource_type is not None:
            resources.check_type(resource_type)
        if resource_id is not None:
            self._scope(resource_type or "", "r")
            await self._exists(resource_type or "", resource_id)
        else:
            self._whole_history(resource_type)
        options = dict(params)
        count = (
            count_value(options["_count"], self.limits.page_size)
            if options.get("_count", "").isdecimal()
            else 50
        )
        since = None
        if "_since" in options:
            span = date_range(options["_since"])
            if span is None:
                raise outcome.bad_request(f"_since {options['_since']!r} is not an instant")
            since = span[0]
        cursor = options.get("_cursor")
        if cursor is not None:
            cursor = paging.verify(self.paging_key, cursor, params)
        found = await self.store.history(
            resource_type, resource_id, since=since, count=count, cursor=cursor
        )
        entries = [
            history_entry(v.type, v.id, v.version, v.last_updated, v.method, v.body, self.base)
            for v in found.versions
        ]
        links = {"self": self_url}
        if found.next_cursor:
            path = "/".join(p for p in (resource_type, resource_id) if p)
            query = [(k, v) for k, v in params if k != "_cursor"]
            query.append(("_cursor", paging.sign(self.paging_key, found.next_cursor, query)))
            links["next"] = f"{self.base}/{path + '/' if path else ''}_history?{urlencode(query)}"
        return Reply(200, bundle("history", entries, links=links))

    # writes

    async def create(
        self,
        tx: Transaction,
        resource_type: str,
        body: Any,
        *,
        if_none_exist: str | None = None,
        assigned_id: str | None = None,
        validated: bool = False,
    ) -> Reply:
        resources.check_type(resource_type)
        self._scope(resource_type, "c")
        resource = _valid(body, resource_type, validated, self.conformity)
        if if_none_exist:
            await tx.guard(_condition_key(resource_type, if_none_exist))
            existing = await self._matching(tx, resource_type, if_none_exist)
            if len(existing) > 1:
                raise outcome.precondition_failed("If-None-Exist matches several resources")
            if existing:
                return version_reply(200, existing[0], self.base, location=True)
        await self.access.check_write(tx, None, resource, self.base)
        version = await writes.create(
            tx, resource, own_base=self.base, rules=self.rules, resource_id=assigned_id
        )
        return version_reply(201, version, self.base, location=True)

    async def update(
        self,
        tx: Transaction,
        resource_type: str,
        resource_id: str,
        body: Any,
        *,
        if_match: int | None = None,
        validated: bool = False,
    ) -> Reply:
        resources.check_type(resource_type)
        resources.check_id(resource_id)
        resource = _valid(body, resource_type, validated, self.conformity)
        if resource.get("id") != resource_id:
            raise outcome.bad_request(
                f"The resource id {resource.get('id')!r} must equal the URL id {resource_id!r}"
            )
        previous = await self._previous(tx, resource_type, resource_id)
        if previous is not None:
            _append_only(resource_type, "updated")
        self._scope(resource_type, "u" if previous is not None else "c")
        await self.access.check_write(tx, previous, resource, self.base)
        version, created = await writes.update(
            tx, resource, resource_id, own_base=self.base, rules=self.rules, if_match=if_match
        )
        return version_reply(201 if created else 200, version, self.base, location=created)

    async def conditional_update(
        self,
        tx: Transaction,
        resource_type: str,
        query: str,
        body: Any,
        *,
        if_match: int | None = None,
        validated: bool = False,
    ) -> Reply:
        resources.check_type(resource_type)
        self._scope(resource_type, "s")
        await tx.guard(_condition_key(resource_type, query))
        matches = await self._matching(tx, resource_type, query)
        if len(matches) > 1:
            raise outcome.precondition_failed("The conditional update matches several resources")
        given_id = body.get("id") if isinstance(body, dict) else None
        if matches and given_id not in (None, matches[0].id):
            raise outcome.bad_request("The resource id differs from the one the condition found")
        if not matches and given_id is None:
            return await self.create(tx, resource_type, body, validated=validated)
        if not matches and await self._taken(tx, resource_type, str(given_id)):
            # FHIR: no match, and the id given names another resource: 409, never overwrite it
            raise outcome.conflict(
                f"No {resource_type} matches the condition, and {resource_type}/{given_id} "
                "is another resource: its id may not be reused"
            )
        target = matches[0].id if matches else str(given_id)
        return await self.update(
            tx,
            resource_type,
            target,
            {**body, "id": target},  # still valid when `validated`: `target` is a valid id
            if_match=if_match,
            validated=validated,
        )

    @staticmethod
    async def _taken(tx: Transaction, resource_type: str, resource_id: str) -> bool:
        """A live resource has this id (a deleted one's id may be created again)."""
        current = await tx.current(resource_type, resource_id)
        return current is not None and current.body is not None

    async def patch(
        self,
        tx: Transaction,
        resource_type: str,
        resource_id: str,
        operations: Any,
        *,
        if_match: int | None = None,
        draft: PatchDraft | None = None,
    ) -> Reply:
        """`draft`, made before `tx` opened, saves applying and validating the patch while the
        transaction holds the store's write lock, unless the resource has changed since."""
        _append_only(resource_type, "patched")
        operations = patching.check_operations(operations, self.limits.patch_operations)
        current = await self._live(tx, resource_type, resource_id)
        if draft is None or draft.version != current.version:
            draft = self._draft(current, operations)
        if isinstance(draft.result, outcome.FhirError):
            raise draft.result
        return await self.update(
            tx,
            resource_type,
            resource_id,
            draft.result,
            if_match=if_match if if_match is not None else current.version,
            validated=True,
        )

    async def patch_draft(
        self, resource_type: str, resource_id: str, operations: Any
    ) -> PatchDraft | None:
        """The patch applied to the resource as stored now (None: nothing live to patch).
        Call it before opening the write's transaction, as it reads from the store: inside one,
        that read would wait for a second pooled connection while holding the first."""
        _append_only(resource_type, "patched")
        operations = patching.check_operations(operations, self.limits.patch_operations)
        resources.check_type(resource_type)
        resources.check_id(resource_id)
        stored = await self.store.current(resource_type, resource_id)
        if stored is None or stored.deleted:
            return None
        return self._draft(stored, operations)

    def _draft(self, current: Version, operations: list[Any]) -> PatchDraft:
        """Errors are kept, not raised: one met on an earlier version may not hold now."""
        try:
            return PatchDraft(current.version, self._patched(current, operations))
        except outcome.FhirError as error:
            return PatchDraft(current.version, error)

    def _patched(self, current: Version, operations: list[Any]) -> dict[str, Any]:
        patched = patching.apply(current.body, operations, self.limits.patch_result_bytes)
        if (
            not isinstance(patched, dict)
            or patched.get("id") != current.id
            or patched.get("resourceType") != current.type
        ):
            raise outcome.invalid_one("A patch may not change the resource's id or type")
        return resources.validate(patched, current.type, self.conformity)

    async def delete(
        self, tx: Transaction, resource_type: str, resource_id: str, *, if_match: int | None = None
    ) -> Reply:
        resources.check_type(resource_type)
        resources.check_id(resource_id)
        _append_only(resource_type, "deleted")
        self._scope(resource_type, "d")
        previous = await self._previous(tx, resource_type, resource_id)
        if previous is not None:
            await self.access.check_write(tx, previous, None, self.base)
        tombstone = await writes.delete(
            tx, resource_type, resource_id, rules=self.rules, if_match=if_match
        )
        headers = {"ETag": f'W/"{tombstone.version}"'} if tombstone else {}
        return Reply(204, None, headers)

    async def conditional_delete(self, tx: Transaction, resource_type: str, query: str) -> Reply:
        resources.check_type(resource_type)
        _append_only(resource_type, "deleted", "GET, HEAD, POST")
        self._scope(resource_type, "s")
        matches = await self._matching(tx, resource_type, query)
        if len(matches) > 1:
            raise outcome.precondition_failed("The conditional delete matches several resources")
        if not matches:
            return Reply(204)
        return await self.delete(tx, resource_type, matches[0].id)

    # shared

    def parser(self, strict: bool) -> Parser:
        return Parser(registry(), strict=strict, own_base=self.base, limits=self.limits)

    async def _matching(self, reader: Reader, resource_type: str, query: str) -> list[Version]:
        params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
        if not params:
            raise outcome.bad_request("A conditional interaction needs search criteria")
        request = self.parser(strict=True).parse(resource_type, params)
        request.count = CONDITIONAL_LIMIT
        request.total = "none"
        return (await searching.search(reader, request, self.base, self.access)).page.versions

    async def _live(self, reader: Reader, resource_type: str, resource_id: str) -> Version:
        current = await self._exists(resource_type, resource_id, reader)
        if current.deleted:
            raise outcome.gone(f"{resource_type}/{resource_id} has been deleted")
        return current

    async def _exists(
        self, resource_type: str, resource_id: str, reader: Reader | None = None
    ) -> Version:
        resources.check_type(resource_type)
        resources.check_id(resource_id)
        current = await (reader or self.store).current(resource_type, resource_id)
        if current is None or not self._may_see(current):
            raise outcome.not_found(f"{resource_type}/{resource_id} not found")
        return current

    def _may_see(self, version: Version) -> bool:
        """A deleted resource shows as gone (410) only to who may see what it was."""
        if self.access.admin or version.type in DIRECTORY:
            return True
        return version.body is not None and self.access.can_read(version.type, version.body)

    async def _previous(
        self, reader: Reader, resource_type: str, resource_id: str
    ) -> dict[str, Any] | None:
        current = await reader.current(resource_type, resource_id)
        return current.body if current is not None and not current.deleted else None

    def _scope(self, resource_type: str, permission: str) -> None:
        self.access.caller.scopes.require(resource_type, permission)

    def _whole_history(self, resource_type: str | None) -> None:
        """Type and system history list every version of everything: they cannot be filtered
        by owner, so only admin clients read them, or the history of directory types."""
        self._scope(resource_type or "*", "s")
        if self.access.admin or (resource_type in DIRECTORY):
            return
        raise forbidden(
            "The history of a whole type or of the server is for admin clients; "
            "read the history of each resource instead"
        )


def _valid(
    body: Any, resource_type: str, validated: bool, conformity: Conformity | None
) -> dict[str, Any]:
    """`body` once `resources.validate` accepts it; `validated`: the caller had it accepted
    before opening the write's transaction (Bundle entries, patches), not to repeat that work
    while the transaction holds the store's write lock."""
    if validated and isinstance(body, dict):
        return body
    return resources.validate(body, resource_type, conformity)


def _append_only(resource_type: str, done: str, allow: str = "GET, HEAD") -> None:
    """The audit trail is never rewritten through the API, not even by an admin client."""
    if resource_type in TRAIL_TYPES:
        raise outcome.method_not_allowed(
            f"{resource_type} is append-only: it cannot be {done} (create a new one instead)",
            allow,
        )


def _ignored_outcome(names: list[str]) -> dict[str, Any]:
    issues = [
        outcome.Issue(
            "not-supported",
            f"Search parameter {name!r} is unknown and was ignored",
            severity="warning",
        )
        for name in names
    ]
    return {"resource": outcome.operation_outcome(issues), "search": {"mode": "outcome"}}


def _link(base: str, resource_type: str, params: list[tuple[str, str]], cursor: str) -> str:
    return f"{base}/{resource_type}?{urlencode([*params, ('_cursor', cursor)])}"


def _condition_key(resource_type: str, query: str) -> str:
    """The guard of a conditional write: one key for one condition however it is spelled (order
    of parameters, percent-encoding), so two concurrent writes on it conflict (see
    `Transaction.guard`)."""
    params = sorted(parse_qsl(query.lstrip("?"), keep_blank_values=True))
    return f"{resource_type}?{urlencode(params)}"
