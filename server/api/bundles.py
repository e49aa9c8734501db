"""Batch and transaction Bundles.

A transaction runs every entry in one store Transaction: all or nothing. Entries run in the order
the specification sets (DELETE, POST, PUT/PATCH, GET), POSTs that others reference first;
`urn:uuid:` full URLs are given their ids before anything runs, and every reference to them is
rewritten. A batch runs each entry in its own transaction and reports each outcome.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from server.api.interactions import Interactions
from server.api.replies import Reply, parse_etag
from server.fhir import outcome, resources
from server.fhir.bundles import bundle, response_entry
from server.store.base import Reader, Store, Transaction
from server.store.writes import new_id

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


async def process(fhir: Interactions, store: Store, body: Any) -> Reply:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise outcome.bad_request("POST to the base takes a batch or transaction Bundle")
    kind = body.get("type")
    entries = body.get("entry", [])
    if kind not in ("batch", "transaction") or not isinstance(entries, list):
        raise outcome.bad_request("The Bundle type must be batch or transaction")
    for position, entry in enumerate(entries):
        _check_entry(entry, position)
    if kind == "batch":
        return Reply(
            200, bundle("batch-response", [await _batch_entry(fhir, store, e) for e in entries])
        )
    async with store.transaction() as tx:
        replies = await _transaction(fhir, tx, entries)
    return Reply(200, bundle("transaction-response", [_entry(reply) for reply in replies]))


def _check_entry(entry: Any, position: int) -> None:
    request = entry.get("request") if isinstance(entry, dict) else None
    if (
        not isinstance(request, dict)
        or request.get("method") not in ORDER
        or not isinstance(request.get("url"), str)
    ):
        raise outcome.bad_request(f"Bundle.entry[{position}].request needs a method and a url")
    if not isinstance(entry.get("fullUrl", ""), str):
        raise outcome.bad_request(f"Bundle.entry[{position}].fullUrl must be a string")


async def _batch_entry(fhir: Interactions, store: Store, entry: dict[str, Any]) -> dict[str, Any]:
    try:
        async with store.transaction() as tx:
            return _entry(await run(fhir, tx, entry))
    except outcome.FhirError as error:
        return response_entry(error.status, outcome=error.outcome())


async def _transaction(
    fhir: Interactions, tx: Transaction, entries: list[dict[str, Any]]
) -> list[Reply]:
    ids = await _assign_ids(fhir, tx, entries)
    entries = [{**entry, "resource": _rewrite(entry.get("resource"), ids)} for entry in entries]
    replies: dict[int, Reply] = {}
    for position in _execution_order(entries, ids):
        try:
            replies[position] = await run(
                fhir, tx, entries[position], ids.get(entries[position].get("fullUrl", ""))
            )
        except outcome.FhirError as error:
            issues = [
                replace(i, diagnostics=f"Bundle.entry[{position}]: {i.diagnostics}")
                for i in error.issues
            ]
            raise outcome.FhirError(error.status, issues) from None
    return [replies[position] for position in range(len(entries))]


async def _assign_ids(
    fhir: Interactions, reader: Reader, entries: list[dict[str, Any]]
) -> dict[str, str]:
    """`urn:uuid:` full URL → the `Type/id` it will have (an existing match for ifNoneExist)."""
    ids: dict[str, str] = {}
    for entry in entries:
        full_url, request = entry.get("fullUrl", ""), entry["request"]
        if request["method"] != "POST" or not full_url.startswith("urn:"):
            continue
        resource_type = request["url"].split("?")[0]
        resources.check_type(resource_type)
        assigned = new_id()
        if request.get("ifNoneExist"):
            existing = await fhir._matching(reader, resource_type, request["ifNoneExist"])
            if len(existing) == 1:
                assigned = existing[0].id
        ids[full_url] = f"{resource_type}/{assigned}"
    return ids


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _rewrite(value, ids) for key, value in node.items()}
    if isinstance(node, list):
        return [_rewrite(item, ids) for item in node]
    if isinstance(node, str) and node in ids:
        return ids[node]
    return node


def _execution_order(entries: list[dict[str, Any]], ids: dict[str, str]) -> list[int]:
    """Positions by method order; among POSTs, those referenced by other POSTs first."""
    created = set(ids.values())

    def depth(position: int, seen: frozenset[int] = frozenset()) -> int:
        entry = entries[position]
        if entry["request"]["method"] != "POST" or position in seen:
            return 0
        needed = _references(entry.get("resource")) & created
        owners = [
            p
            for p, e in enumerate(entries)
            if ids.get(entries[p].get("fullUrl", "")) in needed and p != position
        ]
        return 1 + max((depth(p, seen | {position}) for p in owners), default=0)

    return sorted(
        range(len(entries)), key=lambda p: (ORDER[entries[p]["request"]["method"]], depth(p))
    )


def _references(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["reference"]} if isinstance(node.get("reference"), str) else set()
        return found.union(*(_references(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_references(item) for item in node))
    return set()


async def run(
    fhir: Interactions, tx: Transaction, entry: dict[str, Any], assigned: str | None = None
) -> Reply:
    """One Bundle entry, as the matching REST interaction."""
    request = entry["request"]
    method, url = request["method"], urlsplit(request["url"])
    parts = [p for p in url.path.strip("/").split("/") if p]
    resource = entry.get("resource")
    if_match = parse_etag(request.get("ifMatch"))
    if not parts:
        raise outcome.bad_request(f"Entry url {request['url']!r} names no resource type")
    if method == "POST":
        return await fhir.create(
            tx,
            parts[0],
            resource,
            if_none_exist=request.get("ifNoneExist"),
            assigned_id=assigned.split("/")[1] if assigned else None,
        )
    if method == "PUT":
        if len(parts) == 1:
            return await fhir.conditional_update(
                tx, parts[0], url.query, resource, if_match=if_match
            )
        return await fhir.update(tx, parts[0], parts[1], resource, if_match=if_match)
    if method == "PATCH" and len(parts) == 2:
        return await fhir.patch(
            tx, parts[0], parts[1], _patch_operations(resource), if_match=if_match
        )
    if method == "DELETE":
        if len(parts) == 1:
            return await fhir.conditional_delete(tx, parts[0], url.query)
        return await fhir.delete(tx, parts[0], parts[1], if_match=if_match)
    return await _get(fhir, tx, parts, url.query)


async def _get(fhir: Interactions, tx: Transaction, parts: list[str], query: str) -> Reply:
    if len(parts) == 1:
        return await fhir.search(parts[0], parse_qsl(query), strict=False, reader=tx)
    if len(parts) == 2:
        return await fhir.read(parts[0], parts[1], reader=tx)
    if len(parts) == 4 and parts[2] == "_history":
        return await fhir.vread(parts[0], parts[1], parts[3])
    raise outcome.bad_request(f"Unsupported GET in a Bundle: {'/'.join(parts)}")


def _patch_operations(resource: Any) -> Any:
    """A PATCH entry carries its JSON Patch as a Binary resource (base64 data)."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        try:
            return orjson.loads(base64.b64decode(resource.get("data", "")))
        except (ValueError, orjson.JSONDecodeError):
            raise outcome.bad_request("The PATCH entry's Binary does not hold JSON Patch") from None
    raise outcome.bad_request("A PATCH entry needs a Binary resource holding the JSON Patch")


def _entry(reply: Reply) -> dict[str, Any]:
    location = reply.headers.get("Location")
    meta = reply.body.get("meta", {}) if reply.body else {}  # an instant, not the HTTP date
    return response_entry(
        reply.status,
        resource=reply.body,
        location=location,
        etag=reply.headers.get("ETag"),
        last_modified=meta.get("lastUpdated"),
    )
