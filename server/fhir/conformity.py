"""Whether a resource meets the profiles it claims in `meta.profile` (or one asked by name).

A profile the server knows (a StructureDefinition of the loaded packages or ours,
`server.fhir.conformance`) is checked with `server.fhir.profiles`; its errors refuse the write
(422, each with its element path). A profile the server does not know cannot be checked: the
resource is accepted with a warning, or refused under `Prefer: handling=strict`. Warnings
(an unknown profile, a value set not loaded) are kept on the request's `Conformity` for its
answer's OperationOutcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server.fhir import outcome
from server.fhir.outcome import Issue
from server.fhir.profiles import profile_issues

Resolve = Callable[[str], dict[str, Any] | None]
ERRORS = frozenset({"error", "fatal"})
PENDING_ID = "to-be-assigned"


@dataclass
class Conformity:
    resolve: Resolve
    strict: bool = False  # `Prefer: handling=strict`: an unknown profile is an error
    warnings: list[Issue] = field(default_factory=list)

    def check(self, body: dict[str, Any]) -> None:
        """Raise 422 with the errors of the profiles `body` claims; keep the warnings. A body
        to create has no id yet: it is checked as it will be stored, with the one it gets (a
        profile may require `id`, as the SAS CPTS HealthcareService does)."""
        stored = body if "id" in body else {**body, "id": PENDING_ID}
        issues = self.issues(stored, claimed(body))
        errors = [issue for issue in issues if issue.severity in ERRORS]
        if errors:
            raise outcome.invalid(errors)
        self.warnings += issues

    def issues(self, body: dict[str, Any], profiles: list[str]) -> list[Issue]:
        """Every issue of `body` against each of `profiles` (errors and warnings)."""
        kind = body.get("resourceType")
        found: list[Issue] = []
        for index, canonical in enumerate(profiles):
            where = f"{kind}.meta.profile[{index}]"
            definition = self.resolve(canonical)
            if definition is None or definition.get("resourceType") != "StructureDefinition":
                found.append(self._unknown(canonical, where))
            elif definition.get("type") != kind:
                message = f"Profile {canonical} is for {definition.get('type')}, not {kind}"
                found.append(Issue("structure", message, expression=(where,)))
            else:
                found += profile_issues(body, definition, self.resolve)
        return found

    def _unknown(self, canonical: str, where: str) -> Issue:
        message = f"Profile {canonical[:200]} is not known here: not checked against it"
        severity = "error" if self.strict else "warning"
        return Issue("not-supported", message, severity=severity, expression=(where,))


def claimed(body: dict[str, Any]) -> list[str]:
    """The canonicals in `meta.profile` (the model checked they are strings)."""
    meta = body.get("meta")
    profiles = meta.get("profile", []) if isinstance(meta, dict) else []
    return [p for p in profiles if isinstance(p, str)]
