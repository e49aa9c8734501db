"""Every extension the server writes or reads under its own canonical is defined in profiles/."""

from __future__ import annotations

import json
from pathlib import Path

from fhir.resources.R4B.structuredefinition import StructureDefinition

from server.auth import grants
from server.scheduling import availability
from server.scheduling.vocabulary import CANONICAL, SERVER_MANAGED

PROFILES = Path(__file__).resolve().parents[3] / "profiles"


def definitions() -> dict[str, dict]:
    found = {}
    for path in sorted(PROFILES.glob("StructureDefinition-*.json")):
        definition = json.loads(path.read_text(encoding="utf-8"))
        assert path.stem == f"StructureDefinition-{definition['id']}"
        found[definition["url"]] = definition
    return found


def test_each_definition_is_a_valid_extension_under_our_canonical() -> None:
    for url, definition in definitions().items():
        StructureDefinition.model_validate(definition)
        assert url.startswith(f"{CANONICAL}/StructureDefinition/")
        assert definition["type"] == "Extension" and definition["derivation"] == "constraint"
        fixed = [e for e in definition["differential"]["element"] if e["id"] == "Extension.url"]
        assert fixed == [{"id": "Extension.url", "path": "Extension.url", "fixedUri": url}]


def test_every_extension_of_ours_is_defined() -> None:
    assert SERVER_MANAGED | {availability.URL, grants.GRANT} == set(definitions())
