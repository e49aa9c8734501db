"""The conformance resources the server knows, loaded once at start and shared read-only.

Three sources, in this order:

1. ours: `profiles/StructureDefinition-*.json`, `profiles/SearchParameter-*.json` and
   `profiles/operations/*.json`;
2. the R4 core definitions we carry: `profiles/search-parameters.json`, the official
   SearchParameters of the served types (`profiles/derive.py`);
3. each configured FHIR package (`Settings.ig_packages`, the SAS IG by default), in the order
   given: a folder, or an npm `.tgz`, holding `package.json` and its resources at its top level
   or under `package/`. Only the top level is read: `example/` and other folders are not.

Kept: StructureDefinition, SearchParameter, OperationDefinition, ValueSet, CodeSystem and
ImplementationGuide (served read-only by `server.api.conformance`), and CapabilityStatement (the
requirements an IG states, which `server.api.metadata` checks ours against; not served).

Each resource is checked with its `fhir.resources` R4B model. Ours must pass. A package's
resource that fails is kept and the failure logged and listed in `Conformance.notes`: packages
are written against R4 (4.0.1) and a few elements differ in R4B; none of the SAS IG 1.1.0 fails.

Ids are unique per type. The first resource loaded with an id keeps it; a later one of the same
type with that id (another url or version) is served as `{package name}-{id}`, cut to 64
characters (`hl7.fhir.fr.core-fr-core-patient`). The same url and version twice (a package
given twice) is kept once. Callers must not modify what they are given.
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from server.fhir.resources import PROFILES

log = logging.getLogger(__name__)

SERVED = (
    "StructureDefinition",
    "SearchParameter",
    "OperationDefinition",
    "ValueSet",
    "CodeSystem",
    "ImplementationGuide",
)
KEPT = (*SERVED, "CapabilityStatement")
OURS = "creneau"
CORE = "hl7.fhir.r4.core"
SAS_PACKAGE = PROFILES / "packages" / "ans.fhir.fr.sas-1.1.0"
DEFAULT_PACKAGES: tuple[str, ...] = (str(SAS_PACKAGE),)
MAX_ID = 64


@dataclass(frozen=True)
class Package:
    """One FHIR package: what its `package.json` says, and its conformance resources."""

    name: str
    version: str
    canonical: str
    url: str
    resources: tuple[dict[str, Any], ...]


@dataclass(eq=False)
class Conformance:
    """The loaded resources by type and id, and by canonical url (every version)."""

    loaded: list[Package]
    notes: list[str] = field(default_factory=list)
    by_id: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    by_canonical: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    from_ig: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def by_url(self, canonical: str) -> dict[str, Any] | None:
        """The resource a canonical names (`url` or `url|version`); the latest version when
        several are loaded and none is asked for."""
        url, _, version = canonical.partition("|")
        found = self.by_canonical.get(url, [])
        if version:
            return next((r for r in found if r.get("version") == version), None)
        return max(found, key=lambda r: version_key(r.get("version", "")), default=None)

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        """Every resource of one type, in load order."""
        return list(self.by_id.get(resource_type, {}).values())

    def get(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        return self.by_id.get(resource_type, {}).get(resource_id)

    def from_packages(self, resource_type: str) -> list[dict[str, Any]]:
        """The resources of one type that came from the configured packages (not ours, not the
        core definitions)."""
        return list(self.from_ig.get(resource_type, ()))

    def packages(self) -> list[dict[str, Any]]:
        """Each loaded package: name, version, canonical, url (from its `package.json`) and
        `guide`, the canonical of its ImplementationGuide when it holds one."""
        return [
            {
                "name": p.name,
                "version": p.version,
                "canonical": p.canonical,
                "url": p.url,
                "guide": next(
                    (r["url"] for r in p.resources if r["resourceType"] == "ImplementationGuide"),
                    None,
                ),
            }
            for p in self.loaded
        ]

    def profiles_for(self, resource_type: str) -> list[str]:
        """The canonicals of the loaded profiles that constrain `resource_type`."""
        return [
            sd["url"]
            for sd in self.of_type("StructureDefinition")
            if sd.get("type") == resource_type
            and sd.get("kind") == "resource"
            and sd.get("derivation") == "constraint"
        ]

    def add(self, origin: str, resource: dict[str, Any]) -> None:
        kind, url, version = resource["resourceType"], resource.get("url"), resource.get("version")
        same = self.by_canonical.get(url, []) if url else []
        if any(r["resourceType"] == kind and r.get("version") == version for r in same):
            log.info(
                "%s %s|%s is loaded already: the copy in %s is skipped", kind, url, version, origin
            )
            return
        of_type = self.by_id.setdefault(kind, {})
        if resource["id"] in of_type:
            resource = {**resource, "id": f"{origin}-{resource['id']}"[:MAX_ID]}
            if resource["id"] in of_type:
                raise ValueError(f"{kind}/{resource['id']} from {origin} is taken twice")
            log.info("%s id taken: %s's copy is served as %s", kind, origin, resource["id"])
        of_type[resource["id"]] = resource
        if url:
            self.by_canonical.setdefault(url, []).append(resource)
        if origin not in (OURS, CORE):
            self.from_ig.setdefault(kind, []).append(resource)


def version_key(version: str) -> tuple[Any, ...]:
    """Versions in their natural order: `1.10.0` after `1.9.2`, `1.0.0` after `1.0.0-ballot`."""
    release, _, pre = version.partition("-")
    return (_parts(release), (0, _parts(pre)) if pre else (1, ()))


def _parts(text: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((1, int(p)) if p.isdecimal() else (0, p) for p in re.split(r"[.+]", text) if p)


@cache
def load(packages: tuple[str, ...] = DEFAULT_PACKAGES) -> Conformance:
    """Ours, the core definitions, then each package (a folder or a `.tgz`) in order."""
    read = [read_package(Path(p)) for p in packages]
    registry = Conformance(read)
    for resource in _ours():
        _check(resource)
        registry.add(OURS, resource)
    for resource in _core():
        _check(resource)
        registry.add(CORE, resource)
    for package in read:
        for resource in package.resources:
            try:
                _check(resource)
            except ValidationError as error:
                note = f"{package.name}: {resource['resourceType']}/{resource['id']} fails R4B"
                registry.notes.append(f"{note}: {error.error_count()} issue(s), kept")
                log.warning("%s, kept: %s", note, error)
            registry.add(package.name, resource)
    return registry


def _check(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def _ours() -> Iterator[dict[str, Any]]:
    patterns = ("StructureDefinition-*.json", "SearchParameter-*.json", "CodeSystem-*.json")
    for pattern in (*patterns, "operations/*.json"):
        for path in sorted(PROFILES.glob(pattern)):
            yield json.loads(path.read_text())


def _core() -> Iterator[dict[str, Any]]:
    bundle = json.loads((PROFILES / "search-parameters.json").read_text())
    for entry in bundle["entry"]:
        yield entry["resource"]


def read_package(path: Path) -> Package:
    """A package from its folder or its `.tgz`; ValueError if it is neither."""
    if path.is_dir():
        root = path / "package" if (path / "package" / "package.json").is_file() else path
        if not (root / "package.json").is_file():
            raise ValueError(f"{path} holds no package.json: not a FHIR package")
        files = ((p.name, p.read_bytes()) for p in sorted(root.glob("*.json")))
        return _package(path, files)
    if path.is_file() and path.name.endswith((".tgz", ".tar.gz")):
        with tarfile.open(path, "r:gz") as archive:
            return _package(path, list(_archived(archive)))
    raise ValueError(f"{path} is neither a package folder nor a .tgz")


def _archived(archive: tarfile.TarFile) -> Iterator[tuple[str, bytes]]:
    """The `.json` files at the top of the archive's package (`package/x.json` or `x.json`)."""
    members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".json")]
    names = {m.name.removeprefix("./") for m in members}
    prefix = "package/" if "package/package.json" in names else ""
    for member in members:
        name = member.name.removeprefix("./")
        if name.startswith(prefix) and "/" not in name.removeprefix(prefix):
            extracted = archive.extractfile(member)
            if extracted is not None:
                yield name.removeprefix(prefix), extracted.read()


def _package(path: Path, files: Iterable[tuple[str, bytes]]) -> Package:
    manifest: dict[str, Any] | None = None
    resources: list[dict[str, Any]] = []
    for name, content in files:
        try:
            data = json.loads(content)
        except ValueError:
            log.warning("%s: %s is not JSON, skipped", path, name)
            continue
        if name == "package.json":
            manifest = data
        elif _kept(data):
            resources.append(data)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("name"), str):
        raise ValueError(f"{path}: package.json is missing or names no package")
    return Package(
        name=manifest["name"],
        version=str(manifest.get("version", "")),
        canonical=str(manifest.get("canonical", "")),
        url=str(manifest.get("url", "")),
        resources=tuple(resources),
    )


def _kept(data: Any) -> bool:
    """A conformance resource of a kept type, with an id to serve it at."""
    return (
        isinstance(data, dict)
        and data.get("resourceType") in KEPT
        and isinstance(data.get("id"), str)
        and bool(data["id"])
    )
