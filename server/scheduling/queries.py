"""Searches the scheduling domain runs, written as FHIR search parameters so that they use the
same registry, index and both stores as any client's search."""

from __future__ import annotations

from server.fhir import outcome
from server.fhir.search import Parser
from server.fhir.searchparams import registry
from server.store import searching
from server.store.base import Reader, Version

PAGE = 1000


async def find_all(
    reader: Reader,
    own_base: str,
    resource_type: str,
    params: list[tuple[str, str]],
    limit: int = 20_000,
) -> list[Version]:
    """Every match, page after page; more than `limit` is refused rather than cut short."""
    request = Parser(registry(), strict=True, own_base=own_base).parse(resource_type, params)
    request.count, request.total = PAGE, "none"
    found: list[Version] = []
    while True:
        page = (await searching.search(reader, request, own_base)).page
        found += page.versions
        if len(found) > limit:
            raise outcome.FhirError(
                422, [outcome.Issue("too-costly", f"More than {limit} {resource_type} match")]
            )
        if not page.next_cursor:
            return found
        request.cursor = page.next_cursor


def reference(version: Version) -> str:
    return f"{version.type}/{version.id}"
