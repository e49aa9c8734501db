"""The conformance registry: ours, the core definitions and the FHIR packages configured, each a
folder or a .tgz; ids kept unique per type; canonicals resolved to their latest version."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from pathlib import Path
from typing import Any

import pytest

from server.fhir import conformance
from server.fhir.conformance import load, read_package, version_key
from server.fhir.searchparams import registry

SAS = "https://interop.esante.gouv.fr/ig/fhir/sas"
OURS = "https://fhir.creneau.org"


def structure(resource_id: str, url: str, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "id": resource_id,
        "url": url,
        "version": version,
        "name": resource_id.replace("-", ""),
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Slot",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Slot",
        "derivation": "constraint",
        **extra,
    }


def manifest(name: str) -> dict[str, Any]:
    return {"name": name, "version": "0.9.0", "canonical": f"https://example.org/{name}"}


def write_folder(folder: Path, name: str, *resources: dict[str, Any]) -> Path:
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps(manifest(name)))
    for resource in resources:
        path = folder / f"{resource['resourceType']}-{resource.get('id', 'none')}.json"
        path.write_text(json.dumps(resource))
    return folder


def write_tgz(path: Path, name: str, files: dict[str, Any]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for member, content in {"package/package.json": manifest(name), **files}.items():
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_the_default_load_has_ours_the_core_ones_and_the_sas_package() -> None:
    loaded = load()
    assert loaded.by_url(f"{OURS}/OperationDefinition/appointment-book")["id"] == "appointment-book"
    assert loaded.by_url(f"{OURS}/StructureDefinition/hold-expires")["type"] == "Extension"
    assert loaded.get("SearchParameter", "Slot-start")["expression"] == "Slot.start"
    sas = loaded.by_url(f"{SAS}/SearchParameter/cptsslot-sp-servicetype")
    assert sas is not None and sas["code"] == "service-type-reference"
    assert {p["id"] for p in loaded.from_packages("SearchParameter")} == {
        "cptsslot-sp-servicetype",
        "slot-sp-start",
    }
    assert loaded.packages() == [
        {
            "name": "ans.fhir.fr.sas",
            "version": "1.1.0",
            "canonical": SAS,
            "url": f"{SAS}/1.1.0",
            "guide": f"{SAS}/ImplementationGuide/ans.fhir.fr.sas",
        }
    ]
    assert f"{SAS}/StructureDefinition/sas-cpts-slot-aggregator" in loaded.profiles_for("Slot")
    assert loaded.profiles_for("Patient") == []
    assert loaded.notes == []  # every SAS resource passes the R4B models


def test_examples_are_not_loaded() -> None:
    assert load().get("Slot", "ExampleSlotCPTS1") is None
    assert all(r["resourceType"] in conformance.KEPT for p in load().loaded for r in p.resources)


def test_a_folder_package_is_loaded(tmp_path: Path) -> None:
    profile = structure("fr-core-slot", "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-slot")
    folder = write_folder(tmp_path / "fr-core", "hl7.fhir.fr.core", profile)
    loaded = load((str(folder),))
    assert loaded.get("StructureDefinition", "fr-core-slot") == profile
    assert profile["url"] in loaded.profiles_for("Slot")
    assert [p["name"] for p in loaded.packages()] == ["hl7.fhir.fr.core"]
    assert loaded.packages()[0]["guide"] is None


def test_a_folder_with_its_resources_under_package_is_loaded(tmp_path: Path) -> None:
    profile = structure("nested", "https://example.org/StructureDefinition/nested")
    write_folder(tmp_path / "pkg" / "package", "example.nested", profile)
    assert load((str(tmp_path / "pkg"),)).get("StructureDefinition", "nested") == profile


def test_a_tgz_package_is_loaded_without_its_examples(tmp_path: Path) -> None:
    profile = structure("from-tgz", "https://example.org/StructureDefinition/from-tgz")
    example = {"resourceType": "Slot", "id": "x", "status": "free"}
    value_set = {
        "resourceType": "ValueSet",
        "id": "sample-codes",
        "url": "https://example.org/ValueSet/sample-codes",
        "status": "active",
    }
    archive = write_tgz(
        tmp_path / "example.tgz",
        "example.tgz",
        {
            "package/StructureDefinition-from-tgz.json": profile,
            "package/ValueSet-sample-codes.json": value_set,
            "package/example/StructureDefinition-other.json": structure("other", "urn:other"),
            "package/example/Slot-x.json": example,
        },
    )
    loaded = load((str(archive),))
    assert loaded.get("StructureDefinition", "from-tgz") == profile
    assert loaded.by_url(value_set["url"]) == value_set
    assert loaded.get("StructureDefinition", "other") is None
    assert loaded.packages()[0]["name"] == "example.tgz"


def test_a_taken_id_is_prefixed_with_the_package_name(tmp_path: Path) -> None:
    clash = structure("booking-record", "https://example.org/StructureDefinition/booking-record")
    folder = write_folder(tmp_path / "clash", "example.clash", clash)
    loaded = load((str(folder),))
    assert loaded.get("StructureDefinition", "booking-record")["url"].startswith(OURS)
    moved = loaded.get("StructureDefinition", "example.clash-booking-record")
    assert moved is not None and moved["url"] == clash["url"]
    assert loaded.by_url(clash["url"]) == moved
    assert clash["id"] == "booking-record"  # the package's own copy is not changed


def test_two_packages_with_one_id_keep_both_in_their_order(tmp_path: Path) -> None:
    first = write_folder(
        tmp_path / "a", "example.a", structure("same", "https://a.example/StructureDefinition/s")
    )
    second = write_folder(
        tmp_path / "b", "example.b", structure("same", "https://b.example/StructureDefinition/s")
    )
    loaded = load((str(first), str(second)))
    assert loaded.get("StructureDefinition", "same")["url"].startswith("https://a.")
    assert loaded.get("StructureDefinition", "example.b-same")["url"].startswith("https://b.")
    reverse = load((str(second), str(first)))
    assert reverse.get("StructureDefinition", "same")["url"].startswith("https://b.")


def test_the_same_package_twice_is_loaded_once(tmp_path: Path) -> None:
    profile = structure("twice", "https://example.org/StructureDefinition/twice")
    folder = write_folder(tmp_path / "twice", "example.twice", profile)
    archive = write_tgz(
        tmp_path / "twice.tgz", "example.twice", {"package/StructureDefinition-twice.json": profile}
    )
    loaded = load((str(folder), str(archive)))
    assert [sd["id"] for sd in loaded.of_type("StructureDefinition")].count("twice") == 1
    assert loaded.get("StructureDefinition", "example.twice-twice") is None


def test_a_canonical_resolves_to_its_latest_version_or_the_one_asked(tmp_path: Path) -> None:
    url = "https://example.org/StructureDefinition/versioned"
    folder = write_folder(
        tmp_path / "versions",
        "example.versions",
        structure("v-1-9", url, "1.9.2"),
        structure("v-1-10", url, "1.10.0"),
        structure("v-1-10-ballot", url, "1.10.0-ballot"),
    )
    loaded = load((str(folder),))
    assert loaded.by_url(url)["id"] == "v-1-10"
    assert loaded.by_url(f"{url}|1.9.2")["id"] == "v-1-9"
    assert loaded.by_url(f"{url}|2.0.0") is None
    assert loaded.by_url("https://example.org/nothing") is None


def test_a_resource_the_r4b_model_refuses_is_kept_and_noted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = structure("no-abstract", "https://example.org/StructureDefinition/no-abstract")
    del broken["abstract"]
    folder = write_folder(tmp_path / "broken", "example.broken", broken)
    with caplog.at_level(logging.WARNING, logger="server.fhir.conformance"):
        loaded = load((str(folder),))
    assert loaded.get("StructureDefinition", "no-abstract") == broken
    assert loaded.notes == [
        "example.broken: StructureDefinition/no-abstract fails R4B: 1 issue(s), kept"
    ]
    assert "no-abstract" in caplog.text


def test_files_that_are_not_conformance_resources_are_skipped(tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path / "mixed",
        "example.mixed",
        {"resourceType": "Patient", "id": "p"},
        {"resourceType": "ValueSet", "status": "active"},  # no id: nowhere to serve it
    )
    (folder / "broken.json").write_text("{not json")
    (folder / ".index.json").write_text(json.dumps({"index-version": 1, "files": []}))
    assert read_package(folder).resources == ()


def test_a_folder_without_package_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"package\.json"):
        read_package(tmp_path / "empty")
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(ValueError, match="neither"):
        read_package(tmp_path / "file.json")


def test_versions_sort_naturally() -> None:
    ordered = ["0.9", "1.0.0-ballot", "1.0.0", "1.2.0", "1.10.0", "2"]
    assert sorted(reversed(ordered), key=version_key) == ordered


def test_the_sas_search_parameters_join_the_registry_without_replacing_core() -> None:
    service = registry().get("Slot", "service-type-reference")
    assert service is not None and service.url == f"{SAS}/SearchParameter/cptsslot-sp-servicetype"
    assert service.expression.startswith("Slot.serviceType.extension")
    slot = {
        "resourceType": "Slot",
        "serviceType": [
            {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType",
                        "valueReference": {"reference": "HealthcareService/cpts"},
                    }
                ]
            }
        ],
    }
    assert service.values(slot) == [{"reference": "HealthcareService/cpts"}]
    # the SAS `slot-sp-start` restates core Slot `start`: the core definition stays
    assert registry().get("Slot", "start").url == "http://hl7.org/fhir/SearchParameter/Slot-start"
