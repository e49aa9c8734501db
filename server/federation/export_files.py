"""The resources of one file of an export (`export.Job`), read from the store a page at a time,
limited to what the caller may discover (`Access.search_filter`, `Access.can_include`).

A system export holds every resource of each type the caller may search, changed after `_since`
if given. A practitioner's export holds that practitioner's agenda, found from it: the
Practitioner, its PractitionerRoles, the Schedules naming either as actor, their Slots to come,
the Appointments on those Slots, the Patients of those Appointments the caller may read, and the
Locations and Organizations the Schedules, roles and places name (a loader needs what is referred
to). With `_since`, the same agenda, only what changed after it.

The agenda is found again for each file: Schedules and roles are few, Slots and Appointments are
read page by page, and a file only keeps the ids it still has to look up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from typing import Any

from server.auth.access import Access
from server.federation.export import Job
from server.federation.snapshot import match
from server.fhir.search import Match
from server.fhir.values import split_reference
from server.store.base import Query, Store, Version

PAGE = 500
VALUES = 100  # references in one search (the or_values cap)
Page = list[dict[str, Any]]


@dataclass(frozen=True)
class Export:
    store: Store
    access: Access
    job: Job
    own_base: str

    async def pages(self, kind: str) -> AsyncIterator[Page]:
        """The bodies of the file of `kind`, a page at a time."""
        if self.job.practitioner is None:
            since = [match(kind, "_lastUpdated", f"gt{self.job.since}")] if self.job.since else []
            async for versions in self._found(kind, since):
                yield [v.body for v in versions if v.body is not None]
            return
        async for versions in self._agenda(kind):
            yield [v.body for v in versions if v.body is not None and self._changed(v)]

    # the practitioner's agenda

    async def _agenda(self, kind: str) -> AsyncIterator[list[Version]]:
        practitioner = f"Practitioner/{self.job.practitioner}"
        found = self._found_by("PractitionerRole", "practitioner", [practitioner])
        roles = [v async for page in found for v in page]
        if kind in ("Practitioner", "PractitionerRole"):
            yield await self._many([practitioner]) if kind == "Practitioner" else roles
            return
        actors = [practitioner, *(f"PractitionerRole/{r.id}" for r in roles)]
        schedules = [v async for page in self._found_by("Schedule", "actor", actors) for v in page]
        if kind == "Schedule":
            yield schedules
        elif kind in ("Location", "Organization"):
            yield await self._places(kind, roles, schedules)
        else:
            async for page in self._booked(kind, [f"Schedule/{s.id}" for s in schedules]):
                yield page

    async def _places(
        self, kind: str, roles: list[Version], schedules: list[Version]
    ) -> list[Version]:
        named = [*self._refs(roles, "location"), *self._refs(schedules, "actor")]
        locations = await self._many([r for r in named if r.startswith("Location/")])
        if kind == "Location":
            return locations
        owners = [
            *self._refs(roles, "organization"),
            *self._refs(locations, "managingOrganization"),
        ]
        return await self._many(owners)

    async def _booked(self, kind: str, schedules: list[str]) -> AsyncIterator[list[Version]]:
        """The Slots to come of the Schedules, or the Appointments on them, or their Patients."""
        after = [match("Slot", "start", f"ge{self.job.transaction_time}")]
        seen: set[str] = set()
        async for slots in self._found_by("Slot", "schedule", schedules, after):
            if kind == "Slot":
                yield slots
                continue
            named = [f"Slot/{s.id}" for s in slots]
            async for appointments in self._found_by("Appointment", "slot", named):
                if kind == "Appointment":
                    yield appointments
                    continue
                patients = sorted(
                    {r for r in self._refs(appointments, "participant") if r.startswith("Patient/")}
                    - seen
                )
                seen.update(patients)
                yield [p for p in await self._many(patients) if self._may_read(p)]

    # reading

    async def _found_by(
        self, kind: str, name: str, values: list[str], more: list[Match] | None = None
    ) -> AsyncIterator[list[Version]]:
        """Every resource whose `name` is one of `values`, a chunk of values at a time."""
        for start in range(0, len(values), VALUES):
            chunk = ",".join(values[start : start + VALUES])
            async for page in self._found(kind, [match(kind, name, chunk), *(more or [])]):
                yield page

    async def _found(self, kind: str, matches: list[Match]) -> AsyncIterator[list[Version]]:
        hidden = self.access.search_filter(kind)
        query = Query(kind, [*matches, *([hidden] if hidden is not None else [])], count=PAGE)
        cursor: str | None = None
        while True:
            found = await self.store.find(replace(query, cursor=cursor))
            yield found.versions
            if not found.next_cursor:
                return
            cursor = found.next_cursor

    async def _many(self, references: Iterable[str]) -> list[Version]:
        keys = sorted({tuple(r.split("/", 1)) for r in references})
        found = await self.store.current_many([(k, i) for k, i in keys])
        return [v for v in found if self._may_read(v)]

    def _may_read(self, version: Version) -> bool:
        return self.access.can_include(version.type, version.body)

    def _changed(self, version: Version) -> bool:
        return self.job.since is None or version.last_updated > self.job.since

    def _refs(self, versions: list[Version], element: str) -> list[str]:
        """The `Type/id` references in one element of the resources (a reference, or a list
        of references or of participants)."""
        found = []
        for version in versions:
            value = (version.body or {}).get(element)
            for item in value if isinstance(value, list) else [value]:
                holder = item.get("actor", item) if isinstance(item, dict) else None
                reference = holder.get("reference") if isinstance(holder, dict) else None
                if isinstance(reference, str):
                    kind, ident = split_reference(reference, self.own_base)
                    if kind and ident:
                        found.append(f"{kind}/{ident}")
        return found
