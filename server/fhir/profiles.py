"""Validation of a resource against a profile: the rules of a StructureDefinition's snapshot.

`profile_issues(resource, profile, resolve)` walks the resource's JSON along the profile's
compiled element tree (`server.fhir.structures`). Each issue names where it is as a FHIRPath
with indexes (`Slot.meta.security[0]`, `PractitionerRole.location`):

    required       fewer occurrences than an element's or a slice's `min` (the children of an
                   absent element are not looked at)
    structure      more than `max`; a type the element does not take (`valueString` where
                   `value[x]` is a Reference); a reference to a resource type no target profile
                   is; an item no slice of a closed slicing takes; a resource of another type
    value          a fixed[x] not matched exactly, a pattern[x] not contained, maxLength
    code-invalid   a code outside the value set of a required binding
    invariant      a constraint of the profile evaluating to false (fhirpathpy)
    not-supported  a warning: a required binding whose value set (or a code system it takes
                   whole) is not loaded, so its codes are not checked; one per value set

A contained resource or a Bundle entry's is checked against what it declares in meta.profile and
its element's type profile, when known; its base type is `server.fhir.resources`' business. An
extension is checked against the StructureDefinition its url names, wherever it sits, when known;
a datatype with a profile (an FR Core ContactPoint) against that profile, when known. What a
resolver does not know is not held against the resource.

Slicing: an item goes to the first slice whose discriminators all match (`slices_of` in
`server.fhir.slicing` says how each is tested), and is then checked against that slice
instead of the sliced element.
A slice that cannot be tested here (a value set not loaded) takes no item and has its counts
left unchecked, and a closed slicing then refuses no item.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fhirpathpy.engine.nodes import ResourceNode

from server.fhir.invariants import Constraint, compile_constraint
from server.fhir.outcome import Issue
from server.fhir.slicing import Occurrence, contains, in_value_set, slices_of
from server.fhir.structures import MISSING, Definitions, Element, Resolve, Structure, definitions
from server.fhir.values import REFERENCE

ANY_RESOURCE = frozenset({"Resource", "DomainResource"})
CODED = frozenset({"code", "string", "uri", "Coding", "CodeableConcept", None})
EXTENSIONS = frozenset({"extension", "modifierExtension"})
NOT_A_DATATYPE = frozenset({"BackboneElement", "Element"})
_as_node: Callable[[Any, str], Any] = ResourceNode.create_node  # a primitive typed by its path


def profile_issues(
    resource: dict[str, Any], profile: dict[str, Any], resolve: Resolve
) -> list[Issue]:
    """What `resource` breaks of `profile` (a StructureDefinition); `resolve` gives the
    conformance resources it names. The compiled profile is kept per (url, version)."""
    known = definitions(resolve)
    structure = known.compiled(profile)
    where = resource.get("resourceType")
    return _distinct(Walk(known).conform(resource, structure, str(where or structure.type)))


def _distinct(issues: list[Issue]) -> list[Issue]:
    """Each issue once, and one not-supported warning per value set."""
    seen: set[Issue] = set()
    warned: set[str] = set()
    kept = []
    for issue in issues:
        if issue in seen or (issue.code == "not-supported" and issue.diagnostics in warned):
            continue
        seen.add(issue)
        warned.add(issue.diagnostics)
        kept.append(issue)
    return kept


class Walk:
    """One validation: the resources being walked (innermost last, for `%resource` and `#id`
    references), the Bundle entries by fullUrl, and what each (node, profile, place) gave."""

    def __init__(self, known: Definitions) -> None:
        self.known = known
        self.resources: list[dict[str, Any]] = []
        self.entries: dict[str, dict[str, Any]] = {}
        self.done: dict[tuple[int, str, str], list[Issue]] = {}

    def conform(self, value: dict[str, Any], structure: Structure, where: str) -> list[Issue]:
        key = (id(value), structure.url, where)
        if key in self.done:  # also what stops a profile that nests itself
            return self.done[key]
        self.done[key] = []
        if structure.kind != "resource":
            self.done[key] = self.node(value, structure.root, where, structure.type)
            return self.done[key]
        if value.get("resourceType") != structure.type:
            kind = value.get("resourceType")
            return [
                Issue(
                    "structure", f"A {kind} cannot conform to {structure.url}", expression=(where,)
                )
            ]
        self.resources.append(value)
        if structure.type == "Bundle":
            self._index_entries(value)
        try:
            self.done[key] = self.node(value, structure.root, where, structure.type)
        finally:
            self.resources.pop()
        return self.done[key]

    def conforms(self, value: dict[str, Any], structure: Structure, where: str) -> bool:
        return not any(i.severity == "error" for i in self.conform(value, structure, where))

    def _index_entries(self, bundle: dict[str, Any]) -> None:
        for entry in _list(bundle.get("entry")):
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                self.entries.setdefault(str(entry.get("fullUrl")), entry["resource"])

    def node(self, value: Any, element: Element, where: str, kind: str | None) -> list[Issue]:
        issues = self.invariants(value, element, where, kind)
        if not isinstance(value, dict):
            return issues
        if element.children:
            return issues + self.children(value, element, where)
        return issues + self.unlisted(value, where)

    def children(self, node: dict[str, Any], element: Element, where: str) -> list[Issue]:
        issues: list[Issue] = []
        found = self.occurrences(node, element, where, issues)
        for child in element.children.values():
            occurrences = found.get(child, [])
            issues += self.cardinality(child, len(occurrences), child.id, f"{where}.{_name(child)}")
            if child.slices:
                issues += self.sliced(child, occurrences, f"{where}.{_name(child)}")
            else:
                for occurrence in occurrences:
                    issues += self.item(occurrence, child)
        return issues

    def occurrences(
        self, node: dict[str, Any], element: Element, where: str, issues: list[Issue]
    ) -> dict[Element, list[Occurrence]]:
        """The occurrences of each child in `node`, a primitive's `_name` companion with it;
        a choice spelled with a type the child does not take goes to `issues`."""
        found: dict[Element, list[Occurrence]] = {}
        for key, value in node.items():
            name = key.removeprefix("_")
            if name != key and name in node:
                continue  # taken with its value
            hit = element.keys.get(name)
            if hit is None:
                issues += _wrong_choice(element, name, where)
                continue
            child, spelled = hit
            companion = node.get(f"_{name}")
            own = None if name != key else value
            found.setdefault(child, []).extend(_spread(own, companion, f"{where}.{name}", spelled))
        return found

    def cardinality(self, element: Element, count: int, label: str, where: str) -> list[Issue]:
        if count < element.min:
            message = f"{label}: at least {element.min} required, {count} found"
            return [Issue("required", message, expression=(where,))]
        if element.max is not None and count > element.max:
            message = f"{label}: at most {element.max} allowed, {count} found"
            return [Issue("structure", message, expression=(where,))]
        return []

    def sliced(self, element: Element, occurrences: list[Occurrence], where: str) -> list[Issue]:
        slices = slices_of(element, self.known)
        testable = all(s.tests is not None for s in slices)
        counts = {s.element: 0 for s in slices}
        issues = []
        for occurrence in occurrences:
            taken = next((s.element for s in slices if s.takes(occurrence, self)), None)
            if taken is not None:
                counts[taken] += 1
                issues += self.item(occurrence, taken)
                continue
            if element.closed and testable:
                message = f"{element.id}: the slicing is closed and no slice takes this item"
                issues.append(Issue("structure", message, expression=(occurrence.path,)))
            issues += self.item(occurrence, element)
        for s in slices:
            if s.tests is not None or not occurrences:
                issues += self.cardinality(s.element, counts[s.element], s.element.id, where)
        return issues

    def item(self, occurrence: Occurrence, element: Element) -> list[Issue]:
        value, path = occurrence.value, occurrence.path
        kind = element.type_of(occurrence.spelled)
        issues = _values(value, element, path) if value is not None else []
        if element.binding is not None and value is not None and kind in CODED:
            issues += self.binding(value, element.binding, kind, path)
        if isinstance(value, dict):
            if "resourceType" in value:
                return issues + self.nested(value, element, path)
            if kind == "Reference":
                issues += self.reference(value, element, path)
            profiled = self.profiled(value, element, kind, path)
            if profiled is not None:
                return issues + profiled + self.invariants(value, element, path, kind)
        issues += self.node(value, element, path, kind)
        if isinstance(occurrence.companion, dict):
            issues += self.unlisted(occurrence.companion, path)
        return issues

    def binding(self, value: Any, value_set: str, kind: str | None, path: str) -> list[Issue]:
        expansion = self.known.expansion(value_set)
        if expansion is None:
            message = (
                f"The value set {value_set} is not loaded here: codes bound to it are not checked"
            )
            return [Issue("not-supported", message, "warning", (path,))]
        if in_value_set(value, expansion, kind):
            return []
        message = f"{_coded(value)} is not in the required value set {value_set}"
        return [Issue("code-invalid", message, expression=(path,))]

    def reference(self, value: dict[str, Any], element: Element, path: str) -> list[Issue]:
        targets = [t for kind in element.types if kind.code == "Reference" for t in kind.targets]
        types = [self.known.target_type(target) for target in targets]
        allowed = sorted({kind for kind in types if kind is not None})
        if not types or len(allowed) < len(set(types)) or ANY_RESOURCE.intersection(allowed):
            return []  # a target profile of a type not known here might take anything
        actual = self.referenced_type(value)
        if actual is None or actual in allowed:
            return []
        message = f"{path} refers to a {actual}; {element.id} takes {', '.join(allowed)}"
        return [Issue("structure", message, expression=(path,))]

    def referenced_type(self, value: dict[str, Any]) -> str | None:
        """The type a Reference points to: from its `reference` (`Type/id`, a URL, `#id` of a
        contained resource, a Bundle entry's fullUrl), else from its `type`; None if unknown."""
        reference = value.get("reference")
        if isinstance(reference, str):
            if reference.startswith("#"):
                return self._contained_type(reference[1:])
            match = REFERENCE.match(reference)
            if match:
                return match["type"]
            if reference in self.entries:
                return self.entries[reference].get("resourceType")
        kind = value.get("type")
        return kind.rpartition("/")[2] if isinstance(kind, str) else None

    def _contained_type(self, local: str) -> str | None:
        for resource in reversed(self.resources):
            for contained in _list(resource.get("contained")):
                if isinstance(contained, dict) and contained.get("id") == local:
                    return contained.get("resourceType")
        return None

    def nested(self, resource: dict[str, Any], element: Element, path: str) -> list[Issue]:
        """A contained or Bundle entry resource: its type, then the profiles it is held to."""
        kind = resource.get("resourceType")
        codes = {t.code for t in element.types}
        issues = []
        if codes and not codes & ANY_RESOURCE and kind not in codes:
            message = f"A {kind} is not allowed here: {element.id} takes {', '.join(sorted(codes))}"
            issues.append(Issue("structure", message, expression=(path,)))
        meta = resource.get("meta")
        declared = _list(meta.get("profile")) if isinstance(meta, dict) else []
        urls = [p for t in element.types if t.code == kind for p in t.profiles] + declared
        for url in dict.fromkeys(u for u in urls if isinstance(u, str)):
            structure = self.known.structure(url)
            if structure is not None and structure.type == kind:
                issues += self.conform(resource, structure, path)
        return issues

    def profiled(
        self, value: dict[str, Any], element: Element, kind: str | None, path: str
    ) -> list[Issue] | None:
        """`value` checked against its type's profiles and, for an extension, the definition its
        url names, when known (None when none is: the element's own children then apply)."""
        urls = [p for t in element.types if t.code == kind for p in t.profiles]
        extension = kind == "Extension" or (kind is None and element.name in EXTENSIONS)
        if extension and isinstance(value.get("url"), str):
            urls.append(value["url"])
        structures = [self.known.structure(url) for url in dict.fromkeys(urls)]
        known = [s for s in structures if s is not None and s.kind != "resource"]
        if not known:
            return None
        issues = self.children(value, element, path) if element.children else []
        for structure in known:
            issues += self.conform(value, structure, path)
        return issues

    def unlisted(self, node: dict[str, Any], where: str) -> list[Issue]:
        """The extensions under an element the profile does not expand, by their url."""
        issues: list[Issue] = []
        for key, value in node.items():
            at = f"{where}.{key.removeprefix('_')}"
            items = value if isinstance(value, list) else [value]
            for index, item in enumerate(items):
                if not isinstance(item, dict) or "resourceType" in item:
                    continue
                here = f"{at}[{index}]" if isinstance(value, list) else at
                url = item.get("url") if key in EXTENSIONS else None
                structure = self.known.structure(url) if isinstance(url, str) else None
                if structure is not None and structure.type == "Extension":
                    issues += self.conform(item, structure, here)
                else:
                    issues += self.unlisted(item, here)
        return issues

    def invariants(self, value: Any, element: Element, where: str, kind: str | None) -> list[Issue]:
        if not element.constraints:
            return []
        resource = self.resources[-1] if self.resources else value
        base = kind if kind and kind[:1].isupper() and kind not in NOT_A_DATATYPE else element.path
        return [
            Issue("invariant", f"Constraint {c.key} failed: {c.human}", expression=(where,))
            for c in element.constraints
            if not _holds(c, value, base, resource)
        ]


def _holds(constraint: Constraint, value: Any, base: str, resource: Any) -> bool:
    if isinstance(value, dict):
        return constraint.holds(value, base, resource)
    variables = {"resource": resource, "rootResource": resource}
    try:
        node = _as_node(value, base)
        return bool(compile_constraint(constraint.expression)(node, variables) != [False])
    except Exception:
        return True  # as `Constraint.holds`: not evaluable is not a refusal


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _name(element: Element) -> str:
    return element.name.removesuffix("[x]")


def _spread(value: Any, companion: Any, where: str, spelled: str | None) -> list[Occurrence]:
    """One occurrence per item of a repeating element (`where[i]`), else one."""
    if not isinstance(value, list) and not isinstance(companion, list):
        return [Occurrence(value, companion, where, spelled)]
    values = value if isinstance(value, list) else []
    companions = companion if isinstance(companion, list) else []
    return [
        Occurrence(
            values[i] if i < len(values) else None,
            companions[i] if i < len(companions) else None,
            f"{where}[{i}]",
            spelled,
        )
        for i in range(max(len(values), len(companions)))
        if (i < len(values) and values[i] is not None)
        or (i < len(companions) and companions[i] is not None)
    ]


def _wrong_choice(element: Element, name: str, where: str) -> list[Issue]:
    for prefix, child in element.choices:
        spelled = name[len(prefix) :]
        if name.startswith(prefix) and spelled[:1].isupper() and child.types:
            allowed = ", ".join(t.code for t in child.types)
            message = f"{child.id} does not take the type {spelled} here, only {allowed}"
            return [Issue("structure", message, expression=(f"{where}.{name}",))]
    return []


def _values(value: Any, element: Element, path: str) -> list[Issue]:
    """fixed[x], pattern[x] and maxLength."""
    issues = []
    if element.fixed is not MISSING and value != element.fixed:
        message = f"{element.id} must be exactly {_shown(element.fixed)}"
        issues.append(Issue("value", message, expression=(path,)))
    if element.pattern is not MISSING and not contains(value, element.pattern):
        message = f"{element.id} must match the pattern {_shown(element.pattern)}"
        issues.append(Issue("value", message, expression=(path,)))
    if (
        element.max_length is not None
        and isinstance(value, str)
        and len(value) > element.max_length
    ):
        message = f"{element.id} is longer than {element.max_length} characters"
        issues.append(Issue("value", message, expression=(path,)))
    return issues


def _coded(value: Any) -> str:
    """A code as `code`, a Coding as `system|code`, a CodeableConcept as its codings."""
    if isinstance(value, dict):
        codings = _list(value.get("coding")) if "coding" in value else [value]
        shown = [
            f"{c.get('system', '')}|{c.get('code', '')}" for c in codings if isinstance(c, dict)
        ]
        return ", ".join(shown) or "no code"
    return repr(value)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."
