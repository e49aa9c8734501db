"""An Appointment on slots lasts exactly as long as they do: its `start` is the earliest start of
its slots, its `end` the latest end, and several slots are adjacent slots of one Schedule.

Everything that finds an appointment by time reads those two elements (date searches, the
owner's `$cancel-appointments`, the live holds counted in a place's dose ledger), so a client may
not set them apart from the slots: the server fills them in when the client leaves them out
(FHIR's app-3 wants them on every appointment that is not proposed or cancelled) and refuses
(422) an appointment that gives other ones.
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Any

from server.fhir import outcome
from server.fhir.values import parse_instant
from server.store.base import Reader

Body = dict[str, Any]
TIMES = ("start", "end")


async def fitted(
    reader: Reader, previous: Body | None, body: Body, slot_ids: list[str], takes_slots: bool
) -> Body:
    """`body` with the span of its slots as start and end; checked when it is new, takes its
    slots, or changes them or its times (an old appointment is not refused for a slot moved
    after it was released)."""
    unchanged = previous is not None and all(
        previous.get(k) == body.get(k) for k in ("slot", *TIMES)
    )
    if not slot_ids or (unchanged and not takes_slots):
        return body
    found = [await reader.current("Slot", slot_id) for slot_id in sorted(set(slot_ids))]
    slots = [s.body for s in found if s is not None and s.body is not None]
    _check_adjacent(slots)
    span = {"start": min(_edges(slots, "start"), default=None)}
    span["end"] = max(_edges(slots, "end"), default=None)
    timed = dict(body)
    for name, edge in span.items():
        if edge is None:
            continue
        moment, text = edge
        given = body.get(name)
        if given is not None and parse_instant(given) != moment:
            raise outcome.invalid_one(
                f"Appointment.{name} is the {name} of its slots, {text}; not {given}",
                f"Appointment.{name}",
                code="business-rule",
            )
        timed[name] = given if given is not None else text
    return timed


def _check_adjacent(slots: list[Body]) -> None:
    """Several slots make one longer appointment (a long consultation, as GP Connect books
    them): they belong to one Schedule and follow each other without a gap or an overlap."""
    if len(slots) < 2:
        return
    ordered = sorted(slots, key=lambda slot: parse_instant(slot.get("start")) or datetime.max)
    schedules = {str(slot.get("schedule", {}).get("reference")) for slot in ordered}
    follow = all(
        parse_instant(before.get("end")) == parse_instant(after.get("start"))
        for before, after in pairwise(ordered)
    )
    if len(schedules) > 1 or not follow:
        raise outcome.invalid_one(
            "An Appointment's slots are adjacent slots of one Schedule, each starting when the "
            "one before it ends",
            "Appointment.slot",
            code="business-rule",
        )


def _edges(slots: list[Body], name: str) -> list[tuple[datetime, str]]:
    """(instant, as written) of each slot's `start` or `end`."""
    edges = []
    for slot in slots:
        moment = parse_instant(slot.get(name))
        if moment is not None:
            edges.append((moment, str(slot[name])))
    return edges
