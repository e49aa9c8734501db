"""Validation against profiles (server.fhir.profiles) with the SAS IG 1.1.0 package: its own
examples pass, and each kind of rule refuses a resource made from an example that breaks it,
naming the element. Resolved from the package files (a resolver built here) and through the
server's registry (server.fhir.conformance)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from server.fhir.conformance import load
from server.fhir.outcome import Issue
from server.fhir.profiles import profile_issues
from server.fhir.structures import definitions

PROFILES = Path(__file__).resolve().parents[3] / "profiles"
PACKAGE = PROFILES / "packages" / "ans.fhir.fr.sas-1.1.0"
EXAMPLES = PACKAGE / "example"
SAS = "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition"
HOLD_EXPIRES = "https://fhir.creneau.org/StructureDefinition/hold-expires"
BOOKING_RECORD = "https://fhir.creneau.org/StructureDefinition/booking-record"
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
Resolve = Callable[[str], dict[str, Any] | None]


@cache
def _by_canonical() -> dict[str, dict[str, Any]]:
    """The package's conformance resources and ours (profiles/), by url and by url|version."""
    found: dict[str, dict[str, Any]] = {}
    for path in [*PACKAGE.glob("*.json"), *PROFILES.glob("StructureDefinition-*.json")]:
        resource = json.loads(path.read_text())
        if "url" in resource:
            found[resource["url"]] = resource
            found[f"{resource['url']}|{resource.get('version')}"] = resource
    return found


def from_files(canonical: str) -> dict[str, Any] | None:
    return _by_canonical().get(canonical)


RESOLVERS: dict[str, Resolve] = {"package files": from_files, "registry": load().by_url}


def example(name: str) -> dict[str, Any]:
    return copy.deepcopy(_example(name))


@cache
def _example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return data


def check(resource: dict[str, Any], resolve: Resolve = from_files) -> list[Issue]:
    profile = resolve(resource["meta"]["profile"][0])
    assert profile is not None
    return profile_issues(resource, profile, resolve)


def errors(issues: list[Issue]) -> set[tuple[str, str]]:
    return {(i.code, i.expression[0]) for i in issues if i.severity == "error"}


def _profiled() -> list[tuple[str, dict[str, Any]]]:
    """Each example naming a profile of the package, and each Bundle entry that names one."""
    cases = []
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = _example(path.name)
        cases.append((path.name, resource))
        for index, entry in enumerate(resource.get("entry", [])):
            if entry["resource"].get("meta", {}).get("profile"):
                cases.append((f"{path.name}#entry[{index}]", entry["resource"]))
    return [(name, r) for name, r in cases if from_files(r["meta"]["profile"][0])]


@pytest.mark.parametrize("resolver", RESOLVERS)
@pytest.mark.parametrize(("name", "resource"), _profiled(), ids=[n for n, _ in _profiled()])
def test_the_examples_of_the_package_conform(
    name: str, resource: dict[str, Any], resolver: str
) -> None:
    for url in resource["meta"]["profile"]:
        profile = RESOLVERS[resolver](url)
        assert profile is not None
        issues = profile_issues(resource, profile, RESOLVERS[resolver])
        assert [i for i in issues if i.severity == "error"] == []


def test_the_examples_name_every_resource_profile_of_the_package_but_one() -> None:
    """sas-sos-appointment has no example; FrLocationAgregateur is named by contained ones."""
    named = {
        url
        for _, resource in _profiled()
        for inner in [resource, *resource.get("contained", [])]
        for url in inner["meta"]["profile"]
    }
    profiles = [json.loads(path.read_text()) for path in PACKAGE.glob("StructureDefinition-*")]
    unnamed = {p["url"] for p in profiles if p["kind"] == "resource"} - named
    assert unnamed == {f"{SAS}/sas-sos-appointment"}


def test_a_required_element_missing() -> None:
    slot = example("Slot-ExampleSlotPSIndiv1.json")
    del slot["schedule"]
    role = example("PractitionerRole-ExamplePractitionerRoleAgregateur.json")
    del role["location"]
    assert errors(check(slot)) == {("required", "Slot.schedule")}
    assert errors(check(role)) == {("required", "PractitionerRole.location")}


def test_more_than_max_and_longer_than_max_length() -> None:
    location = example("Location-1111111111.json")
    location["address"]["line"].append("Bâtiment B")
    location["address"]["postalCode"] = "357000"
    assert errors(check(location)) == {
        ("structure", "Location.address.line"),
        ("value", "Location.address.postalCode"),
    }


def test_a_fixed_value_is_matched_exactly() -> None:
    slot = example("Slot-ExampleSlotPSIndiv1.json")
    slot["status"] = "busy"
    issues = check(slot)
    assert errors(issues) == {("value", "Slot.status")}
    assert any('"free"' in i.diagnostics for i in issues if i.code == "value")


def test_a_pattern_is_contained() -> None:
    organization = example("Organization-ExampleOrgaCPTS1.json")
    organization["identifier"][0]["type"]["coding"].append({"system": "urn:x", "code": "y"})
    assert errors(check(organization)) == set()
    organization["identifier"][0]["type"]["coding"][0]["code"] = "IDNPS"
    organization["identifier"][0]["system"] = "urn:oid:1.2.250.1.71.4.2.1"
    assert errors(check(organization)) == {
        ("value", "Organization.identifier[0].type"),
        ("value", "Organization.identifier[0].system"),
    }


def test_a_code_outside_a_required_value_set_of_the_package() -> None:
    slot = example("Slot-ExampleSlotCPTS1.json")
    slot["meta"]["security"].append({"system": TYPE_CRENEAU, "code": "URGENT"})
    slot["meta"]["security"].append({"system": "urn:other", "code": "PUBLIC"})
    assert errors(check(slot)) == {
        ("code-invalid", "Slot.meta.security[2]"),
        ("code-invalid", "Slot.meta.security[3]"),
    }


def test_a_code_outside_a_core_value_set() -> None:
    """R4 value sets are not loaded: profiles/required-bindings.json gives their codes."""
    location = example("Location-1111111111.json")
    location["hoursOfOperation"][0]["daysOfWeek"][1] = "wednesday"
    assert errors(check(location)) == {
        ("code-invalid", "Location.hoursOfOperation[0].daysOfWeek[1]")
    }


def test_a_value_set_not_loaded_is_one_warning() -> None:
    slot = example("Slot-ExampleSlotPSIndiv1.json")  # two specialties bound to an FR Core set
    issues = check(slot)
    specialty = [i for i in issues if "fr-practitioner-specialty" in i.diagnostics]
    assert [(i.severity, i.code, i.expression) for i in specialty] == [
        ("warning", "not-supported", ("Slot.specialty[0]",))
    ]
    assert errors(issues) == set()


def test_a_reference_to_a_type_no_target_profile_is() -> None:
    slot = example("Slot-ExampleSlotCPTS1.json")
    slot["schedule"] = {"reference": "https://elsewhere.example/fhir/Practitioner/p1"}
    assert errors(check(slot)) == {("structure", "Slot.schedule")}


def test_a_reference_to_a_contained_resource_of_the_wrong_type() -> None:
    role = example("PractitionerRole-ExamplePractitionerRoleAgregateur.json")
    role["practitioner"] = {"reference": "#ExampleLocation"}
    assert errors(check(role)) == {("structure", "PractitionerRole.practitioner")}


def test_a_reference_to_a_bundle_entry_of_the_wrong_type() -> None:
    bundle = example("Bundle-ExampleBundleCPTS.json")
    bundle["entry"][2]["fullUrl"] = "urn:uuid:6f1c1c2e-8f0a-4a8e-9d55-3c1e8b7f0a11"
    bundle["entry"][0]["resource"]["schedule"] = {"reference": bundle["entry"][2]["fullUrl"]}
    assert ("structure", "Bundle.entry[0].resource.schedule") in errors(check(bundle))


def test_a_contained_resource_is_held_to_its_profile() -> None:
    role = example("PractitionerRole-ExamplePractitionerRoleAgregateur.json")
    del role["contained"][0]["address"]
    assert errors(check(role)) == {("required", "PractitionerRole.contained[0].address")}


def test_a_slice_min_not_met() -> None:
    appointment = example("Appointment-1.json")
    del appointment["extension"]
    issues = check(appointment)
    assert errors(issues) == {("required", "Appointment.extension")}
    assert any("extension:appointmentOperator" in i.diagnostics for i in issues)


def test_a_slice_of_bundle_entries_by_profile() -> None:
    bundle = example("Bundle-ExampleBundleCPTS.json")
    del bundle["entry"][2]  # the only Practitioner
    assert errors(check(bundle)) == {("required", "Bundle.entry")}
    bundle = example("Bundle-ExampleBundleCPTS.json")
    del bundle["entry"][0]["resource"]["schedule"]  # the only Slot no longer conforms
    assert errors(check(bundle)) == {
        ("required", "Bundle.entry[0].resource.schedule"),
        ("required", "Bundle.entry"),
    }


def test_a_slice_of_bundle_entries_by_type() -> None:
    bundle = example("Bundle-ExampleBundlePSIndiv.json")
    bundle["entry"][0]["resource"]["status"] = "busy"
    assert errors(check(bundle)) == {("value", "Bundle.entry[0].resource.status")}


def test_the_children_of_a_slice_apply_to_its_items() -> None:
    slot = example("Slot-ExampleSlotCPTS1.json")  # serviceType[1] is the referencecpts slice
    del slot["serviceType"][1]["extension"]
    assert errors(check(slot)) == {("required", "Slot.serviceType[1].extension")}
    slot = example("Slot-ExampleSlotCPTS1.json")
    slot["serviceType"][1]["extension"][0]["valueReference"] = {"reference": "Location/l1"}
    assert errors(check(slot)) == {("structure", "Slot.serviceType[1].extension[0].valueReference")}


def test_a_closed_slicing_refuses_an_item_no_slice_takes() -> None:
    appointment = example("Appointment-1.json")
    appointment["extension"].append(
        {
            "url": BOOKING_RECORD,
            "extension": [
                {"url": "bookedAt", "valueInstant": "2024-05-02T08:00:00Z"},
                {"url": "client", "valueString": "booking-app"},
                {"url": "channel", "valueString": "web"},
            ],
        }
    )
    assert errors(check(appointment)) == {("structure", "Appointment.extension[1].extension[2]")}
    del appointment["extension"][1]["extension"][2]
    assert errors(check(appointment)) == set()


def test_an_invariant_of_the_profile() -> None:
    organization = example("Organization-ExampleOrgaCPTS1.json")
    organization["identifier"][0]["value"] = "2950047225"
    issues = check(organization)
    assert errors(issues) == {("invariant", "Organization.identifier[0]")}
    assert "FINESS-invariant" in issues[0].diagnostics


def test_an_extension_value_of_a_type_its_definition_does_not_take() -> None:
    appointment = example("Appointment-1.json")
    operator = appointment["extension"][0]
    operator["valueString"] = operator.pop("valueReference")["identifier"]["value"]
    assert errors(check(appointment)) == {
        ("structure", "Appointment.extension[0].valueString"),
        ("required", "Appointment.extension[0].value"),
    }
    slot = example("Slot-ExampleSlotSOS1.json")
    slot["extension"] = [{"url": HOLD_EXPIRES, "valueString": "soon"}]
    assert errors(check(slot)) == {
        ("structure", "Slot.extension[0].valueString"),
        ("required", "Slot.extension[0].value"),
    }


def test_an_extension_on_a_primitive_is_checked() -> None:
    slot = example("Slot-ExampleSlotSOS1.json")
    slot["_start"] = {"extension": [{"url": HOLD_EXPIRES, "valueBoolean": True}]}
    assert ("structure", "Slot.start.extension[0].valueBoolean") in errors(check(slot))
    slot["_start"]["extension"][0] = {"url": HOLD_EXPIRES, "valueInstant": "2024-05-02T08:00:00Z"}
    assert errors(check(slot)) == set()


def test_an_unknown_extension_is_fine() -> None:
    slot = example("Slot-ExampleSlotSOS1.json")
    slot["extension"] = [{"url": "https://elsewhere.example/ext", "valueInteger": 3}]
    assert errors(check(slot)) == set()


def test_a_resource_of_another_type() -> None:
    profile = from_files(f"{SAS}/sas-sos-slot-aggregator")
    assert profile is not None
    issues = profile_issues(example("Location-1111111111.json"), profile, from_files)
    assert errors(issues) == {("structure", "Location")}


@pytest.mark.parametrize(
    ("profile", "resource"),
    [
        ("sas-cpts-bundle-aggregator", {"resourceType": "Bundle", "entry": 5, "link": "x"}),
        ("sas-cpts-bundle-aggregator", {"resourceType": "Bundle", "entry": [{"resource": []}]}),
        (
            "sas-cpts-slot-aggregator",
            {
                "resourceType": "Slot",
                "meta": {"security": "PUBLIC"},
                "serviceType": [{"coding": 3}, "x", None],
                "contained": {"id": 1},
                "schedule": {"reference": 7},
                "_status": [None],
            },
        ),
    ],
)
def test_odd_shapes_are_reported_not_raised(profile: str, resource: dict[str, Any]) -> None:
    """The model validation before this one refuses them; this one must not fail on them."""
    definition = from_files(f"{SAS}/{profile}")
    assert definition is not None
    assert errors(profile_issues(resource, definition, from_files))


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_the_rules_hold_through_either_resolver(resolver: str) -> None:
    slot = example("Slot-ExampleSlotCPTS1.json")
    slot["status"] = "busy"
    slot["meta"]["security"][0]["code"] = "PRIVE"
    assert errors(check(slot, RESOLVERS[resolver])) == {
        ("value", "Slot.status"),
        ("code-invalid", "Slot.meta.security[0]"),
    }


def test_a_profile_is_compiled_once_per_url_and_version() -> None:
    profile = from_files(f"{SAS}/sas-sos-slot-aggregator")
    assert profile is not None
    known = definitions(from_files)
    assert known.compiled(profile) is known.compiled(copy.deepcopy(profile))
    assert definitions(load().by_url) is definitions(load().by_url)


TEST = "https://test.creneau.org"
CODES = f"{TEST}/CodeSystem/codes"
COLOURS = f"{TEST}/CodeSystem/colours"


def _value_set(name: str, compose: dict[str, Any]) -> dict[str, Any]:
    url = f"{TEST}/ValueSet/{name}"
    return {"resourceType": "ValueSet", "url": url, "version": "1", "compose": compose}


def _element(path: str, **rules: Any) -> dict[str, Any]:
    return {"id": path, "path": path, "min": 0, "max": "1", **rules}


def _required(name: str) -> dict[str, Any]:
    return {"strength": "required", "valueSet": f"{TEST}/ValueSet/{name}"}


SYNTHETIC: dict[str, dict[str, Any]] = {
    CODES: {
        "resourceType": "CodeSystem",
        "url": CODES,
        "content": "complete",
        "concept": [{"code": "a", "concept": [{"code": "a1"}]}, {"code": "b"}],
    },
    f"{TEST}/ValueSet/all-but-b": _value_set(
        "all-but-b",
        {
            "include": [{"system": CODES}],
            "exclude": [{"system": CODES, "concept": [{"code": "b"}]}],
        },
    ),
    f"{TEST}/ValueSet/imported|1": _value_set(
        "imported", {"include": [{"valueSet": [f"{TEST}/ValueSet/all-but-b"]}]}
    ),
    f"{TEST}/ValueSet/unknown-system": _value_set(
        "unknown-system", {"include": [{"system": COLOURS}]}
    ),
    f"{TEST}/StructureDefinition/codes": {
        "resourceType": "StructureDefinition",
        "url": f"{TEST}/StructureDefinition/codes",
        "version": "1",
        "kind": "resource",
        "type": "Slot",
        "snapshot": {
            "element": [
                _element(
                    "Slot",
                    constraint=[
                        {"key": "t-1", "severity": "error", "human": "?", "expression": "nope()"},
                        {
                            "key": "t-2",
                            "severity": "error",
                            "human": "A short comment",
                            "expression": "comment.exists() implies comment.length() < 6",
                        },
                    ],
                ),
                _element("Slot.status", binding=_required("all-but-b"), type=[{"code": "code"}]),
                _element("Slot.comment", type=[{"code": "string"}]),
                _element(
                    "Slot.serviceType",
                    max="*",
                    binding=_required("imported|1"),
                    type=[{"code": "CodeableConcept"}],
                ),
                _element(
                    "Slot.appointmentType",
                    binding=_required("unknown-system"),
                    type=[{"code": "CodeableConcept"}],
                ),
            ]
        },
    },
}


def synthetic(canonical: str) -> dict[str, Any] | None:
    return SYNTHETIC.get(canonical) or from_files(canonical)


def check_synthetic(**slot: Any) -> list[Issue]:
    profile = SYNTHETIC[f"{TEST}/StructureDefinition/codes"]
    return profile_issues({"resourceType": "Slot", **slot}, profile, synthetic)


def test_a_value_set_takes_a_whole_code_system_less_what_it_excludes() -> None:
    assert errors(check_synthetic(status="a1")) == set()
    assert errors(check_synthetic(status="b")) == {("code-invalid", "Slot.status")}
    assert errors(check_synthetic(status="c")) == {("code-invalid", "Slot.status")}


def test_a_value_set_imports_another_and_codings_match_on_system() -> None:
    good = {"coding": [{"system": "urn:x", "code": "a"}, {"system": CODES, "code": "a"}]}
    wrong_system = {"coding": [{"system": "urn:x", "code": "a"}]}
    issues = check_synthetic(serviceType=[good, wrong_system, {"text": "no code"}])
    assert errors(issues) == {
        ("code-invalid", "Slot.serviceType[1]"),
        ("code-invalid", "Slot.serviceType[2]"),
    }


def test_a_code_system_not_loaded_leaves_its_value_set_unchecked() -> None:
    issues = check_synthetic(appointmentType={"coding": [{"system": COLOURS, "code": "red"}]})
    assert [(i.severity, i.code, i.expression) for i in issues] == [
        ("warning", "not-supported", ("Slot.appointmentType",))
    ]


def test_a_constraint_fhirpathpy_cannot_run_is_skipped_and_the_others_hold() -> None:
    assert check_synthetic(comment="short") == []
    assert errors(check_synthetic(comment="too long")) == {("invariant", "Slot")}
