"""National identifiers name one practitioner, one structure, one place: no two live resources
of one type carry the same one.

Two Practitioners with one RPPS number (or two Organizations with one FINESS) would make every
conditional operation on that identifier (`If-None-Exist`, `PUT Practitioner?identifier=…`)
answer 412 for ever. So a write that gives a resource of `KINDS` an identifier of one of the
operator's national systems (`Policy.national_identifier_systems`) is refused (409 `duplicate`)
while another live resource of its type carries it. A resource keeping its own identifier is not
looked at again; deleting a resource frees its identifiers.

The default systems (`DEFAULT_SYSTEMS`), each unique to one person, structure or site:

- `urn:oid:1.2.250.1.71.4.2.1`, IDNPS, the French national practitioner identifier (RPPS
  number prefixed `8`, ADELI number prefixed `0`, …): FR Core `fr-core-practitioner`, slice
  `idNatPs` ("Identifiant national unique du professionnel de santé"); the ANS SAS 1.1.0
  profiles `FrPractitionerAgregateur` and `FrPractitionerRegul` fix it as `identifier.system`
  (/work/shared/specs/ans.fhir.fr.sas-1.1.0/, as its Practitioner examples use it).
- `urn:oid:1.2.250.1.71.4.2.2`, IDNST, the French national structure identifier (FINESS
  prefixed `1`, SIREN `2`, SIRET `3`, …): FR Core `fr-core-organization`, slice `idNatSt`; the
  ANS SAS profiles `sas-cpts-organization-aggregator` and `sas-sos-organization-aggregator` fix
  it, and FR Core lists IDNST among Location identifier types.
- `https://rpps.esante.gouv.fr`, the bare 11-digit RPPS number: the current FR Core sources
  (hl7.fhir.fr.core), `fr-core-practitioner`, slice `rpps`.
- `http://hl7.org/fhir/sid/us-npi`, the US National Provider Identifier: US Core
  Practitioner slice `NPI` (and Organization, a type 2 NPI).
- `https://fhir.nhs.uk/Id/ods-organization-code` and `https://fhir.nhs.uk/Id/ods-site-code`,
  NHS ODS codes: UK Core Organization slice `odsOrganisationCode`, UK Core Location slice
  `odsSiteCode`.

Left out on purpose: the current FR Core's `https://finess.esante.gouv.fr` and
`https://sirene.fr` (each slice `0..*`, one system for FINEJ and FINEG, one for SIREN and
SIRET: a site's record may carry its legal entity's number too, so they repeat rightly; their
unique form is the IDNST), and the patients' INS (`urn:oid:1.2.250.1.213.1.4.8` INS-NIR,
`…4.9` INS-NIA).

The kinds: the resources such an identifier denotes. Not PractitionerRole, HealthcareService,
Schedule: they are *about* a practitioner or a structure, and several of them may rightly
carry its number. Not Patient (nor any personal type): patients are each app's own records
(`server.auth.access.PERSONAL`), so one person is rightly recorded by two apps, and a refusal
across apps would tell one app that another knows this person, as `identifiers` never does;
FR Core also keeps a merged identity's INS on record (`use: old`).

Atomic: the check takes a guard on (type, identifier) before it searches, so two concurrent
writes of one identifier conflict on MongoDB (one is run again and finds the other) and queue on
SQLite. Identifiers are compared exactly, as given.
"""

from __future__ import annotations

import re
from typing import Any

from server.fhir import outcome
from server.scheduling.queries import find_all
from server.store.base import Transaction

Body = dict[str, Any]

DEFAULT_SYSTEMS: tuple[str, ...] = (
    "urn:oid:1.2.250.1.71.4.2.1",
    "urn:oid:1.2.250.1.71.4.2.2",
    "https://rpps.esante.gouv.fr",
    "http://hl7.org/fhir/sid/us-npi",
    "https://fhir.nhs.uk/Id/ods-organization-code",
    "https://fhir.nhs.uk/Id/ods-site-code",
)
KINDS = frozenset({"Practitioner", "Organization", "Location"})


def carried(body: Body | None, systems: frozenset[str]) -> set[tuple[str, str]]:
    """The (system, value) pairs of the resource's identifiers in a national system."""
    found = set()
    for identifier in (body or {}).get("identifier", []):
        system, value = identifier.get("system"), identifier.get("value")
        if system in systems and isinstance(value, str) and value:
            found.add((system, value))
    return found


def token(system: str, value: str) -> str:
    """`system|value` as a search token, its `\\ , | $` escaped."""
    return f"{_escaped(system)}|{_escaped(value)}"


def guard_key(kind: str, system: str, value: str) -> str:
    return f"{kind}?identifier={token(system, value)}"


async def check(
    tx: Transaction,
    own_base: str,
    systems: frozenset[str],
    previous: Body | None,
    body: Body | None,
) -> None:
    """Refuse the write if it gives `body` a national identifier another live resource of its
    type carries. Only the identifiers it adds are looked at: one it kept was checked when
    it was added."""
    if body is None:
        return
    kind = body["resourceType"]
    for system, value in sorted(carried(body, systems) - carried(previous, systems)):
        await tx.guard(guard_key(kind, system, value))
        found = await find_all(tx, own_base, kind, [("identifier", token(system, value))])
        if any(
            version.id != body["id"] and (system, value) in carried(version.body, systems)
            for version in found
        ):
            raise outcome.conflict(
                f"Another {kind} already carries the identifier {system}|{value}: a national "
                "identifier names one resource of each type",
                code="duplicate",
            )


def _escaped(text: str) -> str:
    return re.sub(r"([\\,|$])", r"\\\1", text)
