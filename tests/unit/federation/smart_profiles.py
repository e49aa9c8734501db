"""What SMART Scheduling Links asks of a manifest and of each published line, checked the way a
Slot Discovery Client (or Inferno's test kit) would: the FHIR R4B model (`fhir.resources`), then
the elements and extensions of the SMART profiles. Each check returns the problems it found."""

from __future__ import annotations

import re
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

SMART = "http://fhir-registry.smarthealthit.org/StructureDefinition"
INSTANT = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
)  # a timestamp to the second at least, with its offset
ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
URL = re.compile(r"^https?://\S+$")
REFERENCE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")
# Each SMART extension: the resource it goes on, its value's key and what the value must be.
EXTENSIONS: dict[str, tuple[str, str, Any]] = {
    f"{SMART}/booking-deep-link": ("Slot", "valueUrl", lambda v: bool(URL.match(v))),
    f"{SMART}/booking-phone": ("Slot", "valueString", lambda v: isinstance(v, str) and v),
    f"{SMART}/slot-capacity": ("Slot", "valueInteger", lambda v: type(v) is int and v >= 0),
    f"{SMART}/vaccine-product": ("Schedule", "valueCoding", lambda v: bool(v.get("code"))),
    f"{SMART}/vaccine-dose": ("Schedule", "valueInteger", lambda v: type(v) is int and v > 0),
    f"{SMART}/has-availability": (
        "Location",
        "valueCode",
        lambda v: v in ("some", "none", "unknown"),
    ),
}


def manifest_problems(manifest: Any) -> list[str]:
    problems = []
    if not isinstance(manifest, dict):
        return ["the manifest is not a JSON object"]
    if not INSTANT.match(str(manifest.get("transactionTime"))):
        problems.append("transactionTime is not an instant")
    if not URL.match(str(manifest.get("request"))) or "$bulk-publish" not in manifest["request"]:
        problems.append("request is not the manifest's URL")
    if not isinstance(manifest.get("error"), list):
        problems.append("error is not an array")
    outputs = manifest.get("output")
    if not isinstance(outputs, list):
        return [*problems, "output is not an array"]
    for output in outputs:
        if output.get("type") not in ("Location", "Schedule", "Slot"):
            problems.append(f"output type {output.get('type')!r}")
        if not URL.match(str(output.get("url"))):
            problems.append(f"output url {output.get('url')!r}")
        states = output.get("extension", {}).get("state", [])
        if not isinstance(states, list) or not all(isinstance(s, str) for s in states):
            problems.append(f"extension.state of {output.get('url')} is not strings")
    return problems


def line_problems(line: dict[str, Any]) -> list[str]:
    """What is wrong with one NDJSON line as FHIR R4B and as SMART asks it."""
    kind = line.get("resourceType")
    try:
        get_fhir_model_class(str(kind)).model_validate(line)
    except (ValidationError, KeyError, ValueError) as error:
        return [f"{kind}/{line.get('id')} is not valid FHIR: {error}"]
    problems = [] if ID.match(str(line.get("id"))) else [f"id {line.get('id')!r}"]
    problems += {"Location": _location, "Schedule": _schedule, "Slot": _slot}.get(
        str(kind), lambda _: [f"unexpected {kind}"]
    )(line)
    for extension in line.get("extension", []):
        known = EXTENSIONS.get(extension.get("url"))
        if known is None:
            continue
        on, key, good = known
        if on != kind or key not in extension or not good(extension[key]):
            problems.append(f"{kind}/{line['id']}: extension {extension}")
    return problems


def _location(line: dict[str, Any]) -> list[str]:
    problems = [] if line.get("name") else ["a Location has no name"]
    telecom = line.get("telecom", [])
    if not telecom or not all(t.get("system") and t.get("value") for t in telecom):
        problems.append(f"Location/{line['id']} has no phone")
    address = line.get("address", {})
    for part in ("city", "state", "postalCode"):
        if not address.get(part):
            problems.append(f"Location/{line['id']} address has no {part}")
    if not address.get("line"):
        problems.append(f"Location/{line['id']} address has no line")
    return problems


def _schedule(line: dict[str, Any]) -> list[str]:
    problems = [] if line.get("serviceType") else [f"Schedule/{line['id']} has no serviceType"]
    actors = line.get("actor", [])
    if not actors or not all(REFERENCE.match(str(a.get("reference"))) for a in actors):
        problems.append(f"Schedule/{line['id']} actors {actors}")
    return problems


def _slot(line: dict[str, Any]) -> list[str]:
    problems = []
    if not str(line.get("schedule", {}).get("reference", "")).startswith("Schedule/"):
        problems.append(f"Slot/{line['id']} schedule {line.get('schedule')}")
    if line.get("status") not in ("free", "busy"):
        problems.append(f"Slot/{line['id']} status {line.get('status')}")
    for bound in ("start", "end"):
        if not INSTANT.match(str(line.get(bound))):
            problems.append(f"Slot/{line['id']} {bound} {line.get(bound)}")
    return problems


def extension(line: dict[str, Any], name: str) -> Any:
    """The value of the line's SMART extension `name` (None if absent)."""
    url = f"{SMART}/{name}"
    key = EXTENSIONS[url][1]
    return next((e[key] for e in line.get("extension", []) if e.get("url") == url), None)
