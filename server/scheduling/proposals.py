"""Appointments built from Slots: what `$find` proposes and what `$hold` with a slot holds."""

from __future__ import annotations

from typing import Any

from server.store.base import Version

Body = dict[str, Any]
PROPOSAL = "p-"  # a proposal's id: this prefix and its slot's id; no stored Appointment has one


def proposal_id(slot_id: str) -> str | None:
    """The id `$find` gives the proposal of a slot (None where it would pass 64 characters)."""
    return PROPOSAL + slot_id if len(PROPOSAL + slot_id) <= 64 else None


def proposed_slot(appointment_id: str | None) -> str | None:
    """The slot a proposal id stands for, or None if it is not one."""
    if appointment_id and appointment_id.startswith(PROPOSAL):
        return appointment_id.removeprefix(PROPOSAL) or None
    return None


def proposal(slot: Version, schedule: Body) -> Body:
    """A `proposed` Appointment for the slot, its participants the Schedule's actors."""
    body = slot.body or {}
    appointment: Body = {
        "resourceType": "Appointment",
        **({"id": made} if (made := proposal_id(slot.id)) else {}),
        "status": "proposed",
        "start": body.get("start"),
        "end": body.get("end"),
        "slot": [{"reference": f"Slot/{slot.id}"}],
        "participant": [
            {"actor": actor, "required": "required", "status": "needs-action"}
            for actor in schedule.get("actor", [])
        ],
    }
    for element, fallback in (
        ("serviceCategory", schedule.get("serviceCategory")),
        ("serviceType", schedule.get("serviceType")),
        ("specialty", schedule.get("specialty")),
        ("appointmentType", None),
    ):
        value = body.get(element) or fallback
        if value:
            appointment[element] = value
    return appointment


def with_status(appointment: Body, status: str) -> Body:
    """The appointment in `status`, its participants accepting (a pending or booked one)."""
    participants = [
        {**p, "status": "accepted" if status in ("pending", "booked") else p.get("status")}
        for p in appointment.get("participant", [])
    ]
    return {**appointment, "status": status, "participant": participants}
