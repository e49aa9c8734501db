"""Who reads a publication, and a file's pages each under a time budget of its own."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from server.auth import remote
from server.auth.grants import EVERYONE, Grant
from server.federation.snapshot import paced, public
from server.fhir.outcome import FhirError
from server.store import deadline

NOW = "2026-03-01T10:00:00.000Z"


def test_the_public_discovers_the_owners_that_opened_discovery_to_everyone_only() -> None:
    grants = [
        Grant("Organization/open", EVERYONE, frozenset({"discover"})),
        Grant("Organization/mine", "anonymous", frozenset({"discover", "book", "manage"})),
        Grant(
            "Organization/later", EVERYONE, frozenset({"discover"}), start="2026-04-01T00:00:00Z"
        ),
    ]
    reader = public(grants, NOW)
    # and remote publications, which the publication leaves out (`api.publication._snapshot`)
    assert reader.discover == {"Organization/open", remote.PUBLISHER}
    assert not reader.manage and not reader.book and not reader.admin
    assert reader.search_filter("Slot") is not None  # its public Slots only


async def _pages(count: int) -> AsyncIterator[bytes]:
    for n in range(count):
        deadline.check()  # as every store statement does
        time.sleep(0.02)  # a page's work
        yield b"" if n == 1 else f"{n}\n".encode()


async def test_each_page_of_a_file_has_a_budget_of_its_own() -> None:
    with deadline.budget(0.05):  # the request's: shorter than the whole file
        chunks = [chunk async for chunk in paced(_pages(5), 0.05)]
        with pytest.raises(FhirError):
            _ = [chunk async for chunk in _pages(5)]
    assert chunks == [b"0\n", b"2\n", b"3\n", b"4\n"]  # an empty page sends nothing
