"""The Appointment status machine, the one table every write of an Appointment is checked against.

The statuses are those of FHIR R4B (http://hl7.org/fhir/ValueSet/appointmentstatus). An
appointment moves forward along

    proposed -> pending -> booked -> arrived -> checked-in -> fulfilled

possibly skipping steps (a proposal booked without a hold, a booking fulfilled with no
check-in); only a booked appointment (`booked`, `arrived`, `checked-in`) ends `fulfilled`, or
`noshow` when the patient did not come. `waitlist` stands beside `proposed` (an appointment to
schedule when a slot frees up) and moves on as a proposal does. Any status that is not final may
go to `cancelled` or `entered-in-error`. `cancelled`, `noshow`, `fulfilled` and
`entered-in-error` are final: nothing leaves them (a cancelled appointment is never revived:
book again). Writing the same status again is no transition, so it is always allowed.
"""

from __future__ import annotations

from server.fhir import outcome
from server.scheduling.vocabulary import BOOKED

STEPS = ("proposed", "pending", "booked", "arrived", "checked-in")
FINAL = frozenset({"cancelled", "noshow", "fulfilled", "entered-in-error"})
ENDINGS = frozenset({"cancelled", "entered-in-error"})  # from any status that is not final


def _after(step: str) -> frozenset[str]:
    return frozenset(STEPS[STEPS.index(step) + 1 :])


def _machine() -> dict[str, frozenset[str]]:
    """Each status, and the statuses it may move to."""
    moves = {step: _after(step) | ENDINGS for step in STEPS}
    moves["proposed"] |= {"waitlist"}
    moves["waitlist"] = _after("proposed") | ENDINGS
    for status in BOOKED:
        moves[status] |= {"fulfilled", "noshow"}
    return {**moves, **{status: frozenset() for status in FINAL}}


NEXT = _machine()


def allowed(was: str | None, status: str | None) -> bool:
    """May an Appointment in status `was` (None: it is new) be written in `status`?"""
    if was is None or was == status:
        return True
    return status in NEXT.get(was, frozenset())


def check(appointment_id: str, was: str | None, status: str | None) -> None:
    """422 `business-rule` naming both statuses unless the move is allowed."""
    if allowed(was, status):
        return
    final = " (a final status)" if was in FINAL else ""
    raise outcome.invalid_one(
        f"Appointment/{appointment_id} cannot go from {was}{final} to {status}",
        "Appointment.status",
        code="business-rule",
    )
