"""JSON Patch (RFC 6902) within bounds: a few operations, a result of bounded size and depth.

A patch of a few `copy` operations can double a document with each one, so the operations are
applied one at a time (by `jsonpatch`) and each is refused before it runs if the document would
grow past `max_bytes` or nest deeper than request bodies may (`jsonbody.MAX_DEPTH`). The size is
a running total, not a re-serialization after each step: the document's JSON length before the
patch plus the JSON length of every value an `add`, `replace`, `copy` or `move` puts in, with
nothing subtracted for what an operation removes — so the copying work of the whole patch is
bounded by `max_bytes` too.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer
import orjson

from server.fhir import jsonbody, outcome

INSERTING = ("add", "replace", "copy", "move")
_ABSENT = object()


def check_operations(operations: Any, most: int) -> list[Any]:
    """`operations` if it is a JSON Patch of at most `most` operations, else 400."""
    if not isinstance(operations, list):
        raise outcome.bad_request("A JSON Patch body is an array of operations")
    if len(operations) > most:
        raise outcome.bad_request(
            f"The JSON Patch has {len(operations)} operations, more than the cap "
            f"patch_operations = {most} (CRENEAU_LIMIT_PATCH_OPERATIONS)",
            "too-costly",
        )
    return operations


def apply(document: Any, operations: list[Any], max_bytes: int) -> Any:
    """A patched copy of `document`: 422 if the patch fails as a patch, 400 past the bounds."""
    try:
        steps = jsonpatch.JsonPatch(operations).patch  # every operation's shape, before any runs
        encoded = orjson.dumps(document)
        patched, size = orjson.loads(encoded), len(encoded)
        for step in steps:
            size += _inserted_bytes(patched, step, size, max_bytes)
            patched = jsonpatch.apply_patch(patched, [step], in_place=True)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError) as exc:
        raise outcome.FhirError(
            422, [outcome.Issue("processing", f"JSON Patch failed: {exc}")]
        ) from None
    return patched


def _inserted_bytes(document: Any, step: dict[str, Any], size: int, max_bytes: int) -> int:
    """The JSON length of the value `step` puts into `document`, refused (400) if it would take
    the running total past `max_bytes` or the document deeper than `jsonbody.MAX_DEPTH`."""
    value = _inserted(document, step)
    if value is _ABSENT:
        return 0  # nothing inserted, or the step fails as a patch when it runs
    added = len(orjson.dumps(value))
    if size + added > max_bytes:
        raise outcome.bad_request(
            f"The patched resource would exceed the cap patch_result_bytes = {max_bytes} "
            "(CRENEAU_LIMIT_PATCH_RESULT_BYTES), counting every value the patch adds, "
            "replaces, copies or moves",
            "too-costly",
        )
    if len(jsonpointer.JsonPointer(step["path"]).parts) + _depth(value) > jsonbody.MAX_DEPTH:
        raise outcome.bad_request(
            f"The patched resource would nest deeper than {jsonbody.MAX_DEPTH} levels", "structure"
        )
    return added


def _inserted(document: Any, step: dict[str, Any]) -> Any:
    """The value an operation puts in: its `value`, or what its `from` points at."""
    kind = step.get("op")
    if kind not in INSERTING:
        return _ABSENT
    if kind in ("add", "replace"):
        return step.get("value", _ABSENT)
    source = step.get("from")
    if not isinstance(source, str):
        return _ABSENT
    return jsonpointer.resolve_pointer(document, source, _ABSENT)


def _depth(value: Any) -> int:
    """The levels `value` spans (1 for a scalar), walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    return deepest
