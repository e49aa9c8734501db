"""Batch and transaction Bundles.

A transaction runs every entry in one store Transaction: all or nothing. Entries run in the order
the specification sets (DELETE, POST, PUT/PATCH, GET), POSTs that others reference first;
`urn:uuid:` full URLs are given their ids before anything runs, and every reference to them is
rewritten. A batch runs each entry in its own transaction and reports each outcome.

What needs no store is done before the store transaction opens, so that its write lock (SQLite)
is held for the writes only: the entries are counted (`bundle_entries`), their resources
validated, their JSON Patches decoded and tried on the resources as stored then.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio.to_thread

from server.api.interactions import Interactions, PatchDraft
from server.api.replies import Reply, parse_etag
from server.fhir import jsonbody, outcome, resources
from server.fhir.bundles import bundle, response_entry
from server.store.base import Transaction
from server.store.writes import new_id

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class Step:
    """One entry made ready before its store transaction opens: its resource validated (in a
    transaction, once its references to other entries are rewritten), a PATCH entry's JSON
    Patch decoded and tried on the resource as stored then."""

    method: str
    parts: list[str]  # the url's path segments: Type, id, ...
    query: str
    request: dict[str, Any]
    resource: Any = None
    assigned: str | None = None  # the Type/id a POST with a urn full URL is created as
    operations: list[Any] = field(default_factory=list)
    draft: PatchDraft | None = None
    warnings: list[outcome.Issue] = field(default_factory=list)  # its resource's (`Conformity`)


async def process(fhir: Interactions, body: Any) -> Reply:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise outcome.bad_request("POST to the base takes a batch or transaction Bundle")
    kind = body.get("type")
    entries = body.get("entry", [])
    if kind not in ("batch", "transaction") or not isinstance(entries, list):
        raise outcome.bad_request("The Bundle type must be batch or transaction")
    _check_count(entries, fhir.limits.bundle_entries)
    for position, entry in enumerate(entries):
        _check_entry(entry, position)
    if kind == "batch":
        return Reply(200, bundle("batch-response", [await _batch_entry(fhir, e) for e in entries]))
    ids = _new_ids(entries)
    order = _execution_order(entries, ids)
    steps = [await _transaction_step(fhir, entry, p, ids) for p, entry in enumerate(entries)]
    # every entry's validation in one trip to a thread: off the event loop, as one trip per
    # entry would be, without a thread hop per entry (a thousand of them cost half a second)
    await anyio.to_thread.run_sync(_validate_all, fhir, steps)
    async with fhir.transaction("transaction") as tx:
        replies = await _transaction(fhir, tx, steps, order)
    answered = [_entry(reply, step.warnings) for reply, step in zip(replies, steps, strict=True)]
    return Reply(200, bundle("transaction-response", answered))


def _check_count(entries: list[Any], most: int) -> None:
    if len(entries) > most:
        raise outcome.bad_request(
            f"The Bundle has {len(entries)} entries, more than the cap bundle_entries = {most} "
            "(CRENEAU_LIMIT_BUNDLE_ENTRIES)",
            "too-costly",
        )


CONDITIONS = ("ifNoneMatch", "ifModifiedSince", "ifMatch", "ifNoneExist")  # strings in FHIR


def _check_entry(entry: Any, position: int) -> None:
    request = entry.get("request") if isinstance(entry, dict) else None
    if (
        not isinstance(request, dict)
        or not isinstance(request.get("method"), str)
        or request["method"] not in ORDER
        or not isinstance(request.get("url"), str)
    ):
        raise outcome.bad_request(f"Bundle.entry[{position}].request needs a method and a url")
    if not isinstance(entry.get("fullUrl", ""), str):
        raise outcome.bad_request(f"Bundle.entry[{position}].fullUrl must be a string")
    for name in CONDITIONS:
        if name in request and not isinstance(request[name], str):
            raise outcome.bad_request(f"Bundle.entry[{position}].request.{name} must be a string")


async def _batch_entry(fhir: Interactions, entry: dict[str, Any]) -> dict[str, Any]:
    try:
        step = await _step(fhir, entry)
        async with fhir.transaction("batch") as tx:
            return _entry(await run(fhir, tx, step), step.warnings)
    except outcome.FhirError as error:
        return response_entry(error.status, outcome=error.outcome())


async def _transaction_step(
    fhir: Interactions, entry: dict[str, Any], position: int, ids: dict[str, str]
) -> Step:
    assigned = ids.get(entry.get("fullUrl", "")) if entry["request"]["method"] == "POST" else None
    with _at_entry(position):
        return await _step(
            fhir,
            {**entry, "resource": _rewrite(entry.get("resource"), ids)},
            assigned,
            validated_later=True,
        )


def _validate_all(fhir: Interactions, steps: list[Step]) -> None:
    for position, step in enumerate(steps):
        if step.method in ("POST", "PUT"):
            with _at_entry(position):
                _validate(fhir, step)


def _validate(fhir: Interactions, step: Step) -> None:
    before = len(fhir.warnings)
    step.resource = resources.validate(step.resource, step.parts[0], fhir.conformity)
    step.warnings = fhir.warnings[before:]


async def _transaction(
    fhir: Interactions, tx: Transaction, steps: list[Step], order: list[int]
) -> list[Reply]:
    await _reuse_matches(fhir, tx, steps)
    replies: dict[int, Reply] = {}
    for position in order:
        with _at_entry(position):
            replies[position] = await run(fhir, tx, steps[position])
    return [replies[position] for position in range(len(steps))]


@contextmanager
def _at_entry(position: int) -> Iterator[None]:
    """An entry's error names the entry."""
    try:
        yield
    except outcome.FhirError as error:
        issues = [
            replace(i, diagnostics=f"Bundle.entry[{position}]: {i.diagnostics}")
            for i in error.issues
        ]
        raise outcome.FhirError(error.status, issues, error.headers) from None


def _new_ids(entries: list[dict[str, Any]]) -> dict[str, str]:
    """`urn:` full URL of a POST → the `Type/id` it will be created as, a new id (one matching
    its ifNoneExist replaces it once the store transaction is open: `_reuse_matches`)."""
    ids: dict[str, str] = {}
    for position, entry in enumerate(entries):
        full_url, request = entry.get("fullUrl", ""), entry["request"]
        if request["method"] != "POST" or not full_url.startswith("urn:"):
            continue
        if full_url in ids:
            raise outcome.bad_request(f"Bundle.entry[{position}].fullUrl repeats {full_url!r}")
        resource_type = request["url"].split("?")[0]
        resources.check_type(resource_type)
        ids[full_url] = f"{resource_type}/{new_id()}"
    return ids


async def _reuse_matches(fhir: Interactions, tx: Transaction, steps: list[Step]) -> None:
    """A POST whose ifNoneExist matches one resource stands for it: the references to it are
    rewritten again, `Type/id` for `Type/id`, which keeps the resources as valid as they were."""
    renamed: dict[str, str] = {}
    for step in steps:
        condition = step.request.get("ifNoneExist")
        if step.method == "POST" and step.assigned and condition:
            existing = await fhir._matching(tx, step.parts[0], condition)
            if len(existing) == 1:
                renamed[step.assigned] = f"{step.parts[0]}/{existing[0].id}"
    if not renamed:
        return
    for step in steps:
        step.resource = _rewrite(step.resource, renamed)
        step.assigned = renamed.get(step.assigned or "", step.assigned)


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    """Recursion as deep as the JSON, which `jsonbody.MAX_DEPTH` bounds for every body."""
    if isinstance(node, dict):
        return {key: _rewrite(value, ids) for key, value in node.items()}
    if isinstance(node, list):
        return [_rewrite(item, ids) for item in node]
    if isinstance(node, str) and node in ids:
        return ids[node]
    return node


def _execution_order(entries: list[dict[str, Any]], ids: dict[str, str]) -> list[int]:
    """Positions by method order; among POSTs, those referenced by other POSTs first (Slot.schedule
    and Appointment.slot must resolve when written). Each entry and reference is walked once."""
    posts = [p for p, entry in enumerate(entries) if entry["request"]["method"] == "POST"]
    rank = {p: r for r, p in enumerate(_references_first(_needs(entries, posts, ids)))}
    return sorted(
        range(len(entries)), key=lambda p: (ORDER[entries[p]["request"]["method"]], rank.get(p, 0))
    )


def _needs(
    entries: list[dict[str, Any]], posts: list[int], ids: dict[str, str]
) -> dict[int, list[int]]:
    """Each POST → the other POSTs it references by their `urn:` full URL."""
    owner = {entries[p]["fullUrl"]: p for p in posts if entries[p].get("fullUrl", "") in ids}
    needs: dict[int, list[int]] = {}
    for p in posts:
        targets = {owner.get(reference) for reference in _references(entries[p].get("resource"))}
        needs[p] = sorted(t for t in targets if t is not None and t != p)
    return needs


def _references_first(needs: dict[int, list[int]]) -> list[int]:
    """The POSTs, each after those it needs. POSTs that need each other (a cycle of references:
    valid, as FHIR gives every entry its id first) come together, in Bundle order."""
    return [p for component in _Components(needs).found for p in sorted(component)]


class _Components:
    """Tarjan's strongly connected components of `needs`, each listed after those it needs;
    walked with a stack of its own, so that no chain of references can exhaust Python's."""

    def __init__(self, needs: dict[int, list[int]]) -> None:
        self.needs = needs
        self.index: dict[int, int] = {}
        self.low: dict[int, int] = {}
        self.open: list[int] = []  # visited, in a component not closed yet
        self.is_open: set[int] = set()
        self.found: list[list[int]] = []
        for root in needs:
            if root not in self.index:
                self._walk(root)

    def _walk(self, root: int) -> None:
        path = [(root, self._enter(root))]
        while path:
            node, targets = path[-1]
            target = next(targets, None)
            if target is None:
                path.pop()
                self._leave(node, path[-1][0] if path else None)
            elif target not in self.index:
                path.append((target, self._enter(target)))
            elif target in self.is_open:
                self.low[node] = min(self.low[node], self.index[target])

    def _enter(self, node: int) -> Iterator[int]:
        self.index[node] = self.low[node] = len(self.index)
        self.open.append(node)
        self.is_open.add(node)
        return iter(self.needs[node])

    def _leave(self, node: int, parent: int | None) -> None:
        if parent is not None:
            self.low[parent] = min(self.low[parent], self.low[node])
        if self.low[node] != self.index[node]:
            return
        component: list[int] = []
        while not component or component[-1] != node:
            component.append(self.open.pop())
            self.is_open.discard(component[-1])
        self.found.append(component)


def _references(node: Any) -> set[str]:
    """Every `reference` string in a resource, walked without recursion."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("reference"), str):
                found.add(item["reference"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


async def _step(
    fhir: Interactions,
    entry: dict[str, Any],
    assigned: str | None = None,
    *,
    validated_later: bool = False,
) -> Step:
    request = entry["request"]
    url = urlsplit(request["url"])
    parts = [p for p in url.path.strip("/").split("/") if p]
    if not parts:
        raise outcome.bad_request(f"Entry url {request['url']!r} names no resource type")
    step = Step(request["method"], parts, url.query, request, entry.get("resource"), assigned)
    if step.method in ("POST", "PUT"):
        resources.check_type(parts[0])
        if not validated_later:  # in a worker thread, as CPU work is
            await anyio.to_thread.run_sync(_validate, fhir, step)
    elif step.method == "PATCH":
        if len(parts) != 2:
            raise outcome.bad_request("A PATCH entry's url names one resource: Type/id")
        step.operations = _patch_operations(step.resource)
        step.draft = await fhir.patch_draft(parts[0], parts[1], step.operations)
    return step


async def run(fhir: Interactions, tx: Transaction, step: Step) -> Reply:
    """One Bundle entry, as the matching REST interaction."""
    parts, request = step.parts, step.request
    if_match = parse_etag(request.get("ifMatch"))
    if step.method == "POST":
        return await fhir.create(
            tx,
            parts[0],
            step.resource,
            if_none_exist=request.get("ifNoneExist"),
            assigned_id=step.assigned.split("/")[1] if step.assigned else None,
            validated=True,
        )
    if step.method == "PUT":
        if len(parts) == 1:
            return await fhir.conditional_update(
                tx, parts[0], step.query, step.resource, if_match=if_match, validated=True
            )
        return await fhir.update(
            tx, parts[0], parts[1], step.resource, if_match=if_match, validated=True
        )
    if step.method == "PATCH":
        return await fhir.patch(
            tx, parts[0], parts[1], step.operations, if_match=if_match, draft=step.draft
        )
    if step.method == "DELETE":
        if len(parts) == 1:
            return await fhir.conditional_delete(tx, parts[0], step.query)
        return await fhir.delete(tx, parts[0], parts[1], if_match=if_match)
    return await _get(fhir, tx, parts, step.query)


async def _get(fhir: Interactions, tx: Transaction, parts: list[str], query: str) -> Reply:
    if len(parts) == 1:
        return await fhir.search(parts[0], parse_qsl(query), strict=False, reader=tx)
    if len(parts) == 2:
        return await fhir.read(parts[0], parts[1], reader=tx)
    if len(parts) == 4 and parts[2] == "_history":
        return await fhir.vread(parts[0], parts[1], parts[3])
    raise outcome.bad_request(f"Unsupported GET in a Bundle: {'/'.join(parts)}")


def _patch_operations(resource: Any) -> Any:
    """A PATCH entry carries its JSON Patch as a Binary resource (base64 data), held to the same
    rules as a JSON Patch sent alone (`jsonbody`: depth, keys)."""
    if not (
        isinstance(resource, dict)
        and resource.get("resourceType") == "Binary"
        and isinstance(resource.get("data", ""), str)
    ):
        raise outcome.bad_request("A PATCH entry needs a Binary resource holding the JSON Patch")
    try:
        decoded = base64.b64decode(resource.get("data", ""))
    except ValueError:
        raise outcome.bad_request("The PATCH entry's Binary data is not base64") from None
    return jsonbody.parse(decoded)


def _entry(reply: Reply, warnings: list[outcome.Issue]) -> dict[str, Any]:
    """A response entry; the warnings its resource was accepted with as its outcome."""
    location = reply.headers.get("Location")
    meta = reply.body.get("meta", {}) if reply.body else {}  # an instant, not the HTTP date
    return response_entry(
        reply.status,
        resource=reply.body,
        location=location,
        etag=reply.headers.get("ETag"),
        last_modified=meta.get("lastUpdated"),
        outcome=outcome.operation_outcome(warnings) if warnings else None,
    )
