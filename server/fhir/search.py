"""Parsing a FHIR search into the store-neutral query form.

The form is plain data: a list of conditions that must all hold (AND), each a `Match` on one
indexed parameter with alternatives (OR), a `Chain` through a reference, or a `Has` (reverse
chain); plus the result controls (_sort, _count, _include ...). Each store translates `Match`;
chains and `_has` are resolved into `Match`es by the shared store layer, so both stores agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Union

from server.fhir import outcome
from server.fhir.resources import is_served
from server.fhir.searchparams import Registry, SearchParam
from server.fhir.values import date_range, normalize_string, number, split_reference, with_plus
from server.limits import Limits

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MODIFIERS = {
    "token": {"not", "text", "missing"},
    "string": {"exact", "contains", "missing"},
    "date": {"missing"},
    "reference": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"missing", "below", "above"},
}
DEFAULT_COUNT = 200  # a page without _count: a few practitioners' next three days (SAS)
IGNORED = {"_format", "_pretty"}
INCLUDES = ("_include", "_include:iterate", "_revinclude", "_revinclude:iterate")
# Result parameters: their values are not search values (commas in `_sort` and `_elements`
# separate other things, and `_sort` has a cap of its own).
CONTROLS = {"_count", "_sort", "_total", "_summary", "_elements", "_cursor", *INCLUDES}
ANY_SYSTEM = "*"  # a token value without `|`: any system, or none


@dataclass(frozen=True)
class TokenValue:
    system: str | None  # ANY_SYSTEM, None (`|code`: no system) or a system
    code: str | None  # None (`system|`: any code)


@dataclass(frozen=True)
class RangeValue:
    """A date, number or quantity with its comparator; low..high is the range it denotes."""

    prefix: str
    low: Any
    high: Any
    system: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class ReferenceValue:
    type: str | None
    id: str | None
    literal: str


@dataclass(frozen=True)
class Match:
    param: str
    kind: str
    modifier: str | None
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Chain:
    param: str
    target_type: str
    condition: Condition


@dataclass(frozen=True)
class Has:
    source_type: str
    reference_param: str
    condition: Condition


Condition = Union[Match, Chain, Has]  # noqa: UP007 (a runtime alias used in annotations above)


@dataclass(frozen=True)
class SortKey:
    param: str
    kind: str
    descending: bool


@dataclass(frozen=True)
class Include:
    source_type: str
    param: str
    target_type: str | None
    iterate: bool


@dataclass
class SearchRequest:
    resource_type: str
    conditions: list[Condition] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    total: str = "auto"
    summary: str | None = None
    elements: list[str] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    cursor: str | None = None
    ignored: list[str] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)  # what its chains and includes may cost


def split_values(raw: str) -> list[str]:
    """Split on commas not escaped with a backslash, then unescape `\\,` `\\|` `\\$` `\\\\`."""
    parts = re.split(r"(?<!\\),", raw)
    return [part for part in parts]


def unescape(text: str) -> str:
    return re.sub(r"\\([,|$\\])", r"\1", text)


@dataclass
class Parser:
    """`limits`: the caps on a client's search (docs/limits.md), checked on the raw parameters
    before any is parsed; None for the server's own searches, whose shape its code fixes (as
    `$find`'s OR over every practitioner of a postal code), which get the default caps on what
    their chains and includes may cost."""

    registry: Registry
    strict: bool = False
    own_base: str = ""
    limits: Limits | None = None

    def parse(self, resource_type: str, params: list[tuple[str, str]]) -> SearchRequest:
        if self.limits is not None:
            check_costs(params, self.limits)
        limits = self.limits or Limits()
        request = SearchRequest(resource_type, count=min(DEFAULT_COUNT, limits.page_size))
        request.limits = limits
        for name, value in params:
            if name in IGNORED:
                continue
            if name.startswith("_") and self._control(request, name, value):
                continue
            condition = self.condition(resource_type, name, value)
            if condition is None:
                self._unknown(request, name)
            else:
                request.conditions.append(condition)
        return request

    def _unknown(self, request: SearchRequest, name: str) -> None:
        if self.strict:
            raise outcome.bad_request(
                f"Unknown search parameter {name!r} for {request.resource_type}", "not-supported"
            )
        request.ignored.append(name)

    def _control(self, request: SearchRequest, name: str, value: str) -> bool:
        """Apply a result parameter; False if `name` is not one."""
        if name == "_count":
            request.count = count_value(value, request.limits.page_size)
        elif name == "_sort":
            request.sort = [self._sort_key(request.resource_type, key) for key in value.split(",")]
        elif name == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise outcome.bad_request(
                    f"_total must be none, estimate or accurate, not {value!r}"
                )
            request.total = value
        elif name == "_summary":
            if value not in ("true", "false", "count", "text", "data"):
                raise outcome.bad_request(f"Unsupported _summary value {value!r}")
            request.summary = value
        elif name == "_elements":
            request.elements = [e.strip() for e in value.split(",") if e.strip()]
        elif name in INCLUDES:
            include = self._include(value, iterate=name.endswith(":iterate"))
            (request.includes if name.startswith("_include") else request.revincludes).append(
                include
            )
        elif name == "_cursor":
            request.cursor = value
        else:
            return False
        return True

    def _sort_key(self, resource_type: str, key: str) -> SortKey:
        descending = key.startswith("-")
        code = key.removeprefix("-")
        param = self.registry.get(resource_type, code)
        if param is None:
            raise outcome.bad_request(f"Cannot sort {resource_type} by unknown parameter {code!r}")
        return SortKey(code, param.type, descending)

    def _include(self, value: str, iterate: bool) -> Include:
        parts = value.split(":")
        if parts == ["*"] or len(parts) not in (2, 3):
            raise outcome.bad_request(
                f"_include/_revinclude must be Type:param[:target], not {value!r}"
            )
        param = self.registry.get(parts[0], parts[1])
        if param is None or param.type != "reference":
            raise outcome.bad_request(f"{parts[0]}:{parts[1]} is not a reference search parameter")
        target = parts[2] if len(parts) == 3 else None
        if target is not None and not is_served(target):
            raise outcome.bad_request(f"Unknown target type {target!r} in {value!r}")
        return Include(parts[0], parts[1], target, iterate)

    def condition(self, resource_type: str, name: str, value: str) -> Condition | None:
        if name.startswith("_has:"):
            return self._has(resource_type, name, value)
        head, dot, rest = name.partition(".")
        code, _, modifier = head.partition(":")
        param = self.registry.get(resource_type, code)
        if param is None:
            return None
        if dot:
            return self._chain(param, modifier, rest, value)
        return self.match(param, modifier or None, value)

    def _chain(self, param: SearchParam, type_modifier: str, rest: str, value: str) -> Condition:
        if param.type != "reference":
            raise outcome.bad_request(f"Cannot chain through {param.code!r}: not a reference")
        targets = [type_modifier] if type_modifier else [t for t in param.targets if is_served(t)]
        if not targets:
            raise outcome.bad_request(f"Chain through {param.code!r} names no servable type")
        found = [(t, self.condition(t, rest, value)) for t in targets]
        usable = [(t, c) for t, c in found if c is not None]
        if not usable:
            raise outcome.bad_request(f"Chained parameter {rest!r} is unknown on {targets}")
        if len(usable) > 1:
            raise outcome.bad_request(
                f"Chain {param.code}.{rest} is ambiguous: name the type, "
                f"as {param.code}:{usable[0][0]}.{rest}"
            )
        return Chain(param.code, usable[0][0], usable[0][1])

    def _has(self, resource_type: str, name: str, value: str) -> Condition:
        parts = name.split(":", 3)
        if len(parts) != 4:
            raise outcome.bad_request(f"_has must be _has:Type:reference:parameter, not {name!r}")
        _, source_type, reference, inner = parts
        param = self.registry.get(source_type, reference)
        if param is None or param.type != "reference":
            raise outcome.bad_request(f"{source_type}:{reference} is not a reference parameter")
        condition = self.condition(source_type, inner, value)
        if condition is None:
            raise outcome.bad_request(f"Unknown parameter {inner!r} on {source_type} in _has")
        return Has(source_type, reference, condition)

    def match(self, param: SearchParam, modifier: str | None, raw: str) -> Match:
        if modifier is not None and modifier not in MODIFIERS[param.type]:
            if param.type == "reference" and is_served(modifier):
                return self._typed_reference(param, modifier, raw)
            raise outcome.bad_request(f"Modifier :{modifier} is not supported on {param.code}")
        if modifier == "missing":
            if raw not in ("true", "false"):
                raise outcome.bad_request(f":missing takes true or false, not {raw!r}")
            return Match(param.code, param.type, "missing", (raw == "true",))
        values = tuple(
            token_value(v)
            if param.type == "token" and modifier != "text"
            else self._value(param, modifier, unescape(v))
            for v in split_values(raw)
        )
        return Match(param.code, param.type, modifier, values)

    def _typed_reference(self, param: SearchParam, target: str, raw: str) -> Match:
        values = tuple(
            ReferenceValue(
                target, unescape(v).rpartition("/")[2], f"{target}/{unescape(v).rpartition('/')[2]}"
            )
            for v in split_values(raw)
        )
        return Match(param.code, "reference", None, values)

    def _value(self, param: SearchParam, modifier: str | None, text: str) -> Any:
        kind = param.type
        if kind == "token":
            return normalize_string(text) if modifier == "text" else token_value(text)
        if kind == "string":
            return text if modifier == "exact" else normalize_string(text)
        if kind == "date":
            return date_value(param.code, text)
        if kind == "reference":
            return self._reference_value(param, text)
        if kind in ("number", "quantity"):
            return quantity_value(param.code, text, with_unit=kind == "quantity")
        return text  # uri

    def _reference_value(self, param: SearchParam, text: str) -> ReferenceValue:
        target_type, target_id = split_reference(text, self.own_base)
        if target_type:
            return ReferenceValue(target_type, target_id, f"{target_type}/{target_id}")
        if "/" not in text and ":" not in text:  # a bare id: any target type
            return ReferenceValue(None, text, text)
        return ReferenceValue(None, None, text)


def count_value(value: str, maximum: int) -> int:
    """A `_count`, clamped to `maximum` (a server may return fewer), however long it is."""
    if not (value.isascii() and value.isdecimal()):
        raise outcome.bad_request(f"_count must be a whole number, not {value[:40]!r}")
    digits = value.lstrip("0")
    return maximum if len(digits) > len(str(maximum)) else min(int(digits or "0"), maximum)


def check_costs(params: list[tuple[str, str]], limits: Limits) -> None:
    """Refuse, from the raw parameters, a search that asks for more than the caps allow."""
    _at_most(len(params), limits.search_params, "search parameters", "search_params")
    includes = sum(1 for name, _ in params if name in INCLUDES)
    _at_most(includes, limits.include_params, "_include and _revinclude", "include_params")
    for name, value in params:
        if name == "_sort":
            _at_most(len(value.split(",")), limits.sort_keys, "_sort keys", "sort_keys")
        elif name not in CONTROLS and name not in IGNORED:
            _check_condition(name, value, limits)


def _check_condition(name: str, value: str, limits: Limits) -> None:
    links = name.count(".") + name.count("_has:")
    shown = repr(name[:60])
    _at_most(links, limits.chain_depth, f"links in the chain {shown}", "chain_depth")
    values = split_values(value)
    _at_most(len(values), limits.or_values, f"values of {shown}", "or_values")
    longest = max(len(v) for v in values)
    _at_most(longest, limits.value_chars, f"characters in a value of {shown}", "value_chars")


def _at_most(asked: int, cap: int, what: str, name: str) -> None:
    if asked > cap:
        raise too_costly(f"{asked} {what}: at most {cap} (limit {name})")


def too_costly(message: str) -> outcome.FhirError:
    return outcome.bad_request(message, "too-costly")


def token_value(text: str) -> TokenValue:
    """`[system|]code` still escaped: split on the first unescaped `|`, then unescape."""
    if "|" not in text.replace("\\|", ""):
        return TokenValue(ANY_SYSTEM, unescape(text) or None)
    system, _, code = re.split(r"(?<!\\)(\|)", text, maxsplit=1)
    return TokenValue(unescape(system) or None, unescape(code) or None)


def _prefixed(text: str) -> tuple[str, str]:
    if len(text) > 2 and text[:2] in PREFIXES and not text[:2].isdigit():
        return text[:2], text[2:]
    return "eq", text


def date_value(code: str, text: str) -> RangeValue:
    prefix, body = _prefixed(text)
    span = date_range(with_plus(body))
    if span is None:
        raise outcome.bad_request(f"{code}: {text!r} is not a FHIR date")
    return RangeValue(prefix, span[0], span[1])


def quantity_value(code: str, text: str, with_unit: bool) -> RangeValue:
    prefix, body = _prefixed(text)
    value_text, system, unit = body, None, None
    if with_unit and "|" in body:
        value_text, system, unit = [*body.split("|"), "", ""][:3]
    parsed = number(value_text)
    if parsed is None:
        raise outcome.bad_request(f"{code}: {text!r} is not a number")
    value, low, high = parsed
    if prefix != "eq" and prefix != "ne" and prefix != "ap":
        low = high = value
    return RangeValue(prefix, low, high, system or None, unit or None)
