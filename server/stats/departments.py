"""The French department of a postal code, as INSEE codes it: what the open statistics group
places by.

A French postal code is five digits, the first two the department's number, with two
exceptions: Corsica's codes start with 20 (200 and 201: Corse-du-Sud, 2A; 202 to 206:
Haute-Corse, 2B) and the overseas departments' with three digits (971 Guadeloupe,
972 Martinique, 973 Guyane, 974 La Réunion, 976 Mayotte; 975, Saint-Pierre-et-Miquelon, is
kept as its own code). Monaco (980) and the Pacific collectivities (98x) are no department.
"""

from __future__ import annotations

from typing import Any

OVERSEAS = frozenset({"971", "972", "973", "974", "975", "976"})
CORSE_DU_SUD = frozenset("01")
HAUTE_CORSE = frozenset("23456")
# Country codes or names an address in France (mainland or overseas) may carry; an address in
# another country is no department, whatever its postal code looks like.
FRANCE = frozenset(
    {"fr", "fra", "france", "gp", "glp", "mq", "mtq", "gf", "guf", "re", "reu", "yt", "myt"}
    | {"pm", "spm"}
)


def of_postal_code(postal_code: str) -> str | None:
    """The department code, or None when `postal_code` is not a French one."""
    code = postal_code.replace(" ", "")
    if len(code) != 5 or not code.isascii() or not code.isdigit():
        return None
    head = code[:2]
    if head == "20":
        if code[2] in CORSE_DU_SUD:
            return "2A"
        return "2B" if code[2] in HAUTE_CORSE else None
    if head == "97":
        return code[:3] if code[:3] in OVERSEAS else None
    return head if "01" <= head <= "95" else None


def of_address(address: Any) -> str | None:
    """The department of a FHIR Address in France, or None."""
    if not isinstance(address, dict) or not isinstance(address.get("postalCode"), str):
        return None
    country = address.get("country")
    if isinstance(country, str) and country.strip().casefold() not in FRANCE:
        return None
    return of_postal_code(address["postalCode"])
