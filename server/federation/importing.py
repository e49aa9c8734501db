"""Loading an export (NDJSON resources, one type a file) into this server, through the same
validation and scheduling rules as any write.

Resources go in type by type, those referred to first (`export.SYSTEM_TYPES`), a batch to a
transaction Bundle of conditional creates (`bundling`), given to `post` (the API's transaction
processing, which this room may not import): loading twice adds nothing. A batch the rules refuse
is tried again one resource at a time, each refusal counted with its reason: nothing is forced in.
References are rewritten to the ids this server gave (`ids`: one entry per resource loaded).

Conditional creates need an identifier: a resource without one is given one naming where it came
from (`origin`, the exporting server's base) and its id there, so that a second import of the
same export finds it. A Slot exported `busy` because one of the exported bookings takes it comes
in `free`, and the booking then takes it through the booking rules (`Appointment` after `Slot`):
bookings keep their slots, and a slot is never taken twice. A Schedule comes in without its
availability rules, which would generate Slots beside the exported ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from server.federation import bundling
from server.federation.bundling import Resource
from server.federation.export import SYSTEM_TYPES
from server.fhir.outcome import FhirError
from server.scheduling import availability
from server.scheduling.vocabulary import BOOKED, FULFILLED

BATCH = 100
REASONS = 10  # refusals told in full
Post = Callable[[Resource], Awaitable[Resource]]  # a transaction Bundle in, its response out


class Source(Protocol):
    def read(self, kind: str) -> AsyncIterator[Resource]:
        """The resources of one type, as exported."""


@dataclass
class Report:
    created: Counter[str] = field(default_factory=Counter)
    existing: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    reasons: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        kinds = [k for k in SYSTEM_TYPES if k in {*self.created, *self.existing, *self.refused}]
        return [
            f"{kind}: {self.created[kind]} created, {self.existing[kind]} already there"
            + (f", {self.refused[kind]} refused" if self.refused[kind] else "")
            for kind in kinds
        ] + [f"refused: {reason}" for reason in self.reasons]


class Importer:
    def __init__(self, post: Post, origin: str) -> None:
        self.post, self.origin = post, origin
        self.ids: dict[str, str] = {}  # exported "Type/id" -> this server's "Type/id"
        self.taken: set[str] = set()  # exported "Slot/id" that exported bookings take
        self.report = Report()

    async def load(self, source: Source) -> Report:
        async for appointment in source.read("Appointment"):
            if appointment.get("status") in (*BOOKED, FULFILLED):
                self.taken.update(_slots(appointment))
        for kind in SYSTEM_TYPES:
            batch: list[Resource] = []
            async for resource in source.read(kind):
                batch.append(self.prepared(resource))
                if len(batch) == BATCH:
                    await self._batch(batch)
                    batch = []
            if batch:
                await self._batch(batch)
        return self.report

    def prepared(self, resource: Resource) -> Resource:
        """The resource as it is loaded: identified, a Schedule without its rules, a Slot its
        exported bookings take made free for them to take."""
        body = {k: v for k, v in resource.items() if k != "meta"}
        given = [i for i in body.get("identifier", []) if i.get("system") and i.get("value")]
        if not given:
            own = {"system": self.origin, "value": bundling.key_of(resource)}
            body["identifier"] = [own, *body.get("identifier", [])]
        elif given[0] is not body["identifier"][0]:
            body["identifier"] = [*given, *(i for i in body["identifier"] if i not in given)]
        if body["resourceType"] == "Schedule":
            kept = [e for e in body.get("extension", []) if e.get("url") != availability.URL]
            body = {k: v for k, v in body.items() if k != "extension"}
            body.update({"extension": kept} if kept else {})
        if body["resourceType"] == "Slot" and bundling.key_of(body) in self.taken:
            body["status"] = "free"
        return body

    async def _batch(self, batch: list[Resource]) -> None:
        try:
            await self._post(batch)
        except (FhirError, bundling.Unresolved):
            for resource in batch:  # one by one: what the rules refuse is counted, not forced
                try:
                    await self._post([resource])
                except (FhirError, bundling.Unresolved) as error:
                    self._refuse(resource, error)

    async def _post(self, batch: list[Resource]) -> None:
        reply = await self.post(bundling.transaction(batch, self.ids.get))
        for resource, entry in zip(batch, reply["entry"], strict=True):
            kind = resource["resourceType"]
            created = entry["response"]["status"].startswith("201")
            (self.report.created if created else self.report.existing)[kind] += 1
            self.ids[bundling.key_of(resource)] = f"{kind}/{entry['resource']['id']}"

    def _refuse(self, resource: Resource, error: Exception) -> None:
        self.report.refused[resource["resourceType"]] += 1
        if len(self.report.reasons) < REASONS:
            text = (
                error.outcome()["issue"][0]["diagnostics"]
                if isinstance(error, FhirError)
                else error
            )
            self.report.reasons.append(f"{bundling.key_of(resource)}: {text}")


def _slots(appointment: Resource) -> list[str]:
    return [
        s["reference"]
        for s in appointment.get("slot", [])
        if isinstance(s, dict) and str(s.get("reference", "")).startswith("Slot/")
    ]


def origin_of(request: str) -> str:
    """The exporting server's base, from a manifest's `request` (the kick-off URL)."""
    head = request.split("?", 1)[0]
    for marker in ("/Practitioner/", "/Group/", "/$export"):
        if marker in head:
            return head.split(marker, 1)[0]
    return head
