"""Where an import reads an export from: NDJSON files on this machine (the CLI only), or the
files a Bulk Data manifest lists, downloaded over HTTP with an injected `httpx.AsyncClient`.

Either is read one type at a time and one line at a time: memory does not grow with the files.
A line that is not a JSON object with a `resourceType` and an `id` is refused (400): an export
gives both, and an import needs the id to rewrite the references to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson

from server.federation.bundling import Resource
from server.federation.export import SYSTEM_TYPES
from server.fhir import outcome

NDJSON = "application/fhir+ndjson"


def parsed(line: bytes | str, where: str) -> Resource | None:
    """One NDJSON line as a resource (None for a blank line)."""
    if not line.strip():
        return None
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise outcome.bad_request(f"{where}: not a JSON line ({error})") from error
    if not isinstance(resource, dict) or not resource.get("resourceType") or not resource.get("id"):
        raise outcome.bad_request(f"{where}: each line is a resource with its resourceType and id")
    return resource


class Files:
    """NDJSON files, or the `*.ndjson` files of folders; a file may hold any types."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.paths: list[Path] = []
        for path in paths:
            if path.is_dir():
                self.paths.extend(sorted(path.glob("*.ndjson")))
            elif path.is_file():
                self.paths.append(path)
            else:
                raise ValueError(f"{path}: no such file or folder")

    async def read(self, kind: str) -> AsyncIterator[Resource]:
        for path in self.paths:
            with path.open("rb") as file:
                for number, line in enumerate(file, 1):
                    resource = parsed(line, f"{path.name} line {number}")
                    if resource is not None and resource["resourceType"] == kind:
                        yield resource


class Remote:
    """The files a manifest lists (`output`, or `input` as `$import` names them)."""

    def __init__(
        self, manifest: dict[str, Any], http: httpx.AsyncClient, token: str | None
    ) -> None:
        self.outputs = outputs_of(manifest)
        self.http = http
        self.headers = {"Accept": NDJSON, **({"Authorization": f"Bearer {token}"} if token else {})}

    async def read(self, kind: str) -> AsyncIterator[Resource]:
        for url in (u for t, u in self.outputs if t == kind):
            async with self.http.stream("GET", url, headers=self.headers) as response:
                if response.status_code != 200:
                    raise outcome.bad_request(f"{url}: answered {response.status_code}")
                number = 0
                async for line in response.aiter_lines():
                    number += 1
                    resource = parsed(line, f"{url} line {number}")
                    if resource is not None and resource["resourceType"] == kind:
                        yield resource


async def remote(url: str, http: httpx.AsyncClient, token: str | None) -> tuple[Remote, str]:
    """The files of the manifest at `url` (an export's status URL), and its `request`."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = await http.get(url, headers=headers)
    if response.status_code != 200:
        raise outcome.bad_request(f"{url}: answered {response.status_code}, not a manifest")
    try:
        manifest = response.json()
    except ValueError as error:
        raise outcome.bad_request(f"{url}: not a JSON manifest") from error
    return Remote(manifest, http, token), str(manifest.get("request", ""))


def outputs_of(manifest: Any) -> list[tuple[str, str]]:
    """(type, url) of each file a manifest lists; only http(s) URLs, never paths."""
    items = manifest.get("output", manifest.get("input")) if isinstance(manifest, dict) else None
    if not isinstance(items, list):
        raise outcome.bad_request("A manifest lists its files in `output` (or `input`)")
    found = []
    for item in items:
        kind = item.get("type") if isinstance(item, dict) else None
        url = item.get("url") if isinstance(item, dict) else None
        if kind not in SYSTEM_TYPES or not isinstance(url, str):
            raise outcome.bad_request(
                f"Each file is a type ({', '.join(SYSTEM_TYPES)}) and a url, not {item!r:.80}"
            )
        if not url.startswith(("http://", "https://")):
            raise outcome.bad_request(f"{url[:80]!r}: files are read from http(s) URLs only")
        found.append((kind, url))
    return found
