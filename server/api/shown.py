"""Resources as clients see them: without the server's own bookkeeping.

The access labels (`server.auth.labels`, in `meta.security`) and the stat tags
(`server.stats.tags`, in `meta.tag`) are computed by the server on every write, searched in the
store, and never shown: a profile may bind `meta.security` to its own codes (the SAS profiles
bind it to the slot audiences), which app booked an appointment is the trail's to tell to those
who may read it, and a client's copy written back gets them recomputed anyway.
"""

from __future__ import annotations

from typing import Any

from server.auth import labels
from server.stats import tags

Body = dict[str, Any]
HIDDEN = {"security": labels.OURS, "tag": tags.OURS}  # meta element -> systems kept out


def shown(document: Body) -> Body:
    """A response body as clients see it: its resources (a Bundle's entries, a Parameters'
    resources) without the server's bookkeeping. Copies what it changes, never the stored
    body."""
    kind = document.get("resourceType")
    if kind == "Bundle" and isinstance(document.get("entry"), list):
        return {**document, "entry": [_shown_in(e) for e in document["entry"]]}
    if kind == "Parameters" and isinstance(document.get("parameter"), list):
        return {**document, "parameter": [_shown_in(p) for p in document["parameter"]]}
    return _without_bookkeeping(document)


def _shown_in(holder: Any) -> Any:
    if isinstance(holder, dict) and isinstance(holder.get("resource"), dict):
        return {**holder, "resource": shown(holder["resource"])}
    return holder


def _without_bookkeeping(body: Body) -> Body:
    meta = body.get("meta")
    if not isinstance(meta, dict) or not any(_ours(meta.get(k), s) for k, s in HIDDEN.items()):
        return body
    trimmed = dict(meta)
    for key, systems in HIDDEN.items():
        codings = meta.get(key)
        if isinstance(codings, list) and _ours(codings, systems):
            kept = [c for c in codings if not (isinstance(c, dict) and c.get("system") in systems)]
            if kept:
                trimmed[key] = kept
            else:
                trimmed.pop(key)
    return {**body, "meta": trimmed}


def _ours(codings: Any, systems: frozenset[str]) -> bool:
    return isinstance(codings, list) and any(
        isinstance(c, dict) and c.get("system") in systems for c in codings
    )
