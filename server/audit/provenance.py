"""Provenance of each booking, cancellation and reschedule: which app changed which Appointment
version, for whom, from which version."""

from __future__ import annotations

from typing import Any

from server.audit.events import client_reference
from server.auth.caller import Caller
from server.store.base import Version

Body = dict[str, Any]

DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
CHANGE = "https://fhir.creneau.org/CodeSystem/appointment-change"
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
CHANGES = {  # change -> display
    "book": "Appointment booked",
    "cancel": "Appointment cancelled",
    "reschedule": "Appointment moved to other slots",
}


def provenance(version: Version, change: str, caller: Caller, recorded: str) -> Body:
    """The Provenance of one Appointment version; `change` is one of CHANGES."""
    operation = "CREATE" if version.version == 1 else "UPDATE"
    agents: list[Body] = [
        {"type": _participant("author"), "who": client_reference(caller.client_id)}
    ]
    if caller.on_behalf_of is not None:
        agents.append({"type": _participant("enterer"), "who": caller.on_behalf_of})
    body: Body = {
        "resourceType": "Provenance",
        "target": [{"reference": f"{version.type}/{version.id}/_history/{version.version}"}],
        "recorded": recorded,
        "activity": {
            "coding": [
                {"system": DATA_OPERATION, "code": operation},
                {"system": CHANGE, "code": change, "display": CHANGES[change]},
            ]
        },
        "agent": agents,
    }
    if version.version > 1:
        source = f"{version.type}/{version.id}/_history/{version.version - 1}"
        body["entity"] = [{"role": "revision", "what": {"reference": source}}]
    return body


def _participant(code: str) -> Body:
    return {"coding": [{"system": PARTICIPANT, "code": code}]}
