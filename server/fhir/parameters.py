"""Operation inputs: a `Parameters` body, or the query string of a GET (or of a POST), read into
one shape, name → values, with each value checked for the type the operation expects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.parameters import Parameters
from pydantic import ValidationError

from server.fhir import outcome
from server.fhir.values import parse_instant


@dataclass
class Inputs:
    """Values by parameter name: strings from a query, value[x] or resources from a body."""

    values: dict[str, list[Any]]
    known: frozenset[str] = frozenset()  # the names the operation takes
    ignored: tuple[str, ...] = ()  # names given that it does not take (left out of `values`)

    def all(self, name: str) -> list[Any]:
        return self.values.get(name, [])

    def one(self, name: str, *, required: bool = False) -> Any:
        found = self.all(name)
        if len(found) > 1:
            raise outcome.bad_request(f"Parameter {name!r} may be given once")
        if required and not found:
            raise outcome.bad_request(f"Parameter {name!r} is required", "required")
        return found[0] if found else None

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.one(name, required=required)
        if value is not None and not isinstance(value, str):
            raise outcome.bad_request(f"Parameter {name!r} must be a string")
        return value

    def tokens(self, name: str) -> list[str]:
        """Tokens (`system|code` or `code`) from strings, comma lists or Codings."""
        found = []
        for value in self.all(name):
            if isinstance(value, dict) and value.get("code"):
                system = value.get("system")
                found.append(f"{system}|{value['code']}" if system else value["code"])
            elif isinstance(value, str):
                found += [part for part in value.split(",") if part]
            else:
                raise outcome.bad_request(f"Parameter {name!r} takes tokens or Codings")
        return found

    def instant(self, name: str, *, required: bool = False) -> datetime | None:
        value = self.one(name, required=required)
        if value is None:
            return None
        moment = parse_instant(value)
        if moment is None:
            raise outcome.bad_request(
                f"Parameter {name!r} must be a dateTime with a time and a time zone, "
                f"such as 2026-12-01T08:00:00+01:00"
            )
        return moment

    def boolean(self, name: str) -> bool:
        value = self.one(name)
        if value in (None, False, "false"):
            return False
        if value in (True, "true"):
            return True
        raise outcome.bad_request(f"Parameter {name!r} is true or false")

    def integer(self, name: str, default: int) -> int:
        value = self.one(name)
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isdecimal() and len(value) < 10:
            return int(value)
        raise outcome.bad_request(f"Parameter {name!r} must be a whole number")

    def concept(self, name: str) -> dict[str, Any] | None:
        """A CodeableConcept, if given; a plain string is taken as its text."""
        value = self.one(name)
        if value is None:
            return None
        if isinstance(value, str):
            value = {"text": value.strip()}
        try:
            CodeableConcept.model_validate(value)
        except (ValidationError, TypeError):
            raise outcome.bad_request(f"Parameter {name!r} must be a CodeableConcept") from None
        if not isinstance(value, dict) or not (value.get("text") or value.get("coding")):
            raise outcome.bad_request(f"Parameter {name!r} must say something")
        return value

    def resource(self, name: str, resource_type: str) -> dict[str, Any] | None:
        value = self.one(name)
        if value is not None and (
            not isinstance(value, dict) or value.get("resourceType") != resource_type
        ):
            raise outcome.bad_request(f"Parameter {name!r} must be a {resource_type} resource")
        return value


def from_query(params: list[tuple[str, str]]) -> Inputs:
    values: dict[str, list[Any]] = {}
    for name, value in params:
        values.setdefault(name, []).append(value)
    return Inputs(values)


def from_body(body: Any) -> Inputs:
    """A valid `Parameters` resource; each parameter's value[x] (or resource) under its name."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise outcome.bad_request("An operation's body is a Parameters resource")
    try:
        Parameters.model_validate(_without_resources(body))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise outcome.bad_request(f"Invalid Parameters at {where}: {first['msg']}") from None
    values: dict[str, list[Any]] = {}
    for parameter in body.get("parameter") or []:  # `null` passes the model as no parameters
        values.setdefault(parameter["name"], []).append(_value(parameter))
    return Inputs(values)


def _without_resources(body: dict[str, Any]) -> dict[str, Any]:
    """The Parameters to check, its resources left out: an operation validates the resources
    it takes as resources (`resources.validate`, with bindings and invariants), once."""
    parameters = body.get("parameter")
    if not isinstance(parameters, list):
        return body
    kept = [
        {k: v for k, v in p.items() if k != "resource"} if isinstance(p, dict) else p
        for p in parameters
    ]
    return {**body, "parameter": kept}


def _value(parameter: dict[str, Any]) -> Any:
    if "resource" in parameter:
        return parameter["resource"]
    for key, value in parameter.items():
        if key.startswith("value"):
            return value
    if "part" in parameter:
        raise outcome.bad_request(f"Parameter {parameter['name']!r} takes a value, not parts")
    return None
