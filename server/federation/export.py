"""A FHIR Bulk Data export (`$export`): what one kick-off asked for, kept as a record, and the
manifest that lists its files.

An export is a description, not a copy: the caller, the types, `_since`, the practitioner it is
scoped to and its `transactionTime`. Its files are read from the store when they are downloaded
(`export_files`), page by page, so that an export costs no storage and no background work, and a
job is complete as soon as it is made: the first status poll answers the manifest. What a file
holds is what the store holds when it is read: a resource changed after `transactionTime` is in
it as changed, and in the next export `_since` that `transactionTime` too; nothing is missed.

    GET [base]/$export                        kick-off, everything the caller may discover
    GET [base]/Practitioner/{id}/$export      one practitioner's agenda
    GET [base]/$export-status/{job}           the manifest (DELETE: cancel)
    GET [base]/$export-file/{job}/{type}.ndjson

A job's id is random (128 bits) and a job is read only with its own client's token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from server.fhir import outcome

KIND = "export-job"
DAY = 86_400  # how long a job's files can be read
NDJSON_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
# What an export holds, in the order an import loads it (those referred to first).
SYSTEM_TYPES = (
    "Organization",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "HealthcareService",
    "Schedule",
    "Slot",
    "Patient",
    "Appointment",
)
PRACTITIONER_TYPES = tuple(t for t in SYSTEM_TYPES if t != "HealthcareService")


@dataclass(frozen=True)
class Job:
    job_id: str
    client: str  # the client whose token may read it
    transaction_time: str
    request: str  # the kick-off URL, as the manifest repeats it
    types: tuple[str, ...]
    since: str | None = None
    practitioner: str | None = None  # the id of the practitioner it is scoped to

    def to_record(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "transactionTime": self.transaction_time,
            "request": self.request,
            "types": list(self.types),
            "since": self.since,
            "practitioner": self.practitioner,
        }

    @classmethod
    def of_record(cls, job_id: str, record: dict[str, Any]) -> Job:
        return cls(
            job_id,
            str(record["client"]),
            str(record["transactionTime"]),
            str(record["request"]),
            tuple(record["types"]),
            record.get("since"),
            record.get("practitioner"),
        )


def new_id() -> str:
    return secrets.token_urlsafe(16)


def types_of(given: str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The types `_type` asks for (comma separated), in loading order; all when not given."""
    if not given:
        return allowed
    asked = {t.strip() for t in given.split(",") if t.strip()}
    unknown = sorted(asked - set(allowed))
    if unknown:
        raise outcome.bad_request(
            f"_type names types this export does not hold: {', '.join(unknown)} "
            f"(it holds {', '.join(allowed)})"
        )
    return tuple(t for t in allowed if t in asked)


def check_format(given: str | None) -> None:
    if given is not None and given not in NDJSON_FORMATS:
        raise outcome.bad_request(f"_outputFormat {given!r}: only application/fhir+ndjson")


def manifest(job: Job, base: str) -> dict[str, Any]:
    """The Bulk Data manifest of a complete job: one file per type."""
    return {
        "transactionTime": job.transaction_time,
        "request": job.request,
        "requiresAccessToken": True,
        "output": [{"type": kind, "url": file_url(base, job.job_id, kind)} for kind in job.types],
        "error": [],
    }


def file_url(base: str, job_id: str, kind: str) -> str:
    return f"{base}/$export-file/{job_id}/{kind}.ndjson"
