"""The files of a publication: their names, the parts of a department, the manifest."""

from __future__ import annotations

from collections import Counter

import pytest

from server.federation import outputs
from server.federation.outputs import SCHEDULES_PER_FILE, Output
from tests.unit.federation.smart_profiles import manifest_problems

BASE = "https://creneau.example/fhir"


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("Location", "all", Output("Location")),
        ("Schedule", "all", Output("Schedule")),
        ("Slot", "75-1-1", Output("Slot", "75", 1, 1)),
        ("Slot", "2A-2-3", Output("Slot", "2A", 2, 3)),
        ("Slot", "971-1-1", Output("Slot", "971", 1, 1)),
        ("Slot", "none-1-1", Output("Slot", "none", 1, 1)),
    ],
)
def test_the_names_the_manifest_gives_are_read_back(kind: str, name: str, expected: Output) -> None:
    assert outputs.parse(kind, name) == expected
    assert expected.name == name


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("Slot", "75-3-2"),  # part beyond the parts
        ("Slot", "75-0-1"),
        ("Slot", "75"),
        ("Slot", "7-1-1"),
        ("Slot", "../75-1-1"),
        ("Location", "75-1-1"),
        ("Appointment", "all"),
        ("Slot", "all"),
    ],
)
def test_a_name_the_server_never_gives_is_no_file(kind: str, name: str) -> None:
    assert outputs.parse(kind, name) is None


def test_a_large_department_is_split_into_parts_that_share_its_schedules_out() -> None:
    schedules = Counter({"75": 2 * SCHEDULES_PER_FILE + 1, "69": 3, "none": 1})
    files = outputs.slot_files(schedules)
    assert [f.name for f in files] == ["69-1-1", "75-1-3", "75-2-3", "75-3-3", "none-1-1"]
    paris = [f for f in files if f.department == "75"]
    ids = [f"schedule-{n}" for n in range(3 * SCHEDULES_PER_FILE)]
    holding = Counter(sum(f.holds("75", i) for f in paris) for i in ids)
    assert holding == {1: len(ids)}  # every Schedule in exactly one part
    sizes = [sum(f.holds("75", i) for i in ids) for f in paris]
    assert all(size > SCHEDULES_PER_FILE * 0.8 for size in sizes), sizes
    assert not any(f.holds("69", ids[0]) for f in paris)


def test_a_schedule_s_part_depends_on_its_id_alone() -> None:
    assert outputs.part_of("abc", 7) == outputs.part_of("abc", 7)
    assert {outputs.part_of(f"s{n}", 4) for n in range(100)} == {1, 2, 3, 4}
    assert Output("Slot", "none", 1, 1).holds(None, "anything")


def test_the_manifest_lists_the_files_with_their_department_and_the_since_asked() -> None:
    files = outputs.slot_files(Counter({"75": 1, "none": 2}))
    since = "2026-03-01T10:00:00.000+01:00"
    manifest = outputs.manifest(
        f"{BASE}/$bulk-publish?_since={since}",
        "2026-03-01T09:05:00.123Z",
        files,
        BASE,
        since=since,
        token=False,
    )
    assert manifest_problems(manifest) == []
    assert manifest["requiresAccessToken"] is False and manifest["error"] == []
    assert [o["type"] for o in manifest["output"]] == ["Location", "Schedule", "Slot", "Slot"]
    paris, elsewhere = manifest["output"][2:]
    assert paris["url"] == (
        f"{BASE}/$bulk-publish/Slot/75-1-1.ndjson?_since=2026-03-01T10%3A00%3A00.000%2B01%3A00"
    )
    assert paris["extension"] == {"state": ["FR-75"]}
    assert "extension" not in elsewhere
