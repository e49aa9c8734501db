"""Every canonical of ours the server writes resolves on the server (`GET /fhir/CodeSystem?url=`,
`/fhir/StructureDefinition?url=`), and the codes it writes are those its CodeSystems list."""

from __future__ import annotations

import pytest

from server.audit import events, provenance
from server.auth import audiences, grants, labels
from server.fhir import conformance
from server.fhir.invariants import PROFILES
from server.scheduling import vocabulary
from server.stats import tags

WRITTEN = [
    grants.GRANT,
    grants.GRANT_CODE["system"],
    vocabulary.HOLD_EXPIRES,
    vocabulary.DOSE_RESERVATION,
    vocabulary.BOOKING_RECORD,
    vocabulary.SLOT_STATE,
    vocabulary.HOLD_LAPSED["coding"][0]["system"],
    labels.OWNER,
    labels.CLIENT,
    audiences.LABEL,
    events.OPERATION,
    provenance.CHANGE,
    *sorted(tags.OURS),
    "https://fhir.creneau.org/StructureDefinition/schedule-availability",
]


@pytest.mark.parametrize("canonical", WRITTEN)
def test_each_canonical_we_write_resolves(canonical: str) -> None:
    found = conformance.load().by_url(canonical)
    assert found is not None and found["url"] == canonical


def concepts(canonical: str) -> set[str]:
    code_system = conformance.load().by_url(canonical) or {}
    assert code_system.get("content") == "complete"
    return {c["code"] for c in code_system["concept"]}


def test_the_codes_we_write_are_those_the_code_systems_list() -> None:
    assert set(provenance.CHANGES) == concepts(provenance.CHANGE)
    assert concepts(vocabulary.SLOT_STATE) == {vocabulary.HELD_MARK["code"]}
    assert concepts(grants.GRANT_CODE["system"]) == {grants.GRANT_CODE["code"]}
    measures = {tags.BOOKED, tags.CANCELLED, tags.NOSHOW, tags.FULFILLED}
    assert measures | {tags.ADMINISTERED, tags.DELIVERED} == concepts(tags.MEASURE)


def test_every_extension_we_define_has_its_file() -> None:
    urls = {
        conformance.load().by_url(u)["url"]  # type: ignore[index]
        for u in WRITTEN
        if "/StructureDefinition/" in u
    }
    files = {p.name for p in PROFILES.glob("StructureDefinition-*.json")}
    assert {f"StructureDefinition-{u.rsplit('/', 1)[1]}.json" for u in urls} <= files
