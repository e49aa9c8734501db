"""What the consumer takes from a remote line, and how often it polls (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

from server.auth import remote
from server.federation import consumer, remote_lines
from server.federation.sources import Status

MANIFEST = "https://pub.example/fhir/$bulk-publish"
SLOT = {
    "resourceType": "Slot",
    "id": "s1",
    "meta": {"security": [{"system": "https://fhir.creneau.org/CodeSystem/owner", "code": "x"}]},
    "schedule": {"reference": "Schedule/10"},
    "status": "free",
    "start": "2030-03-01T14:00:00.000Z",
    "end": "2030-03-01T14:20:00.000Z",
    "extension": [
        {"url": f"{remote.SMART}/booking-deep-link", "valueUrl": "https://book.example/1"},
        {"url": "https://fhir.creneau.org/StructureDefinition/x", "valueString": "ours"},
    ],
}


def test_a_valid_slot_is_stored_under_its_source() -> None:
    assert remote_lines.problem(SLOT, "Slot") is None
    body = remote_lines.localized(SLOT, "pub", MANIFEST)
    assert body["id"] == "pub.s1" and body["schedule"] == {"reference": "Schedule/pub.10"}
    assert body["meta"] == {"source": MANIFEST, "tag": [{"system": remote.SOURCE, "code": "pub"}]}
    assert {"system": MANIFEST, "value": "Slot/s1"} in body["identifier"]
    assert [e["url"] for e in body["extension"]] == [f"{remote.SMART}/booking-deep-link"]
    assert remote.source_of(body) == "pub"


def test_invalid_lines_say_why() -> None:
    assert "status" in (remote_lines.problem({**SLOT, "status": "waitlist"}, "Slot") or "")
    assert "FHIR" in (remote_lines.problem({**SLOT, "schedule": "Schedule/10"}, "Slot") or "")
    backwards = {**SLOT, "end": "2030-03-01T13:00:00Z"}
    assert "before" in (remote_lines.problem(backwards, "Slot") or "")
    assert "Schedule file" in (remote_lines.problem(SLOT, "Schedule") or "")
    place = {"resourceType": "Location", "id": "1", "name": "A", "address": {"city": "B"}}
    assert "telecom" in (remote_lines.problem(place, "Location") or "")
    schedule = {
        "resourceType": "Schedule",
        "id": "1",
        "serviceType": [{"text": "x"}],
        "actor": [{"reference": "Practitioner/2"}],
    }
    assert "Location" in (remote_lines.problem(schedule, "Schedule") or "")


def test_long_remote_ids_still_make_valid_local_ids() -> None:
    local = remote_lines.local_id("publisher-name", "x" * 64)
    assert len(local) <= 64 and remote_lines.ID.match(local)
    assert local == remote_lines.local_id("publisher-name", "x" * 64)


def test_schedule_actors_other_than_locations_keep_a_display_only() -> None:
    schedule = {
        "resourceType": "Schedule",
        "id": "1",
        "serviceType": [{"text": "x"}],
        "actor": [{"reference": "Location/9"}, {"reference": "Practitioner/2", "display": "Dr"}],
    }
    body = remote_lines.localized(schedule, "p", MANIFEST)
    assert body["actor"] == [{"reference": "Location/p.9"}, {"display": "Dr"}]


def test_polls_at_most_once_a_minute_and_back_off() -> None:
    assert consumer._max_age("public, max-age=300") == 300
    assert consumer._max_age("max-age=5") == consumer.MIN_INTERVAL
    assert consumer._max_age("") == consumer.MIN_INTERVAL
    now = datetime(2030, 1, 1, tzinfo=UTC)
    first = consumer._failed(Status(), Status(), "down", now)
    third = consumer._failed(Status(failures=2), Status(), "down", now)
    assert first.next_poll - now.timestamp() == 60 and third.next_poll - now.timestamp() == 240
    many = consumer._failed(Status(failures=30), Status(), "down", now)
    assert many.next_poll - now.timestamp() == consumer.MAX_BACKOFF
