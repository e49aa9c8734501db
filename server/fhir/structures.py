"""StructureDefinitions compiled for validation, and the definitions a profile names.

A snapshot is a flat list of ElementDefinitions. `compile_structure` turns it into a tree of
`Element`s, once per profile: children by name, slices under the element they slice, the JSON
property each child takes (`value[x]` typed Reference or string takes `valueReference` and
`valueString`), the profile's own error constraints (those of the base definitions are checked by
`server.fhir.invariants`; see `base_keys`). A StructureDefinition without a snapshot (our own
extensions in profiles/) is compiled from its differential: an element it leaves out is not
checked, and one it names defaults to 0..* of any type.

`Definitions` binds a resolver (canonical, `url|version` accepted → conformance resource or None)
and remembers what it gave: compiled profiles by (url, version), value sets expanded to their
codes, the resource type a target profile stands for. `definitions(resolve)` keeps one per
resolver (a bound method `registry.by_url` is the same resolver each time it is read).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any, Final

from server.fhir.invariants import PROFILES, Constraint, base_keys, compile_constraint

log = logging.getLogger(__name__)
Resolve = Callable[[str], dict[str, Any] | None]
MISSING: Final[Any] = object()  # no fixed[x] / pattern[x] on the element
CORE = "http://hl7.org/fhir/"
FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
NOT_EVALUATED = re.compile(r"\b(?:resolve|conformsTo|memberOf|htmlChecks)\s*\(")
STEP = re.compile(r"[A-Za-z][A-Za-z0-9]*")


@dataclass(frozen=True)
class TypeRef:
    code: str
    profiles: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()


@dataclass(eq=False)
class Element:
    """One ElementDefinition and what sits under it. `keys` maps a JSON property of the node to
    the child it is and the type its name spells (a choice type's); `cache` holds what a
    `Definitions` works out for the element (its slices' tests)."""

    id: str
    path: str
    min: int = 0
    max: int | None = None
    types: tuple[TypeRef, ...] = ()
    fixed: Any = MISSING
    pattern: Any = MISSING
    max_length: int | None = None
    binding: str | None = None  # the value set of a required binding
    constraints: tuple[Constraint, ...] = ()
    discriminators: tuple[tuple[str, str], ...] = ()
    closed: bool = False
    content: str | None = None  # contentReference: the id of the element it repeats
    slices: list[Element] = field(default_factory=list)
    children: dict[str, Element] = field(default_factory=dict)
    keys: dict[str, tuple[Element, str | None]] = field(default_factory=dict)
    choices: tuple[tuple[str, Element], ...] = ()
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    def type_of(self, spelled: str | None) -> str | None:
        """The type of an occurrence: the one its property spells, else the only one."""
        if spelled is not None:
            return spelled
        return self.types[0].code if len(self.types) == 1 else None


@dataclass(eq=False)
class Structure:
    url: str
    type: str
    kind: str
    root: Element


def compile_structure(definition: dict[str, Any]) -> Structure:
    raws = (definition.get("snapshot") or definition.get("differential") or {}).get("element", [])
    by_id: dict[str, Element] = {}
    for raw in raws:
        element = _element(raw)
        by_id.setdefault(element.id, element)
    for element in list(by_id.values()):
        _link(by_id, element)
    kind = str(definition.get("type", ""))
    root = by_id.get(kind) or _bare(by_id, kind, kind)
    for element in by_id.values():
        target = by_id.get(element.content or "")
        if target is not None:
            element.children = target.children
    for element in by_id.values():
        _index(element)
    return Structure(str(definition.get("url", "")), kind, str(definition.get("kind", "")), root)


def _link(by_id: dict[str, Element], element: Element) -> None:
    """Put `element` under its parent (`a.b` under `a`) or under the element it slices (`a.b:s`
    under `a.b`), making a bare one where a differential leaves it out."""
    head, _, last = element.id.rpartition(".")
    name, _, slice_name = last.partition(":")
    if slice_name:
        sliced = f"{head}.{name}" if head else name
        (by_id.get(sliced) or _bare(by_id, sliced, element.path)).slices.append(element)
    elif head:
        parent = by_id.get(head) or _bare(by_id, head, element.path.rpartition(".")[0])
        parent.children.setdefault(name, element)


def _bare(by_id: dict[str, Element], element_id: str, path: str) -> Element:
    element = by_id[element_id] = Element(element_id, path)
    _link(by_id, element)
    return element


def _element(raw: dict[str, Any]) -> Element:
    slicing = raw.get("slicing") or {}
    maximum = raw.get("max", "*")
    return Element(
        id=raw.get("id") or raw["path"],
        path=raw["path"],
        min=int(raw.get("min", 0)),
        max=None if maximum == "*" else int(maximum),
        types=tuple(_type(entry) for entry in raw.get("type", [])),
        fixed=_prefixed(raw, "fixed"),
        pattern=_prefixed(raw, "pattern"),
        max_length=raw.get("maxLength"),
        binding=_required_value_set(raw.get("binding")),
        constraints=tuple(_constraints(raw)),
        discriminators=tuple((d["type"], d["path"]) for d in slicing.get("discriminator", [])),
        closed=slicing.get("rules") == "closed",
        content=str(raw.get("contentReference", "")).partition("#")[2] or None,
    )


def _type(entry: dict[str, Any]) -> TypeRef:
    """A system type (`http://hl7.org/fhirpath/System.String` of `id`, `url`) by its FHIR name."""
    code = entry["code"]
    for extension in entry.get("extension", []):
        if extension.get("url") == FHIR_TYPE:
            code = extension.get("valueUrl") or extension.get("valueUri") or code
    return TypeRef(code, tuple(entry.get("profile", [])), tuple(entry.get("targetProfile", [])))


def _prefixed(raw: dict[str, Any], prefix: str) -> Any:
    for key, value in raw.items():
        if key.startswith(prefix) and key[len(prefix) : len(prefix) + 1].isupper():
            return value
    return MISSING


def _required_value_set(binding: dict[str, Any] | None) -> str | None:
    if binding and binding.get("strength") == "required" and binding.get("valueSet"):
        return str(binding["valueSet"])
    return None


def _constraints(raw: dict[str, Any]) -> Iterator[Constraint]:
    for entry in raw.get("constraint", []):
        expression = entry.get("expression")
        if entry.get("severity") != "error" or entry.get("key") in base_keys() or not expression:
            continue
        if not NOT_EVALUATED.search(expression) and evaluable(expression):
            yield Constraint(entry["key"], entry.get("human", ""), expression, raw["path"])


@cache
def evaluable(expression: str) -> bool:
    """Whether fhirpathpy can run `expression` at all: it reports an unknown function or a
    syntax it lacks only when run, so it is run once on an empty node."""
    try:
        compile_constraint(expression)({}, {"resource": {}, "rootResource": {}})
    except Exception:
        log.debug("constraint %r skipped: fhirpathpy cannot evaluate it", expression)
        return False
    return True


def _index(element: Element) -> None:
    choices = []
    for name, child in element.children.items():
        if not name.endswith("[x]"):
            element.keys[name] = (child, None)
            continue
        prefix = name[:-3]
        choices.append((prefix, child))
        for kind in child.types:
            element.keys[prefix + kind.code[:1].upper() + kind.code[1:]] = (child, kind.code)
    element.choices = tuple(choices)


@dataclass(frozen=True)
class Expansion:
    """The codes of a value set: (system, code) pairs, or codes alone where the system is not
    known (the R4 value sets `profiles/required-bindings.json` lists)."""

    pairs: frozenset[tuple[str, str]]
    codes: frozenset[str]

    def has(self, system: str | None, code: str) -> bool:
        if system is None or not self.pairs:
            return code in self.codes
        return (system, code) in self.pairs


def _expansion(pairs: Iterable[tuple[str, str]]) -> Expansion:
    pairs = frozenset(pairs)
    return Expansion(pairs, frozenset(code for _, code in pairs))


@cache
def core_codes() -> dict[str, frozenset[str]]:
    """R4 value set canonical → its codes, from the required bindings of the served types."""
    data = json.loads((PROFILES / "required-bindings.json").read_text())
    return {entry["valueSet"]: frozenset(entry["codes"]) for entry in data.values()}


class Definitions:
    """What one resolver gives, each worked out once (see the module docstring)."""

    def __init__(self, resolve: Resolve) -> None:
        self.resolve = resolve
        self._compiled: dict[tuple[str, str], Structure] = {}
        self._structures: dict[str, Structure | None] = {}
        self._expansions: dict[str, Expansion | None] = {}

    def compiled(self, definition: dict[str, Any]) -> Structure:
        key = (str(definition.get("url", "")), str(definition.get("version", "")))
        if key not in self._compiled:
            self._compiled[key] = compile_structure(definition)
        return self._compiled[key]

    def structure(self, canonical: str) -> Structure | None:
        if canonical not in self._structures:
            found = self.resolve(canonical)
            self._structures[canonical] = (
                self.compiled(found)
                if found is not None and found.get("resourceType") == "StructureDefinition"
                else None
            )
        return self._structures[canonical]

    def target_type(self, canonical: str) -> str | None:
        """The resource type a target profile stands for: its `type`, or the name a core
        StructureDefinition URL ends with; None when neither is known."""
        structure = self.structure(canonical)
        if structure is not None:
            return structure.type
        url = canonical.partition("|")[0]
        name = url.rpartition("/")[2]
        if url.startswith(CORE + "StructureDefinition/") and name[:1].isupper():
            return name
        return None

    def expansion(self, canonical: str) -> Expansion | None:
        """The codes of a value set, or None when it or a code system it takes whole cannot be
        had here. An R4 one not loaded falls back on `core_codes`."""
        if canonical not in self._expansions:
            self._expansions[canonical] = None  # a value set importing itself expands to nothing
            found = self.resolve(canonical)
            if found is not None and found.get("resourceType") == "ValueSet":
                self._expansions[canonical] = self._expand(found)
            else:
                codes = core_codes().get(canonical.partition("|")[0])
                if codes is not None:
                    self._expansions[canonical] = Expansion(frozenset(), codes)
        return self._expansions[canonical]

    def _expand(self, value_set: dict[str, Any]) -> Expansion | None:
        contains = value_set.get("expansion", {}).get("contains")
        if contains:
            return _expansion(_contained(contains))
        compose = value_set.get("compose")
        if not compose:
            return None
        included: set[tuple[str, str]] = set()
        for rule in compose.get("include", []):
            part = self._part(rule)
            if part is None:
                return None
            included |= part
        for rule in compose.get("exclude", []):
            part = self._part(rule)
            if part is None:
                return None
            included -= part
        return _expansion(included)

    def _part(self, rule: dict[str, Any]) -> set[tuple[str, str]] | None:
        """The codes one include (or exclude) names: its concepts, or its whole code system, and
        the value sets it imports (all of them: an intersection)."""
        parts: list[set[tuple[str, str]]] = []
        system = rule.get("system")
        if system:
            if rule.get("filter"):
                return None
            if "concept" in rule:
                parts.append({(system, concept["code"]) for concept in rule["concept"]})
            else:
                whole = self._code_system(system, rule.get("version"))
                if whole is None:
                    return None
                parts.append(whole)
        for imported in rule.get("valueSet", []):
            expansion = self.expansion(imported)
            if expansion is None or (expansion.codes and not expansion.pairs):
                return None  # not had, or an R4 one known by its codes alone
            parts.append(set(expansion.pairs))
        if not parts:
            return set()
        return set.intersection(*parts)

    def _code_system(self, system: str, version: str | None) -> set[tuple[str, str]] | None:
        found = self.resolve(f"{system}|{version}" if version else system)
        if found is None or found.get("resourceType") != "CodeSystem":
            return None
        if found.get("content", "complete") != "complete":
            return None
        return {(system, code) for code in _concepts(found.get("concept", []))}


def _contained(contains: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    for entry in contains:
        if "code" in entry:
            yield str(entry.get("system", "")), entry["code"]
        yield from _contained(entry.get("contains", []))


def _concepts(concepts: list[dict[str, Any]]) -> Iterator[str]:
    for concept in concepts:
        yield concept["code"]
        yield from _concepts(concept.get("concept", []))


def definitions(resolve: Resolve) -> Definitions:
    """The `Definitions` of `resolve`, kept across calls (a new one for an unhashable resolver)."""
    try:
        return _kept(resolve)
    except TypeError:
        return Definitions(resolve)


@lru_cache(maxsize=8)
def _kept(resolve: Resolve) -> Definitions:
    return Definitions(resolve)
