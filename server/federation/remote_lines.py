"""One line of another publisher's SMART Scheduling Links file: whether it is valid, and what
it becomes in this store.

Valid is valid FHIR R4B (the `fhir.resources` model) and what the SMART profiles ask of it:

    Location   an id, a name, a phone or other telecom with a value, an address
    Schedule   a serviceType, an actor referring to a Location
    Slot       a schedule (`Schedule/id`), status free or busy, start and end instants with
               their offset, start before end; the SMART extensions it carries of their type

Stored, a line gets a local id (`{source}.{remote id}`, a digest for a long remote id), its
references to the publication's Locations and Schedules made local (other actors keep only a
`display`), `meta.source` (the manifest URL), a `meta.tag` naming the source
(`server.auth.remote`) and the remote id as an identifier (system: the manifest URL, value:
`Type/id`). What it says in `meta` and our own extensions (`https://fhir.creneau.org/`) are
dropped: a publisher cannot label access or ask this server to generate Slots.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from server.auth import remote
from server.fhir.values import parse_instant

KINDS = ("Location", "Schedule", "Slot")
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
REFERENCE = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
OURS = "https://fhir.creneau.org/"
SMART_VALUES = {  # extension: (resource, value key)
    remote.BOOKING_DEEP_LINK: ("Slot", "valueUrl"),
    remote.BOOKING_PHONE: ("Slot", "valueString"),
    f"{remote.SMART}/slot-capacity": ("Slot", "valueInteger"),
    f"{remote.SMART}/vaccine-product": ("Schedule", "valueCoding"),
    f"{remote.SMART}/vaccine-dose": ("Schedule", "valueInteger"),
    f"{remote.SMART}/has-availability": ("Location", "valueCode"),
}
MAX_LOCAL = 64

Body = dict[str, Any]


def problem(line: Any, kind: str) -> str | None:
    """Why the line is refused, or None if it is valid as a `kind` of the publication."""
    if not isinstance(line, dict):
        return "not a JSON object"
    if line.get("resourceType") != kind:
        return f"a {line.get('resourceType')!r} line in a {kind} file"
    if not isinstance(line.get("id"), str) or not ID.match(line["id"]):
        return "no valid id"
    try:
        get_fhir_model_class(kind).model_validate(line)
    except (ValidationError, ValueError) as error:
        first = str(error).splitlines()
        return f"not valid FHIR R4B: {' '.join(first[1:3])[:300]}"
    return _smart_problem(line, kind)


def _smart_problem(line: Body, kind: str) -> str | None:
    for item in line.get("extension", []):
        known = SMART_VALUES.get(item.get("url"))
        if known is not None and (known[0] != kind or known[1] not in item):
            return f"extension {item.get('url')} needs {known[1]} on a {known[0]}"
    if kind == "Location":
        if not line.get("name") or not isinstance(line.get("address"), dict):
            return "a Location needs a name and an address"
        if not any(t.get("value") for t in line.get("telecom", [])):
            return "a Location needs a telecom with a value (a phone)"
        return None
    if kind == "Schedule":
        if not line.get("serviceType"):
            return "a Schedule needs a serviceType"
        if "Location" not in {_target(a)[0] for a in line.get("actor", [])}:
            return "a Schedule needs an actor referring to a Location"
        return None
    return _slot_problem(line)


def _slot_problem(line: Body) -> str | None:
    if _target(line.get("schedule"))[0] != "Schedule":
        return "a Slot needs a schedule referring to a Schedule"
    if line.get("status") not in ("free", "busy"):
        return f"a Slot's status is free or busy, not {line.get('status')!r}"
    start, end = line.get("start"), line.get("end")
    if not all(isinstance(v, str) and INSTANT.match(v) for v in (start, end)):
        return "a Slot needs start and end instants with their offset"
    low, high = parse_instant(start), parse_instant(end)
    if low is None or high is None or low >= high:
        return "a Slot's start comes before its end"
    return None


def local_id(source: str, remote_id: str) -> str:
    ident = f"{source}.{remote_id}"
    if len(ident) <= MAX_LOCAL:
        return ident
    return f"{source}.{hashlib.sha256(remote_id.encode()).hexdigest()[:40]}"


def schedule_of(line: Body, source: str) -> str:
    """The local id of the Schedule a valid Slot line refers to."""
    return local_id(source, _target(line.get("schedule"))[1])


def localized(line: Body, source: str, manifest_url: str) -> Body:
    """The valid line as stored here (see the module's docstring)."""
    kind, remote_id = line["resourceType"], line["id"]
    body = {k: v for k, v in line.items() if k not in ("meta", "id", "extension", "contained")}
    body["id"] = local_id(source, remote_id)
    extensions = [e for e in line.get("extension", []) if not str(e.get("url")).startswith(OURS)]
    if extensions:
        body["extension"] = extensions
    mark = {"system": manifest_url, "value": f"{kind}/{remote_id}"}
    body["identifier"] = [*line.get("identifier", []), mark]
    body["meta"] = {"source": manifest_url, "tag": [{"system": remote.SOURCE, "code": source}]}
    if kind == "Slot":
        body["schedule"] = {"reference": f"Schedule/{schedule_of(line, source)}"}
    elif kind == "Schedule":
        body["actor"] = [_actor(a, source) for a in line.get("actor", [])]
    return body


def _actor(actor: Body, source: str) -> Body:
    kind, ident = _target(actor)
    if kind == "Location":
        shown = {"display": actor["display"]} if actor.get("display") else {}
        return {"reference": f"Location/{local_id(source, ident)}", **shown}
    return {"display": actor.get("display") or actor.get("reference") or "unnamed"}


def _target(reference: Any) -> tuple[str, str]:
    """(type, id) of a literal reference, relative or absolute; ("", "") if none."""
    literal = reference.get("reference") if isinstance(reference, dict) else None
    found = REFERENCE.match(literal) if isinstance(literal, str) else None
    return (found.group(1), found.group(2)) if found else ("", "")
