"""Bundles the server returns: searchset, history, batch- and transaction-response."""

from __future__ import annotations

from typing import Any

from server.fhir.values import now_instant, unique_id


def bundle(
    kind: str,
    entries: list[dict[str, Any]],
    *,
    total: int | None = None,
    links: dict[str, str] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": unique_id(),
        "meta": {"lastUpdated": now_instant()},
        "type": kind,
    }
    if total is not None:
        result["total"] = total
    if links:
        result["link"] = [{"relation": relation, "url": url} for relation, url in links.items()]
    result["entry"] = entries
    if not entries:
        del result["entry"]
    return result


def search_entry(resource: dict[str, Any], base: str, mode: str) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": mode},
    }


def collection_entry(resource: dict[str, Any], base: str) -> dict[str, Any]:
    return {"fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}", "resource": resource}


def history_entry(
    resource_type: str,
    resource_id: str,
    version: int,
    last_updated: str,
    method: str,
    body: dict[str, Any] | None,
    base: str,
) -> dict[str, Any]:
    url = f"{resource_type}/{resource_id}"
    entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
    if body is not None:
        entry["resource"] = body
    entry["request"] = {"method": method, "url": url if method != "POST" else resource_type}
    status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(method, "200 OK")
    entry["response"] = {"status": status, "etag": f'W/"{version}"', "lastModified": last_updated}
    return entry


def response_entry(
    status: int,
    *,
    resource: dict[str, Any] | None = None,
    location: str | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    outcome: dict[str, Any] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"status": str(status)}
    if location:
        response["location"] = location
    if etag:
        response["etag"] = etag
    if last_modified:
        response["lastModified"] = last_modified
    if outcome:
        response["outcome"] = outcome
    entry: dict[str, Any] = {}
    if resource is not None:
        entry["fullUrl"] = location.split("/_history")[0] if location else None
        entry["resource"] = resource
        if entry["fullUrl"] is None:
            del entry["fullUrl"]
    entry["response"] = response
    return entry
