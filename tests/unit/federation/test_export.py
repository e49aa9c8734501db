"""What an export asks for and lists, and how an import prepares what it loads: pure."""

from __future__ import annotations

import pytest

from server.federation import export, importing
from server.federation.importing_sources import outputs_of, parsed
from server.fhir.outcome import FhirError

JOB = export.Job("j1", "app", "2026-12-07T09:00:00Z", "http://a/fhir/$export", ("Slot",))


def test_types_are_those_asked_in_loading_order() -> None:
    assert export.types_of(None, export.SYSTEM_TYPES) == export.SYSTEM_TYPES
    assert export.types_of("Slot, Schedule", export.SYSTEM_TYPES) == ("Schedule", "Slot")
    with pytest.raises(FhirError):
        export.types_of("Slot,Group", export.SYSTEM_TYPES)
    with pytest.raises(FhirError):
        export.types_of("HealthcareService", export.PRACTITIONER_TYPES)


def test_a_job_survives_its_record_and_lists_one_file_per_type() -> None:
    assert export.Job.of_record("j1", JOB.to_record()) == JOB
    manifest = export.manifest(JOB, "http://a/fhir")
    assert manifest["output"] == [
        {"type": "Slot", "url": "http://a/fhir/$export-file/j1/Slot.ndjson"}
    ]
    assert (
        manifest["requiresAccessToken"] is True
        and manifest["transactionTime"] == JOB.transaction_time
    )
    export.check_format("ndjson")
    with pytest.raises(FhirError):
        export.check_format("text/csv")


def test_an_import_names_what_has_no_identifier_after_its_origin() -> None:
    async def post(bundle: dict) -> dict:  # never called by `prepared`
        raise AssertionError(bundle)

    importer = importing.Importer(post, "http://a/fhir")
    importer.taken = {"Slot/s1"}
    slot = importer.prepared(
        {"resourceType": "Slot", "id": "s1", "status": "busy", "meta": {"x": 1}}
    )
    assert slot["identifier"] == [{"system": "http://a/fhir", "value": "Slot/s1"}]
    assert slot["status"] == "free" and "meta" not in slot
    other = importer.prepared({"resourceType": "Slot", "id": "s2", "status": "busy"})
    assert other["status"] == "busy"
    kept = {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810000000011"}
    named = importer.prepared(
        {"resourceType": "Practitioner", "id": "p", "identifier": [{"value": "x"}, kept]}
    )
    assert named["identifier"][0] == kept
    rules = {"url": "https://fhir.creneau.org/StructureDefinition/schedule-availability"}
    schedule = importer.prepared({"resourceType": "Schedule", "id": "c", "extension": [rules]})
    assert "extension" not in schedule


def test_the_origin_is_the_exporting_base() -> None:
    assert importing.origin_of("http://a/fhir/$export?_type=Slot") == "http://a/fhir"
    assert importing.origin_of("http://a/fhir/Practitioner/7/$export") == "http://a/fhir"


def test_only_urls_and_whole_resources_are_read() -> None:
    assert outputs_of({"output": [{"type": "Slot", "url": "https://a/x.ndjson"}]}) == [
        ("Slot", "https://a/x.ndjson")
    ]
    for wrong in (
        {"output": [{"type": "Slot", "url": "/etc/passwd"}]},
        {"output": [{"type": "Claim", "url": "https://a"}]},
        {},
    ):
        with pytest.raises(FhirError):
            outputs_of(wrong)
    assert parsed(b"  \n", "f") is None
    for line in (b"{", b'{"resourceType": "Slot"}', b"[1]"):
        with pytest.raises(FhirError):
            parsed(line, "f")
