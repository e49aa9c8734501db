"""FHIR invariants: the error-severity constraints of the official definitions, and two business
rules the definitions leave out.

`profiles/invariants.json` (see `profiles/derive.py`) lists, for each served type and each
datatype reachable from its elements, the constraints of severity `error` with the element they
sit on (`Appointment`, `Appointment.participant`, `Period`), and, per structure and backbone
element, which JSON property holds which element of which datatype. Checking a resource walks
its JSON along those tables: on each node every constraint of the node's element and of its
datatype is evaluated with fhirpathpy (`per-1` thus applies to every Period of the resource,
`ref-1` to every Reference). Each expression is compiled once, on first use.

A constraint fails only when it evaluates to `false`. An empty result (FHIRPath's "unknown", e.g.
dates of different precisions compared) passes, and so does an expression fhirpathpy raises on
for an odd input: it is logged at debug level and skipped, never a 500. Contained resources are
not walked (the `dom-*` constraints on the container check what they may hold).

Business rules: a Slot's `end` must be after its `start`, and so must an Appointment's when both
are given (`creneau-slot-1`, `creneau-app-1`). An Appointment on slots may leave out its `start`
and `end`: the server fills them in from the slots (`server.scheduling.spans`), so `app-2` and
`app-3` are not held against such a body (see `deferred`).

Two fast paths spare fhirpathpy, whose tree-walking evaluation costs 10-50 µs an expression: a
constraint that reads none of the node's properties gives what it gives on an empty node,
computed once (`dom-2` on a resource without `contained`); and the top-level `or` / `implies`
operands are tried first, so `a or b` is known true as soon as `a` is (see `short_circuit`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from server.fhir.outcome import Issue
from server.fhir.values import parse_instant

log = logging.getLogger(__name__)
PROFILES = Path(__file__).resolve().parents[2] / "profiles"  # as in server.fhir.resources
FHIRPATH_MODEL = models["r4"]

Evaluate = Callable[..., list[Any]]


def _has_value(inputs: list[Any]) -> bool:
    """FHIR's `hasValue()` (not in fhirpathpy): one primitive that carries a value."""
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], dict | list)


def _no_trace(label: str, value: Any) -> None:
    """`trace()` prints to stdout unless given a callback; the invariants' traces are noise."""


OPTIONS: dict[str, Any] = {
    "userInvocationTable": {"hasValue": {"fn": _has_value, "arity": {0: []}}},
    "traceFn": _no_trace,
}


# fhirpathpy types a node by its path in the model (`Period` makes `start` a dateTime); a
# resource types itself by its resourceType.
_as_node: Callable[[Any, str], Any] = ResourceNode.create_node


def _typed(node: dict[str, Any], base: str) -> Any:
    return node if "resourceType" in node else _as_node(node, base)


@cache
def compile_constraint(expression: str) -> Evaluate:
    """One compiled function per distinct expression (`ext-1` sits on hundreds of elements)."""
    return cast(Evaluate, compile_fhirpath(expression, model=FHIRPATH_MODEL, options=OPTIONS))


@dataclass(frozen=True)
class Constraint:
    key: str
    human: str
    expression: str
    path: str

    def evaluate(self, node: dict[str, Any], base: str, resource: dict[str, Any]) -> list[Any]:
        """The expression's result on `node`, typed as `base` (a resource types itself)."""
        data = _typed(node, base)
        return compile_constraint(self.expression)(
            data, {"resource": resource, "rootResource": resource}
        )

    def holds(self, node: dict[str, Any], base: str, resource: dict[str, Any]) -> bool:
        """False only if the expression evaluates to `false`; an evaluator failure is "not
        evaluable" (logged at debug level), never a refusal nor a 500."""
        names = names_read(self.expression)
        if names is not None and not _mentioned(names, node):
            return _holds_on_empty(self, base, node.get("resourceType"))
        try:
            if _settled_early(self.expression, node, base, resource):
                return True
            return self.evaluate(node, base, resource) != [False]
        except Exception:
            log.debug("%s not evaluable at %s", self.key, base, exc_info=True)
            return True


LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'")
TOKEN = re.compile(r"(\.)?\s*(`[^`]*`|[A-Za-z_]\w*)")
WHOLE_NODE = re.compile(r"\$|%(?!ucum\b)|\b(?:children|descendants|repeat)\s*\(")


@cache
def names_read(expression: str) -> frozenset[str] | None:
    """The names an expression can read on the node it is evaluated on: every identifier that
    does not follow a dot, and the one after a leading type name (`Appointment.status`). On a
    node holding none of them the expression sees nothing, as on an empty node, so its result is
    the empty node's (the fast path: `dom-2` on a resource without `contained` is not run). None
    when the expression can look further: `$this`, `%resource`, `children()`, `descendants()`."""
    text = LITERAL.sub("''", expression)
    if WHOLE_NODE.search(text):
        return None
    names = set()
    after_type = False
    for match in TOKEN.finditer(text):
        dotted, name = match.group(1) is not None, match.group(2).strip("`")
        if not dotted or after_type:
            names.add(name)
        after_type = not dotted and name[:1].isupper()
    return frozenset(names)


def _mentioned(names: frozenset[str], node: dict[str, Any]) -> bool:
    """Whether `node` has a property some name reads: itself, its primitive extension `_name`,
    or a choice type (`value` reads `valueString`, `multipleBirth` `multipleBirthBoolean`)."""
    return any(not names.isdisjoint(_read_as(key)) for key in node)


@cache
def _read_as(key: str) -> frozenset[str]:
    """The names that read property `key`: `_start` start, `valueString` value and valueString."""
    name = key.removeprefix("_")
    return frozenset([name, *(name[:i] for i, c in enumerate(name) if c.isupper())])


def _settled_early(
    expression: str, node: dict[str, Any], base: str, resource: dict[str, Any]
) -> bool:
    """True when an operand of a top-level `or` chain is true, or the premise of a
    top-level `implies` is false: the whole is then true, whatever the rest gives (FHIRPath's
    three-valued logic), and fhirpathpy, which evaluates every operand, is spared the rest
    (`ref-1`'s look into the contained resources for every Reference that is not `#...`)."""
    operator, operands = short_circuit(expression)
    if operator is None:
        return False
    data = _typed(node, base)
    variables = {"resource": resource, "rootResource": resource}
    if operator == "implies":
        return bool(compile_constraint(operands[0])(data, variables) == [False])
    return any(compile_constraint(part)(data, variables) == [True] for part in operands)


OPERATOR = re.compile(r"(?<![\w.])(or|xor|implies)(?![\w])")


@cache
def short_circuit(expression: str) -> tuple[str | None, tuple[str, ...]]:
    """The top-level operands of `a or b or c` ("or", every operand) or of `a implies b`
    ("implies", premise and conclusion); (None, ()) for anything else, a top-level `xor` (same
    precedence as `or`) or several `implies` included."""
    masked = _mask(expression)
    found = [
        (m.start(), m.group(1)) for m in OPERATOR.finditer(masked) if _depth(masked, m.start()) == 0
    ]
    operators = {name for _, name in found}
    if operators == {"or"} or (operators == {"implies"} and len(found) == 1):
        cuts = [0, *[position for position, _ in found], len(expression)]
        parts = []
        for start, end in pairwise(cuts):
            parts.append(expression[start:end].strip().removeprefix(found[0][1]).strip())
        return found[0][1], tuple(parts)
    return None, ()


def _mask(expression: str) -> str:
    """The expression with its string literals and quoted identifiers blanked out."""
    return re.sub(r"'(?:[^'\\]|\\.)*'|`[^`]*`", lambda m: " " * len(m.group(0)), expression)


def _depth(text: str, position: int) -> int:
    before = text[:position]
    return before.count("(") - before.count(")") + before.count("[") - before.count("]")


@cache
def _holds_on_empty(constraint: Constraint, base: str, resource_type: str | None) -> bool:
    """What `constraint` gives on an empty node of its type: once per constraint."""
    empty: dict[str, Any] = {"resourceType": resource_type} if resource_type else {}
    try:
        return constraint.evaluate(empty, base, empty) != [False]
    except Exception:
        log.debug("%s not evaluable on an empty %s", constraint.key, base, exc_info=True)
        return True


Child = tuple[str, str | None]  # element path, datatype (None: a backbone element)


@dataclass(frozen=True)
class Invariants:
    """The constraints by element path, and the walking tables (see the module docstring)."""

    constraints: dict[str, tuple[Constraint, ...]]
    children: dict[str, dict[str, Child]]
    bases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Invariants:
        grouped: dict[str, list[Constraint]] = {}
        for entry in data["constraints"]:
            constraint = Constraint(
                entry["key"], entry["human"], entry["expression"], entry["path"]
            )
            grouped.setdefault(constraint.path, []).append(constraint)
        children = {
            path: {key: (child[0], child[1]) for key, child in keys.items()}
            for path, keys in data["elements"].items()
        }
        return cls(
            {path: tuple(found) for path, found in grouped.items()},
            children,
            dict(data.get("bases", {})),
        )

    def nodes(self, resource: dict[str, Any]) -> Iterator[tuple[str, str, Any, str]]:
        """(element path or datatype, FHIRPath type of the node, node, where) for every node of
        `resource` some constraint may sit on, the resource itself first."""
        resource_type = resource["resourceType"]
        yield from self._visit(resource, resource_type, None, resource_type)

    def _visit(
        self, node: dict[str, Any], path: str, datatype: str | None, where: str
    ) -> Iterator[tuple[str, str, Any, str]]:
        yield path, path, node, where
        if datatype is not None and datatype != path:
            yield datatype, self.bases.get(datatype, datatype), node, where
        table = self.children.get(datatype if datatype is not None else path, {})
        for key, value in node.items():
            child = table.get(key)
            if child is None:
                continue
            items = enumerate(value) if isinstance(value, list) else ((None, value),)
            for index, item in items:
                if isinstance(item, dict):
                    at = f"{where}.{key}" if index is None else f"{where}.{key}[{index}]"
                    yield from self._visit(item, child[0], child[1], at)

    def issues(
        self, resource: dict[str, Any], deferred: frozenset[str] = frozenset()
    ) -> list[Issue]:
        """What `resource` breaks, leaving out the `deferred` constraints of its root."""
        found = []
        for path, base, node, where in self.nodes(resource):
            for constraint in self.constraints.get(path, ()):
                if where == path and constraint.key in deferred:
                    continue
                if not constraint.holds(node, base, resource):
                    found.append(_issue(constraint.key, constraint.human, where))
        return found


@cache
def invariants() -> Invariants:
    return Invariants.from_data(json.loads((PROFILES / "invariants.json").read_text()))


@cache
def base_keys() -> frozenset[str]:
    """The keys of every constraint `profiles/invariants.json` lists, evaluated or skipped: what
    a profile repeats from the base definitions (`ele-1`, `dom-2`, `ref-1`) is not run again."""
    data = json.loads((PROFILES / "invariants.json").read_text())
    return frozenset(entry["key"] for entry in data["constraints"] + data.get("skipped", []))


def _issue(key: str, human: str, where: str) -> Issue:
    return Issue("invariant", f"Constraint {key} failed: {human}", expression=(where,))


BUSINESS_RULES = {
    "Slot": ("creneau-slot-1", "Slot.end must be after Slot.start"),
    "Appointment": ("creneau-app-1", "Appointment.end must be after Appointment.start"),
}


def business_issues(resource: dict[str, Any]) -> list[Issue]:
    """`end` after `start` (Slot always: both are required; Appointment when both are given)."""
    resource_type = resource["resourceType"]
    rule = BUSINESS_RULES.get(resource_type)
    if rule is None:
        return []
    key, human = rule
    start, end = parse_instant(resource.get("start")), parse_instant(resource.get("end"))
    if start is None or end is None or end > start:
        return []
    return [_issue(key, human, resource_type)]


def deferred(resource: dict[str, Any]) -> frozenset[str]:
    """The constraints checked later, on the resource as the server completes it: an Appointment
    on slots may leave out `start` and `end`, which `server.scheduling.spans` fills in from its
    slots (and refuses other ones) before storing it, so app-2 and app-3 hold once it is stored."""
    if (
        resource["resourceType"] == "Appointment"
        and resource.get("slot")
        and not ("start" in resource and "end" in resource)
    ):
        return APPOINTMENT_TIMES
    return frozenset()


APPOINTMENT_TIMES = frozenset({"app-2", "app-3"})


def invariant_issues(resource: dict[str, Any]) -> list[Issue]:
    """The constraints and business rules `resource` (already valid for its model) breaks."""
    return invariants().issues(resource, deferred(resource)) + business_issues(resource)
