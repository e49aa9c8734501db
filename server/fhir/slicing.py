"""Slicing: which slice of a sliced element each item of a resource belongs to.

`slices_of` works out, once per compiled element, the tests an item passes to be taken by each
slice, from the slicing's discriminators; `server.fhir.profiles` then checks each item against
its slice. `contains` (pattern[x]) and `in_value_set` (a required binding) are the value tests
shared with the walk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from server.fhir.structures import MISSING, STEP, Definitions, Element, Expansion, Structure


class Occurrence(NamedTuple):
    """One occurrence of an element in a resource: its value (None when only its primitive
    companion `_name` is there), that companion, where it is, and the type its name spells."""

    value: Any
    companion: Any
    path: str
    spelled: str | None


class Checker(Protocol):
    def conforms(self, value: dict[str, Any], structure: Structure, where: str) -> bool: ...


Test = Callable[[Occurrence, Checker], bool]


@dataclass(frozen=True)
class Slice:
    """A slice and the tests an item passes to be taken by it (None: it cannot be tested)."""

    element: Element
    tests: tuple[Test, ...] | None

    def takes(self, occurrence: Occurrence, checker: Checker) -> bool:
        return self.tests is not None and all(test(occurrence, checker) for test in self.tests)


def slices_of(sliced: Element, known: Definitions) -> tuple[Slice, ...]:
    """The slices of `sliced` with their tests, worked out once. value and pattern (one and the
    same): the item holds at the discriminator's path the slice's fixed value there, contains
    its pattern, or has a code of its required binding; an extension slice without a fixed url
    takes the url of its type profile. exists: presence as the slice's min/max say. type: the
    type the item's name spells or its resourceType. profile: the item conforms to the profile
    (a Bundle entry's resource). A path with a function (`extension('x')`, `resolve()`) or a
    binding to a value set not loaded leaves the slice untestable."""
    if "slices" not in sliced.cache:
        sliced.cache["slices"] = tuple(
            Slice(s, _tests(s, sliced.discriminators, known)) for s in sliced.slices
        )
    slices: tuple[Slice, ...] = sliced.cache["slices"]
    return slices


def _tests(
    element: Element, discriminators: tuple[tuple[str, str], ...], known: Definitions
) -> tuple[Test, ...] | None:
    tests = []
    for kind, path in discriminators:
        steps = () if path == "$this" else tuple(path.split("."))
        if not all(STEP.fullmatch(step) for step in steps):
            return None
        test = _test(element, kind, steps, known)
        if test is None:
            return None
        tests.append(test)
    return tuple(tests) or None


def _test(element: Element, kind: str, steps: tuple[str, ...], known: Definitions) -> Test | None:
    target = _descend(element, steps)
    if kind in ("value", "pattern"):
        return _value_test(element, target, steps, known)
    if target is None:
        return None
    if kind == "exists" and (target.min >= 1 or target.max == 0):
        present = target.min >= 1
        return lambda o, _: bool(_at(o.value, steps)) == present
    codes = frozenset(t.code for t in target.types)
    if kind == "type" and codes:
        if not steps:
            return lambda o, _: (o.spelled or _resource_type(o.value)) in codes
        return lambda o, _: any(_resource_type(v) in codes for v in _at(o.value, steps))
    structures = [known.structure(p) for t in target.types for p in t.profiles]
    usable = tuple(s for s in structures if s is not None)
    if kind == "profile" and usable:
        tail = "".join(f".{step}" for step in steps)
        return lambda o, checker: any(
            checker.conforms(v, s, o.path + tail)
            for v in _at(o.value, steps)
            if isinstance(v, dict)
            for s in usable
        )
    return None


def _value_test(
    element: Element, target: Element | None, steps: tuple[str, ...], known: Definitions
) -> Test | None:
    if target is not None and target.fixed is not MISSING:
        fixed = target.fixed
        return lambda o, _: fixed in _at(o.value, steps)
    if target is not None and target.pattern is not MISSING:
        pattern = target.pattern
        return lambda o, _: any(contains(v, pattern) for v in _at(o.value, steps))
    if target is not None and target.binding is not None:
        expansion = known.expansion(target.binding)
        kind = target.type_of(None)
        if expansion is None:
            return None
        return lambda o, _: any(in_value_set(v, expansion, kind) for v in _at(o.value, steps))
    urls = [p for t in element.types if t.code == "Extension" for p in t.profiles]
    if steps == ("url",) and urls:
        url = urls[0].partition("|")[0]
        return lambda o, _: url in _at(o.value, steps)
    return None


def _descend(element: Element, steps: tuple[str, ...]) -> Element | None:
    found: Element | None = element
    for step in steps:
        if found is None:
            return None
        found = found.children.get(step) or found.children.get(f"{step}[x]")
    return found


def _at(value: Any, steps: tuple[str, ...]) -> list[Any]:
    """The values at a dotted path under `value`, arrays flattened."""
    current = [value]
    for step in steps:
        following = []
        for item in current:
            if isinstance(item, dict) and step in item:
                inner = item[step]
                following.extend(inner if isinstance(inner, list) else [inner])
        current = following
    return current


def _resource_type(value: Any) -> Any:
    return value.get("resourceType") if isinstance(value, dict) else None


def contains(value: Any, pattern: Any) -> bool:
    """pattern[x]: every property of an object pattern is contained, recursively, and every item
    of an array pattern is contained in some item of the value; a primitive is equal."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            key in value and contains(value[key], part) for key, part in pattern.items()
        )
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else [value]
        return all(any(contains(item, part) for item in items) for part in pattern)
    return bool(value == pattern)


def in_value_set(value: Any, expansion: Expansion, kind: str | None) -> bool:
    """A code, a Coding (with its system, when given) or a CodeableConcept (one of its codings)
    in the value set; a value that carries no code is not checked."""
    if isinstance(value, str):
        return expansion.has(None, value)
    if not isinstance(value, dict):
        return True
    codings = value.get("coding") if kind == "CodeableConcept" or "coding" in value else [value]
    if not isinstance(codings, list):
        return False
    return any(
        isinstance(coding, dict)
        and isinstance(coding.get("code"), str)
        and expansion.has(coding.get("system"), coding["code"])
        for coding in codings
    )
