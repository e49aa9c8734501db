"""AuditEvent bodies: what was asked (the action), by whom (the client, and the person it acts
for), about what (the resources), with what outcome.

One AuditEvent per request that writes or runs an operation, written in the transaction of the
change; refusals get one too (see `queue`). The action comes from the HTTP method and path, in
the terms of the FHIR RESTful interactions (`restful-interaction` codes as the subtype).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from server.auth.caller import Caller

Body = dict[str, Any]

INTERACTION = "http://hl7.org/fhir/restful-interaction"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
OPERATION = "https://fhir.creneau.org/CodeSystem/operation"
CLIENT = "https://fhir.creneau.org/client"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
OBSERVER = {"display": "Créneau FHIR server"}
MAX_ENTITIES = 50  # an event names at most this many resources, and counts the rest

# AuditEvent.outcome: 0 success, 4 minor failure (the request was refused), 8 serious failure
SUCCESS, REFUSED, FAILED = "0", "4", "8"

ACTIONS = {  # interaction -> AuditEvent.action (CRUD + Execute)
    "create": "C",
    "read": "R",
    "vread": "R",
    "search-type": "R",
    "search-system": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "batch": "E",
    "transaction": "E",
    "operation": "E",
}


@dataclass(frozen=True)
class Action:
    """What a request asks, as a FHIR interaction (and the operation's name, for `$op`), and
    the resource its path names, if any."""

    interaction: str
    operation: str | None = None
    target: str | None = None  # `Type/id` or `Type`, from the path
    query: str = ""

    @property
    def reads_only(self) -> bool:
        return ACTIONS[self.interaction] == "R" or self.operation in READ_ONLY_OPERATIONS


READ_ONLY_OPERATIONS = frozenset({"find", "doses", "grants"})


def action_of(method: str, path: str, query: str = "") -> Action:
    """The interaction a request under `/fhir` asks for, from its method and path."""
    parts = [p for p in path.removeprefix("/fhir").split("/") if p]
    operation = next((p[1:] for p in parts if p.startswith("$")), None)
    target = "/".join(p for p in parts[:2] if not p.startswith(("$", "_"))) or None
    if operation is not None:
        return Action("operation", operation, target, query)
    return Action(_interaction(method, parts), None, target, query)


def _interaction(method: str, parts: list[str]) -> str:
    if not parts:
        return "transaction" if method == "POST" else "search-system"
    if parts[0] == "_history":
        return "history-system"
    if len(parts) == 1:
        return {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(method, "search-type")
    if parts[1] == "_search":
        return "search-type"
    if parts[1] == "_history":
        return "history-type"
    if len(parts) > 2:
        return "vread" if len(parts) == 4 else "history-instance"
    return {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "read")


def audit_event(
    action: Action,
    caller: Caller | None,
    *,
    recorded: str,
    outcome: str,
    entities: list[str],
    more: int = 0,
    description: str | None = None,
    address: str | None = None,
) -> Body:
    """An AuditEvent (R4B) of type `rest`; `entities` are versioned references
    (`Type/id/_history/n`) of what the request wrote, or the resource its path names."""
    subtype = [{"system": INTERACTION, "code": action.interaction}]
    if action.operation:
        subtype.append({"system": OPERATION, "code": action.operation})
    notes = [description] if description else []
    if more:
        notes.append(f"and {more} more resource(s) not listed")
    event: Body = {
        "resourceType": "AuditEvent",
        "type": {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": subtype,
        "action": ACTIONS[action.interaction],
        "recorded": recorded,
        "outcome": outcome,
        "agent": _agents(caller, address),
        "source": {
            "observer": OBSERVER,
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    }
    if notes:
        event["outcomeDesc"] = "; ".join(notes)[:1000]
    listed: list[Body] = [{"what": {"reference": ref}} for ref in entities[:MAX_ENTITIES]]
    if action.query:
        encoded = base64.b64encode(action.query.encode()[:2000]).decode()
        listed.append({"query": encoded, "description": f"query on {action.target or 'all'}"})
    if listed:
        event["entity"] = listed
    return event


def client_reference(client_id: str) -> Body:
    return {"identifier": {"system": CLIENT, "value": client_id}, "display": client_id}


def _agents(caller: Caller | None, address: str | None) -> list[Body]:
    network = {"network": {"address": address, "type": "2"}} if address else {}
    if caller is None:
        unknown = {"display": "unauthenticated caller"}
        return [{"who": unknown, "requestor": True, **network}]
    app: Body = {
        "type": _participation("AUT", "author"),
        "who": client_reference(caller.client_id),
        "requestor": True,
        **network,
    }
    if caller.on_behalf_of is None:
        return [app]
    person = {"type": _participation("PPRF", "primary performer")}
    return [app, {**person, "who": caller.on_behalf_of, "requestor": False}]


def _participation(code: str, display: str) -> Body:
    return {"coding": [{"system": PARTICIPATION, "code": code, "display": display}]}
