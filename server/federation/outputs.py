"""The files of a publication and the manifest that lists them (SMART Scheduling Links
`$bulk-publish`, after the FHIR Bulk Data manifest).

One Location file, one Schedule file, and the Slot files: one per department (`extension.state`
naming it, `FR-75`), a department with more than `SCHEDULES_PER_FILE` Schedules split into
parts of about that many. A Schedule's part follows from its id alone (a hash), so that a
Schedule added between the manifest and the files moves no other: every file holds the same
Schedules whichever worker answers, and the parts of one department never overlap.

    GET {base}/$bulk-publish                         the manifest
    GET {base}/$bulk-publish/Location/all.ndjson     Locations
    GET {base}/$bulk-publish/Schedule/all.ndjson     Schedules
    GET {base}/$bulk-publish/Slot/75-1-2.ndjson      Slots of department 75, part 1 of 2
    GET {base}/$bulk-publish/Slot/none-1-1.ndjson    Slots of places with no French postal code
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from server.federation import departments

SCHEDULES_PER_FILE = 500
WHOLE = "all"  # the name of the Location and Schedule files
SLOT_NAME = re.compile(
    r"^(?P<department>[0-9]{2,3}|2A|2B|none)-(?P<part>[1-9][0-9]*)-(?P<parts>[1-9][0-9]*)$"
)


@dataclass(frozen=True)
class Output:
    """One file: its kind and, for Slots, its department and part."""

    kind: str  # Location, Schedule or Slot
    department: str = ""
    part: int = 1
    parts: int = 1

    @property
    def name(self) -> str:
        return WHOLE if self.kind != "Slot" else f"{self.department}-{self.part}-{self.parts}"

    def holds(self, department: str | None, schedule_id: str) -> bool:
        """Whether the Slots of that Schedule (at a place of that department) are in this file."""
        if self.kind != "Slot":
            return True
        return (department or departments.UNKNOWN) == self.department and (
            part_of(schedule_id, self.parts) == self.part
        )

    def url(self, base: str, since: str | None) -> str:
        query = f"?{urlencode({'_since': since})}" if since else ""
        return f"{base}/$bulk-publish/{self.kind}/{self.name}.ndjson{query}"

    def entry(self, base: str, since: str | None) -> dict[str, Any]:
        found: dict[str, Any] = {"type": self.kind, "url": self.url(base, since)}
        if self.kind == "Slot" and self.department != departments.UNKNOWN:
            found["extension"] = {"state": [departments.jurisdiction(self.department)]}
        return found


def parse(kind: str, name: str) -> Output | None:
    """The file a URL names; None for one the server never lists."""
    if kind in ("Location", "Schedule"):
        return Output(kind) if name == WHOLE else None
    found = SLOT_NAME.match(name) if kind == "Slot" else None
    if found is None:
        return None
    part, parts = int(found["part"]), int(found["parts"])
    return Output("Slot", found["department"], part, parts) if part <= parts else None


def part_of(schedule_id: str, parts: int) -> int:
    digest = hashlib.blake2b(schedule_id.encode(), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "big") % parts


def slot_files(schedules: Counter[str]) -> list[Output]:
    """The Slot files for that many Schedules in each department (`departments.UNKNOWN` for
    the places with none), departments in order."""
    found = []
    for department in sorted(schedules):
        parts = max(1, math.ceil(schedules[department] / SCHEDULES_PER_FILE))
        found += [Output("Slot", department, n, parts) for n in range(1, parts + 1)]
    return found


def manifest(
    request: str,
    transaction_time: str,
    files: list[Output],
    base: str,
    *,
    since: str | None,
    token: bool,
) -> dict[str, Any]:
    """The manifest (not a FHIR resource): `transactionTime` is the instant the data is as of,
    the next `_since` a client asks with."""
    return {
        "transactionTime": transaction_time,
        "request": request,
        "requiresAccessToken": token,
        "output": [f.entry(base, since) for f in [Output("Location"), Output("Schedule"), *files]],
        "error": [],
    }
