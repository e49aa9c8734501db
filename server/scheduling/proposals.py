"""Appointments built from Slots: what `$find` proposes and what `$hold` with a slot holds."""

from __future__ import annotations

from typing import Any

from server.store.base import Version

Body = dict[str, Any]


def proposal(slot: Version, schedule: Body) -> Body:
    """A `proposed` Appointment for the slot, its participants the Schedule's actors."""
    body = slot.body or {}
    appointment: Body = {
        "resourceType": "Appointment",
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
