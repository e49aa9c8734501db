"""SMART scopes for backend services: `system/Type.perms`, v2 (`cruds`) and v1 (`read`, `write`,
`*`), and what each FHIR interaction needs.

v2 letters: c create, r read (read, vread, instance history), u update (update, patch),
d delete, s search (type and system search, type and system history). A v1 `read` is `rs`,
`write` is `cud`, `*` is `cruds`. Only `system/` scopes are granted here: this server serves
backend services, not patients or users signed in. Scopes with v2 query restrictions
(`system/Observation.rs?category=...`) are not granted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.fhir import outcome

LETTERS = "cruds"
V1 = {"read": "rs", "write": "cud", "*": "cruds"}
SCOPE = re.compile(r"^system/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)$")


@dataclass(frozen=True)
class Scope:
    resource_type: str  # a type, or "*"
    permissions: frozenset[str]

    def text(self) -> str:
        letters = "".join(c for c in LETTERS if c in self.permissions)
        return f"system/{self.resource_type}.{letters}"


def parse_one(text: str) -> Scope | None:
    """The scope a string names, or None if it is not a `system/` resource scope we grant."""
    found = SCOPE.match(text)
    if found is None:
        return None
    resource_type, perms = found.groups()
    if perms in V1:
        return Scope(resource_type, frozenset(V1[perms]))
    ordered = "".join(c for c in LETTERS if c in perms)
    if perms != ordered:
        return None  # v2 letters come once each, in cruds order
    return Scope(resource_type, frozenset(perms))


@dataclass(frozen=True)
class Scopes:
    granted: tuple[Scope, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Scopes:
        """The grantable scopes among a space-separated list; others are left out."""
        parsed = (parse_one(part) for part in text.split())
        return cls(tuple(s for s in parsed if s is not None))

    def allows(self, resource_type: str, permission: str) -> bool:
        return any(
            s.resource_type in ("*", resource_type) and permission in s.permissions
            for s in self.granted
        )

    def require(self, resource_type: str, permission: str) -> None:
        """403 naming the scope needed when the token lacks it."""
        if not self.allows(resource_type, permission):
            raise outcome.FhirError(
                403,
                [
                    outcome.Issue(
                        "forbidden",
                        f"This needs the scope system/{resource_type}.{permission} "
                        f"(or system/{resource_type}.{'read' if permission in 'rs' else 'write'})",
                    )
                ],
            )

    def intersect(self, allowed: Scopes) -> Scopes:
        """What a client gets: of the scopes asked for, the part it is allowed."""
        result: list[Scope] = []
        for asked in self.granted:
            for may in allowed.granted:
                if asked.resource_type == "*":
                    kind = may.resource_type
                elif may.resource_type in ("*", asked.resource_type):
                    kind = asked.resource_type
                else:
                    continue
                perms = asked.permissions & may.permissions
                if perms and Scope(kind, perms) not in result:
                    result.append(Scope(kind, perms))
        return Scopes(tuple(result))

    def text(self) -> str:
        return " ".join(s.text() for s in self.granted)
